"""Taking in one discharge letter: check, convert, then store the letter, its receipt and its
outbox entry in one database transaction — so a letter is either refused with a reason or
accepted and certain to be pushed, never half-accepted.

Routes (REST, MHD) stay thin and call `ingest_letter`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from adapter.api import metrics
from adapter.api.directory_cache import CachedDirectory
from adapter.api.validation import CDA_VALIDATION, check_strictly, validator
from adapter.config import Settings
from adapter.errors import Conflict, LetterTooLarge
from adapter.parts import optional
from adapter.push import worker
from adapter.store import outbox
from adapter.store.letters import (
    ReceivedLetter,
    find_letter,
    patient_key,
    produced_resources,
    receipt,
)

logger = logging.getLogger("liaison.ingest")

# Conversion is CPU work under the GIL: more concurrent conversions would not go faster, and
# would hold more database connections (directory look-ups) than the pool keeps open.
_converting = threading.BoundedSemaphore(4)


@dataclass(frozen=True)
class Accepted:
    receipt: dict[str, Any]
    created: bool  # False: this letter had already been received, nothing was created


_directories: dict[str, CachedDirectory] = {}


def _directory(engine: Engine) -> CachedDirectory | None:
    """The directory of `engine`'s database (None where the directory part is not installed)."""
    key = str(engine.url)
    if key not in _directories:
        sql_directory = optional("adapter.directory.lookup", "SqlDirectory")
        if sql_directory is None:
            return None
        _directories[key] = CachedDirectory(sql_directory(engine))
    return _directories[key]


def _coordinated(conversion: Any, engine: Engine) -> Any:
    """The conversion with care coordination applied (issue 8), where that part is installed."""
    coordinate = optional("adapter.coordination", "coordinate")
    if coordinate is None:
        return conversion
    return coordinate(conversion, engine, in_place=True)  # the conversion is ours to change


def _receipt_for(session: Session, letter: ReceivedLetter, submitted_by: str | None
                 ) -> dict[str, Any]:
    """The receipt of a letter already received, for the sender who posts it again. Another
    hospital gets no receipt: it lists the patient's identifiers (INS) of a letter it did not
    send (a document id is easily guessed: the hospital's OID and a sequence number)."""
    if submitted_by is not None and letter.submitted_by != submitted_by:
        raise Conflict("a letter with this document id was already received from another sender")
    return receipt(session, letter)


def existing_receipt(
    engine: Engine, sha1: str, submitted_by: str | None = None
) -> dict[str, Any] | None:
    with Session(engine) as session:
        letter = find_letter(session, sha1=sha1)
        return _receipt_for(session, letter, submitted_by) if letter else None


def ingest_letter(
    xml: bytes,
    *,
    content_type: str,
    engine: Engine,
    settings: Settings,
    submitted_by: str | None = None,
) -> Accepted:
    """Accept one CDA letter (or refuse it with a `RefusedLetter` saying why)."""
    if len(xml) > settings.max_letter_bytes:
        raise LetterTooLarge(
            f"the letter is {len(xml)} bytes, over the limit of {settings.max_letter_bytes} bytes"
        )
    sha1 = hashlib.sha1(xml).hexdigest()
    known = existing_receipt(engine, sha1, submitted_by)
    if known is not None:  # the same bytes again: answer before spending time converting
        metrics.LETTERS_DUPLICATE.inc()
        return Accepted(known, created=False)

    from adapter.mapping import convert_letter  # the mapping part: imported when first needed

    with _converting:
        validation = check_strictly(xml) if settings.validation_mode == "strict" else None
        conversion = _coordinated(convert_letter(xml, directory=_directory(engine)), engine)
    summary = conversion.letter
    document_id = "|".join(summary.document_id)
    key = patient_key([summary.ins] if summary.ins else summary.patient_identifiers)
    # Serialised before taking the database's single write lock: every millisecond spent
    # holding it is a millisecond every other hospital and the pusher wait.
    payload = orjson.dumps(conversion.bundle)
    resources = orjson.dumps(produced_resources(conversion.bundle)).decode()
    report = orjson.dumps(conversion.report).decode()
    try:
        with outbox.write_scope(engine, urgent=True) as session:
            already = find_letter(session, sha1=sha1, document_id=document_id)
            if already is not None:
                answer = _receipt_for(session, already, submitted_by)
                metrics.LETTERS_DUPLICATE.inc()
                return Accepted(answer, created=False)
            entry = outbox.enqueue(session, worker.FHIR_TRANSACTION, payload, key)
            letter = ReceivedLetter(
                sha1=sha1,
                document_id=document_id,
                set_id="|".join(summary.set_id),
                version=summary.version,
                kind=summary.kind,
                model=summary.model,
                patient_key=key,
                content_type=content_type,
                content=xml,
                submitted_by=submitted_by,
                outbox_id=entry.id,
                resources=resources,
                report=report,
                validation=orjson.dumps(validation).decode() if validation else None,
            )
            session.add(letter)
            session.flush()
            if settings.validation_mode == "report" and validator() is not None:
                outbox.enqueue(
                    session, CDA_VALIDATION, {"letter": letter.id}, f"validate:{letter.id}"
                )
            answer = receipt(session, letter)
    except IntegrityError:
        # The same letter was accepted concurrently by another request: answer with its receipt.
        with Session(engine) as session:
            already = find_letter(session, sha1=sha1, document_id=document_id)
            if already is None:
                raise
            answer = _receipt_for(session, already, submitted_by)
            metrics.LETTERS_DUPLICATE.inc()
            return Accepted(answer, created=False)
    metrics.LETTERS_ACCEPTED.inc()
    worker.notify()
    logger.info("letter %s accepted (outbox entry %s)", answer["id"], entry.id)
    return Accepted(answer, created=True)
