"""Received discharge letters and their receipts.

A letter is stored byte for byte with what its conversion produced (resource references, the
report of unmapped items) and the id of the outbox entry that carries its bundle; the receipt a
hospital reads is this row joined with the state of that outbox entry.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Column, LargeBinary, Text, text
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel

from adapter.ids import time_ordered_uuid
from adapter.national_ids import ins_systems
from adapter.store.outbox import DELIVERED, FAILED, PENDING, RETRYING, OutboxEntry, utcnow

# outbox state → what the hospital reads on its receipt
RECEIPT_STATUS = {PENDING: "accepted", RETRYING: "retrying", DELIVERED: "pushed", FAILED: "failed"}


class ReceivedLetter(SQLModel, table=True):
    __tablename__ = "received_letter"

    # time-ordered like every key liaison assigns (`adapter.ids`)
    id: str = Field(default_factory=lambda: time_ordered_uuid().hex, primary_key=True,
                    max_length=32)
    sha1: str = Field(unique=True, max_length=40)
    document_id: str = Field(unique=True, max_length=300)  # "system|value" of ClinicalDocument/id
    set_id: str = Field(index=True, max_length=300)
    version: int = 1
    kind: str = Field(default="structured", max_length=16)
    model: str = Field(default="", max_length=64)
    patient_key: str = Field(index=True, max_length=64)  # a hash: no patient identifier here
    content_type: str = Field(default="application/xml", max_length=100)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)
    submitted_by: str | None = Field(default=None, max_length=100)  # idNat_Struct of the sender
    outbox_id: int | None = Field(default=None, index=True)
    resources: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    report: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    validation: str | None = Field(default=None, sa_column=Column(Text))
    # the stay the letter ends (liaison's stay key, no patient identifier): a notice of a
    # planned discharge arriving after it must not reopen the stay, delivered or not yet
    stay: str | None = Field(default=None, index=True, max_length=300)


class LetterStory(SQLModel, table=True):
    """One clinical story: the letters sharing a setId, whose latest version alone is current.

    A setId belongs to the organisation whose letter first carried it: a later version sent for
    another organisation is refused (a hospital cannot rewrite another's letters)."""

    __tablename__ = "letter_story"

    set_id: str = Field(primary_key=True, max_length=300)  # "system|value" of the setId
    organization: str | None = Field(default=None, max_length=100)  # idNat_Struct of its owner
    version: int = 1  # the latest version received
    letter_id: str = Field(max_length=32)  # the received letter holding that version


_FIRST_OF_SET = text(
    "SELECT id, submitted_by, version FROM received_letter WHERE set_id = :set_id "
    "ORDER BY received_at, id"
)


def story_of(session: Session, set_id: str) -> LetterStory | None:
    """The story of `set_id`, also for letters received before stories were kept (built from
    them: the first sender owns it, the highest version is current)."""
    story = session.get(LetterStory, set_id)
    if story is not None:
        return story
    letters = session.execute(_FIRST_OF_SET, {"set_id": set_id}).all()
    if not letters:
        return None
    latest = max(letters, key=lambda letter: letter.version)
    return LetterStory(set_id=set_id, organization=letters[0].submitted_by,
                       version=latest.version, letter_id=latest.id)


def patient_key(identifiers: list[tuple[str, str]]) -> str:
    """Ordering key of a patient's letters and everything queued about the patient: a hash of
    their INS, or without one of their first identifier (the hospital's IPP)."""
    ins = [pair for pair in identifiers if pair[0] in ins_systems()]
    system, value = (ins or identifiers or [("", "unknown")])[0]
    return hashlib.sha256(f"{system}|{value}".encode()).hexdigest()


def produced_resources(bundle: dict[str, Any]) -> list[dict[str, str]]:
    """What a transaction bundle will create or update, as the receipt lists it."""
    produced: list[dict[str, str]] = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        request = entry.get("request", {})
        item = {
            "resourceType": resource.get("resourceType", ""),
            "fullUrl": entry.get("fullUrl", ""),
        }
        condition = request.get("ifNoneExist") or request.get("url", "").partition("?")[2]
        if condition:
            item["condition"] = condition
        produced.append(item)
    return produced


_BY_SHA1 = text("SELECT id FROM received_letter WHERE sha1 = :sha1 LIMIT 1")
_BY_SHA1_OR_ID = text(
    "SELECT id FROM received_letter WHERE sha1 = :sha1 OR document_id = :document_id LIMIT 1"
)


def find_letter(
    session: Session, *, sha1: str, document_id: str | None = None
) -> ReceivedLetter | None:
    """The letter already received with these bytes or this document id, if any.

    Asked for every letter posted, and almost always answered "none": a plain indexed query
    (the ORM's was a tenth of the server's time per letter), the row loaded only when found."""
    if document_id:
        found = session.execute(_BY_SHA1_OR_ID, {"sha1": sha1, "document_id": document_id})
    else:
        found = session.execute(_BY_SHA1, {"sha1": sha1})
    letter_id = found.scalar()
    return session.get(ReceivedLetter, letter_id) if letter_id is not None else None


def get_letter(engine: Engine, letter_id: str) -> ReceivedLetter | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.get(ReceivedLetter, letter_id)


def receipt(session: Session, letter: ReceivedLetter) -> dict[str, Any]:
    """The receipt of a letter: where its bundle stands and what it produced."""
    entry = session.get(OutboxEntry, letter.outbox_id) if letter.outbox_id else None
    status = RECEIPT_STATUS.get(entry.status, "accepted") if entry else "accepted"
    resources = orjson.loads(letter.resources)
    answer: dict[str, Any] = {
        "id": letter.id,
        "status": status,
        "receivedAt": letter.received_at.isoformat(),
        "document": {
            "id": letter.document_id,
            "setId": letter.set_id,
            "version": letter.version,
            "kind": letter.kind,
            "model": letter.model,
            "sha1": letter.sha1,
        },
        "attempts": entry.attempts if entry else 0,
        "resources": resources,
        "unmapped": orjson.loads(letter.report),
    }
    if entry is not None:
        answer["outboxEntry"] = entry.id  # what `liaison outbox retry ID` takes
        if entry.status in (RETRYING, FAILED) and entry.last_error:
            answer["lastError"] = {"status": entry.last_status, "outcome": entry.last_error_json()}
        if entry.status == DELIVERED:
            answer["pushedAt"] = (
                entry.delivered_at.isoformat() if entry.delivered_at else None
            )
            _add_locations(resources, entry.result_json() or {})
    if letter.validation:
        answer["validation"] = orjson.loads(letter.validation)
    return answer


def _add_locations(resources: list[dict[str, str]], result: dict[str, Any]) -> None:
    """Once pushed, each produced resource gets the reference the target gave it."""
    for item, location in zip(resources, result.get("locations", []), strict=False):
        if location:
            item["reference"] = location
