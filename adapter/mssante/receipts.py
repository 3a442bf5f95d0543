"""What comes back to liaison's MSSanté mailbox: delivery reports (DSN, RFC 3464) and read
receipts (MDN, RFC 8098), collected over IMAP (STARTTLS required, the server's certificate
checked, the same client certificate as the relay), and what they change on the Communication.

- a DSN whose recipient `Action: failed` (a bounce after the relay took the message):
  the Communication becomes `not-done`, its `statusReason` the diagnostic;
- an MDN `displayed`: the Communication is marked read (tag and extension, see `status.py`);
- other mail is offered to `other` (the replies filed into the patient's thread); what nobody
  takes (delays, mail that matches nothing) is left read and flagged in the mailbox for a person.
Reports are matched to what liaison sent by the original Message-ID (`SentMessage`). Each
report is marked `\\Seen` once handled, so a collector that stops half-way takes up the rest
next time; handling one twice writes the same status twice.
"""

from __future__ import annotations

import imaplib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from adapter.config import Settings
from adapter.mssante.queue import record_outcome
from adapter.mssante.rules import mssante_rules
from adapter.mssante.smtp import tls_context
from adapter.mssante.status import status_bundle
from adapter.push.worker import notify
from adapter.store import outbox
from adapter.store.engine import session_scope
from adapter.store.mssante_tables import SentMessage

logger = logging.getLogger("liaison.mssante")
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Report:
    kind: str  # "bounce", "read", or "other"
    original_id: str | None = None  # the Message-ID of what liaison sent
    detail: str = ""


@dataclass
class Collected:
    bounces: int = 0
    reads: int = 0
    filed: int = 0  # other mail taken care of (`other`)
    unmatched: int = 0  # reports naming nothing liaison sent, and other mail left to a person
    seen: list[str] = field(default_factory=list)


def read_report(raw: bytes) -> Report:
    """What a mail of the mailbox is (a bounce, a read receipt, or something else)."""
    message = message_from_bytes(raw, policy=policy.compat32)
    if message.get_content_type() != "multipart/report":
        return Report("other")
    kind = str(message.get_param("report-type") or "").lower()
    parts = list(message.walk())
    if kind == "delivery-status":
        status = next((p for p in parts if p.get_content_type() == "message/delivery-status"),
                      None)
        blocks = _blocks(status)
        failed = [b for b in blocks[1:] if (b.get("Action") or "").strip().lower() == "failed"]
        if not failed:
            return Report("other", _original_id(parts))
        detail = (failed[0].get("Diagnostic-Code") or failed[0].get("Status") or "").strip()
        return Report("bounce", _original_id(parts), " ".join(detail.split()))
    if kind == "disposition-notification":
        notice = next((p for p in parts
                       if p.get_content_type() == "message/disposition-notification"), None)
        fields = _blocks(notice)[0] if _blocks(notice) else Message()
        disposition = (fields.get("Disposition") or "").rpartition(";")[2].strip().lower()
        original = (fields.get("Original-Message-ID") or "").strip() or _original_id(parts)
        return Report("read" if disposition.startswith("displayed") else "other", original,
                      disposition)
    return Report("other")


def _blocks(part: Message | None) -> list[Message]:
    """The header blocks of a message/delivery-status or message/disposition-notification."""
    if part is None:
        return []
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    return [HeaderParser().parsestr(block) for block in str(payload).split("\n\n") if block]


def _original_id(parts: list[Message]) -> str | None:
    """The Message-ID of the returned message (its copy, or its headers)."""
    for part in parts:
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
        if kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) \
                else str(part.get_payload())
            headers = HeaderParser().parsestr(text)
            if headers.get("Message-ID"):
                return str(headers["Message-ID"]).strip()
    return None


# raw mail → whether it was taken care of (e.g. a reply filed into the patient's thread)
OtherMail = Callable[[bytes], bool]


def collect(engine: Engine, settings: Settings, *, clock: Clock | None = None,
            other: OtherMail | None = None) -> Collected:
    """Read the unseen mail of liaison's mailbox once; raises OSError / imaplib.IMAP4.error
    when the mailbox cannot be read (the poller tries again later). `other` is offered the
    mail that is no report of liaison's messages."""
    now = clock or (lambda: datetime.now(UTC))
    assert settings.mssante_imap_host
    collected = Collected()
    with imaplib.IMAP4(settings.mssante_imap_host, settings.mssante_imap_port,
                       timeout=settings.mssante_timeout_seconds) as mailbox:
        mailbox.starttls(ssl_context=tls_context(settings))
        mailbox.login(settings.mssante_imap_username or settings.mssante_sender or "",
                      settings.mssante_imap_password or settings.mssante_password or "")
        mailbox.select("INBOX")
        _, found = mailbox.uid("SEARCH", "UNSEEN")
        for uid in (found[0] or b"").split():
            _, data = mailbox.uid("FETCH", uid, "(BODY.PEEK[])")  # type: ignore[arg-type]
            raw = next((item[1] for item in data if isinstance(item, tuple)), b"")
            handled = _handled(engine, raw, now, other)
            flags = r"(\Seen)" if handled else r"(\Seen \Flagged)"
            mailbox.uid("STORE", uid, "+FLAGS", flags)  # type: ignore[arg-type]
            if handled == "bounce":
                collected.bounces += 1
            elif handled == "read":
                collected.reads += 1
            elif handled == "other":
                collected.filed += 1
            else:
                collected.unmatched += 1
    return collected


def _handled(engine: Engine, raw: bytes, now: Clock, other: OtherMail | None) -> str | None:
    """What one mail was taken as ("bounce", "read", "other"), None: left to a person — also
    when handling it failed for a reason of its own (a mail that cannot be handled must not
    hold back the ones after it; the database being away still stops the collection)."""
    try:
        handled = _handle(engine, read_report(raw), now)
        if handled is None and other is not None and other(raw):
            handled = "other"
        return handled
    except SQLAlchemyError:
        raise
    except Exception as error:
        logger.warning("a mail of the MSSanté mailbox was left to a person (%s)",
                       type(error).__name__)
        return None


def _handle(engine: Engine, report: Report, now: Clock) -> str | None:
    if report.kind not in ("bounce", "read") or not report.original_id:
        return None
    rules = mssante_rules()["status"]
    with session_scope(engine) as session:
        sent = session.get(SentMessage, report.original_id)
        entry = outbox.get_entry(engine, sent.outbox_id) if sent is not None else None
        if sent is None or entry is None:
            return None
        message: dict[str, Any] = entry.payload_json()
        # a letter's message has its own Communication to update; a thread message's mail does
        # not (one Communication for all its recipients): its fate is kept with it alone
        has_status = "communication" in message
        if report.kind == "bounce":
            bundle = status_bundle(message, rules["refused"], when=now(),
                                   reason=f"{rules['bounced_reason']} ({report.detail})"
                                   ) if has_status else None
            state = "bounced"
        else:
            bundle = status_bundle(message, rules["received"], when=sent.received_at or now(),
                                   read_at=now()) if has_status else None
            state = "read"
        record_outcome(session, message, state, when=now(), bundle=bundle)
    notify()
    return report.kind


class ReceiptPoller:
    """Collects the mailbox every `interval` seconds in a thread of the pusher's process."""

    def __init__(self, engine: Engine, settings: Settings, interval: float | None = None,
                 other: OtherMail | None = None) -> None:
        self.engine, self.settings, self.other = engine, settings, other
        self.interval = interval or settings.mssante_receipts_poll_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ReceiptPoller:
        self._thread = threading.Thread(target=self._loop, name="liaison-mssante-receipts",
                                        daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                collect(self.engine, self.settings, other=self.other)
            except Exception as error:  # the mailbox is down or refuses us: next time
                logger.warning("MSSanté mailbox not read (%s)", type(error).__name__)
            self._stopping.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

