"""A reply by MSSanté mail to what liaison sent (a letter's message, or a message of the
patient's thread) is filed into the patient's thread, as a message of its writer.

Matched by its `In-Reply-To` / `References` (a Message-ID liaison sent, `SentMessage`); written
only if its `From` is the mailbox of a member of the patient's active care team, and then
under the same rules as a message posted through `/fhir` (`coordination.thread`), answering
the Communication it replies to; the quoted text is left out. Anything else stays in the mailbox,
flagged for a person. Filed into the embedded record only (with another shared record, replies
are left to a person).

The `From` is trusted because MSSanté is a closed space: its operators deliver to liaison's
mailbox only mail their authenticated users sent (outside mail is refused at their border);
liaison's mailbox must be an MSSanté one, never an address the open Internet can write to."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapter.auth import Principal
from adapter.config import Settings
from adapter.coordination import thread
from adapter.coordination.rules import load_rules
from adapter.errors import LiaisonError
from adapter.ingest.messages import tell
from adapter.record.repository import Repository
from adapter.store import outbox
from adapter.store.mssante_tables import SentMessage

# where a quoted message starts in a reply ("Le 4 déc. 2026, X a écrit :", "On …, X wrote:")
_QUOTE_HEADER = re.compile(r"^\s*(le|on)\b.*(a écrit|wrote)\s*:\s*$", re.IGNORECASE)


def reply_filer(engine: Engine, settings: Settings) -> Callable[[bytes], bool]:
    repository = Repository(engine)

    def file(raw: bytes) -> bool:
        if settings.target_url:  # the thread is the embedded record's
            return False
        mail = message_from_bytes(raw, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        answered = _answered(engine, repository, mail)
        text = _reply_text(mail)
        if answered is None or not text:
            return False
        communication, patient_id, recipient = answered
        idnat = thread.member_by_mailbox(repository, patient_id,
                                         parseaddr(str(mail.get("From", "")))[1])
        if idnat is None:
            return False
        writer = Principal(kind="professional", subject=f"mssante:{idnat}", idnat=idnat,
                           scopes=("user/Communication.c",))
        message: dict[str, Any] = {
            "resourceType": "Communication", "subject": {"reference": f"Patient/{patient_id}"},
            "inResponseTo": [{"reference": communication}],
            "payload": [{"contentString": text}]}
        if recipient:
            message["recipient"] = [{"reference": recipient}]
        try:
            posted = thread.post_message(repository, writer, message, load_rules(),
                                         now=_now)
        except LiaisonError:  # e.g. the writer of the answered message left the care team
            if "recipient" not in message:
                return False
            del message["recipient"]
            try:
                posted = thread.post_message(repository, writer, message, load_rules(), now=_now)
            except LiaisonError:
                return False
        tell(engine, settings, posted)
        return True

    return file


def _now() -> datetime:
    return datetime.now(UTC)


def _answered(engine: Engine, repository: Repository, mail: EmailMessage
              ) -> tuple[str, str, str | None] | None:
    """(the Communication answered, its patient's id, whom to answer) of the first message
    liaison sent that the mail names as the one it replies to."""
    named = re.findall(r"<[^<>\s]+>", " ".join(str(mail.get(h, ""))
                                             for h in ("In-Reply-To", "References")))
    with Session(engine) as session:
        for message_id in named:
            sent = session.get(SentMessage, message_id)
            entry = outbox.get_entry(engine, sent.outbox_id) if sent is not None else None
            if entry is None:
                continue
            payload = entry.payload_json()
            found = _communication_of(repository, payload)
            if found is not None:
                return found
    return None


def _communication_of(repository: Repository, payload: dict[str, Any]
                      ) -> tuple[str, str, str | None] | None:
    if payload.get("thread_message"):  # a message of the thread: answer its writer
        kind, _, message_id = str(payload["thread_message"]).partition("/")
        try:
            answered = repository.read(kind, message_id)
        except LiaisonError:
            return None
        sender = (answered.get("sender") or {}).get("reference")
    else:  # a letter's message: answer the care team
        identifier = (payload.get("communication") or {}).get("identifier") or [{}]
        found = repository.search("Communication", [
            ("identifier", f"{identifier[0].get('system')}|{identifier[0].get('value')}")])
        entries = found.get("entry") or []
        if not entries:
            return None
        answered, sender = entries[0]["resource"], None
    subject = str((answered.get("subject") or {}).get("reference", ""))
    if not subject.startswith("Patient/"):
        return None
    return f"Communication/{answered['id']}", subject.split("/", 1)[1], sender


def _reply_text(mail: EmailMessage) -> str:
    """The reply's own words: its plain text, without the message it quotes."""
    part = mail.get_body(preferencelist=("plain",))
    text = part.get_content() if part is not None else ""
    kept = []
    for line in str(text).splitlines():
        if line.startswith(">") or _QUOTE_HEADER.match(line):
            break
        kept.append(line)
    return "\n".join(kept).strip()

