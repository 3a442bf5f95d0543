"""The outbox handler of MSSanté messages: compose, send, then queue the Communication's new
status for the shared record (in the patient's order, after the letter's bundle).

If the process stops after the relay took a message and before the entry is marked delivered,
the message is sent again with the same Message-ID (recipients' software shows it once) and the
same status is written twice (a conditional update: the same result)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from adapter.config import Settings
from adapter.errors import TargetRejected
from adapter.mssante import smtp
from adapter.mssante.compose import compose, compose_thread
from adapter.mssante.queue import record_outcome
from adapter.mssante.rules import mssante_rules
from adapter.mssante.status import status_bundle
from adapter.push.worker import notify
from adapter.store.engine import session_scope
from adapter.store.letters import ReceivedLetter

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def handler(engine: Engine, settings: Settings, clock: Clock = _now
            ) -> Callable[[Any], dict[str, Any]]:
    def deliver(message: dict[str, Any]) -> dict[str, Any]:
        assert settings.mssante_sender
        if "letter" not in message:  # a message of the patient's thread
            return _send_thread_mail(engine, settings, message, clock)
        rules = mssante_rules()
        with session_scope(engine) as session:
            letter = session.get(ReceivedLetter, message["letter"])
            content = letter.content if letter is not None else None
        if content is None:
            raise TargetRejected("the letter of this message is no longer kept")
        mail = compose(message, content, sender=settings.mssante_sender, rules=rules,
                       max_bytes=settings.max_letter_bytes, now=clock())
        status = rules["status"]
        try:
            smtp.send(mail, message["to"], settings)
        except smtp.MailRefused as refusal:
            reason = f"{status['refused_reason']} ({refusal.code} {refusal.text})"
            _queue_status(engine, message, status_bundle(
                message, status["refused"], when=clock(), reason=reason), state="refused")
            return {"outcome": "refused", "smtp": refusal.code}
        received = clock()
        _queue_status(engine, message, status_bundle(message, status["received"], when=received),
                      state="received", received_at=received)
        return {"outcome": "received", "message_id": message["message_id"]}

    return deliver


def _send_thread_mail(engine: Engine, settings: Settings, message: dict[str, Any],
                      clock: Clock) -> dict[str, Any]:
    """A thread message is in the record already, for all its recipients: the mail tells one
    of them; its fate is kept with the message (`SentMessage`), not on the Communication."""
    assert settings.mssante_sender
    mail = compose_thread(message, sender=settings.mssante_sender, now=clock())
    try:
        smtp.send(mail, message["to"], settings)
    except smtp.MailRefused as refusal:
        _queue_status(engine, message, None, state="refused")
        return {"outcome": "refused", "smtp": refusal.code}
    _queue_status(engine, message, None, state="received", received_at=clock())
    return {"outcome": "received", "message_id": message["message_id"]}


def given_up(engine: Engine, clock: Clock = _now) -> Callable[[Any, dict[str, Any]], None]:
    """When the outbox stops trying (out of attempts): the Communication says it was not done."""
    def record(message: dict[str, Any], outcome: dict[str, Any]) -> None:
        status = mssante_rules()["status"]
        bundle = status_bundle(message, status["refused"], when=clock(),
                               reason=status["given_up_reason"]) if "letter" in message else None
        _queue_status(engine, message, bundle, state="given-up")

    return record


def _queue_status(engine: Engine, message: dict[str, Any], bundle: dict[str, Any] | None, *,
                  state: str, received_at: datetime | None = None) -> None:
    with session_scope(engine) as session:
        record_outcome(session, message, state, when=received_at or _now(), bundle=bundle,
                       received_at=received_at)
    notify()
