"""The MIME message of one letter to one recipient: French text, the XDM package, the page;
and of one message of the patient's thread: its text and attachments."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from adapter.mssante.rendering import readable_letter
from adapter.mssante.xdm import xdm_package


def compose(message: dict[str, Any], letter: bytes, *, sender: str, rules: dict[str, Any],
            max_bytes: int, now: datetime | None = None) -> EmailMessage:
    """`message` is an outbox payload of `plan.plan_messages`; `letter` the CDA as received."""
    now = now or datetime.now(UTC)
    mail = _headers(message, sender, now)
    if rules["message"].get("ask_read_receipt"):
        mail["Disposition-Notification-To"] = sender
    mail.set_content(message["body"])
    package = xdm_package(letter, message["document"], recipient=message["to"], rules=rules["xdm"],
                          now=now)
    mail.add_attachment(package, maintype="application", subtype="zip",
                        filename=rules["xdm"]["archive_name"])
    mail.add_attachment(readable_letter(letter, max_bytes=max_bytes), subtype="html",
                        filename=rules["message"]["rendering_name"])
    return mail


def compose_thread(message: dict[str, Any], *, sender: str, now: datetime | None = None
                   ) -> EmailMessage:
    """A message of the patient's thread (`plan.plan_thread_mail`): its text, its attachments."""
    mail = _headers(message, sender, now or datetime.now(UTC))
    mail.set_content(message["body"])
    for number, attachment in enumerate(message.get("attachments") or [], start=1):
        maintype, _, subtype = str(attachment["contentType"]).partition("/")
        mail.add_attachment(base64.b64decode(attachment["data"]), maintype=maintype,
                            subtype=subtype, filename=attachment.get("title")
                            or f"piece-jointe-{number}")
    return mail


def _headers(message: dict[str, Any], sender: str, now: datetime) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message["to"]
    mail["Subject"] = message["subject"]
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = message["message_id"]  # the same at every attempt: sent twice, one mail
    return mail
