"""Queuing one MSSanté message in the caller's transaction: its outbox entry, and its
Message-ID kept (`SentMessage`) for the reports and receipts that will name it; and, later,
recording what became of it."""

from __future__ import annotations

from datetime import datetime
from hashlib import sha256
from typing import Any

from sqlmodel import Session

from adapter.mssante.rules import KIND, STATUS_KIND
from adapter.store import outbox
from adapter.store.mssante_tables import SentMessage


def enqueue_message(session: Session, message: dict[str, Any], patient: str) -> None:
    """One queue per patient and recipient: a mailbox that answers "try later" holds back no
    one else, and what is said about a patient reaches each recipient in order."""
    key = "mssante:" + sha256(f"{patient}|{message['to']}".encode()).hexdigest()
    queued = outbox.enqueue(session, KIND, message, key)
    assert queued.id is not None  # flushed by enqueue
    session.merge(SentMessage(message_id=message["message_id"], outbox_id=queued.id))


def record_outcome(session: Session, message: dict[str, Any], state: str, *, when: datetime,
                   bundle: dict[str, Any] | None = None,
                   received_at: datetime | None = None) -> None:
    """What became of `message`: its state kept with its Message-ID and, when there is one, its
    Communication's new status (`bundle`) queued in the patient's order."""
    if bundle is not None:
        outbox.enqueue(session, STATUS_KIND, bundle, message["patient_key"])
    sent = session.get(SentMessage, message["message_id"])
    if sent is not None:
        sent.state, sent.updated_at = state, when
        sent.received_at = received_at or sent.received_at
        session.add(sent)
