"""Queuing one MSSanté message in the caller's transaction: its outbox entry, and its
Message-ID kept (`SentMessage`) for the reports and receipts that will name it."""

from __future__ import annotations

from hashlib import sha256
from typing import Any

from sqlmodel import Session

from adapter.mssante.rules import KIND
from adapter.store import outbox
from adapter.store.mssante_tables import SentMessage


def enqueue_message(session: Session, message: dict[str, Any], patient: str) -> None:
    """One queue per patient and recipient: a mailbox that answers "try later" holds back no
    one else, and what is said about a patient reaches each recipient in order."""
    key = "mssante:" + sha256(f"{patient}|{message['to']}".encode()).hexdigest()
    queued = outbox.enqueue(session, KIND, message, key)
    assert queued.id is not None  # flushed by enqueue
    session.merge(SentMessage(message_id=message["message_id"], outbox_id=queued.id))
