"""Sending one message through liaison's MSSanté relay, and what the relay's answer means.

Accepted: the relay took it (250). Worth trying again (`TargetUnavailable`, the outbox's
backoff): the relay cannot be reached, TLS cannot be set up, or it answers 4xx. Refused for
good (`MailRefused`): a 5xx — the address does not exist, the message is not accepted.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from adapter.config import Settings
from adapter.errors import TargetUnavailable


class MailRefused(Exception):
    """The relay refused the message for good (a 5xx answer)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


def tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(settings.mssante_ca_file) if settings.mssante_ca_file else None)
    if settings.mssante_client_cert:
        key = settings.mssante_client_key
        context.load_cert_chain(str(settings.mssante_client_cert), str(key) if key else None)
    return context


def send(mail: EmailMessage, recipient: str, settings: Settings) -> None:
    """Hand `mail` to the relay for `recipient`; raises `MailRefused` or `TargetUnavailable`."""
    assert settings.mssante_smtp_host and settings.mssante_sender
    try:
        with smtplib.SMTP(settings.mssante_smtp_host, settings.mssante_smtp_port,
                          timeout=settings.mssante_timeout_seconds) as relay:
            relay.ehlo()
            if settings.mssante_starttls:
                relay.starttls(context=tls_context(settings))  # refused without: never in clear
                relay.ehlo()
            if settings.mssante_username:
                relay.login(settings.mssante_username, settings.mssante_password or "")
            relay.send_message(mail, from_addr=settings.mssante_sender, to_addrs=[recipient])
    except smtplib.SMTPRecipientsRefused as error:
        code, text = next(iter(error.recipients.values()))
        _answer(code, text)
    except smtplib.SMTPResponseException as error:  # sender refused, data refused, auth…
        _answer(error.smtp_code, error.smtp_error)
    except (OSError, smtplib.SMTPException) as error:  # timeouts are OSErrors
        # unreachable, cut, TLS refused or unverifiable: the relay, not the message, is at fault
        raise TargetUnavailable(f"MSSanté relay: {type(error).__name__}") from None


def _answer(code: int, text: bytes | str) -> None:
    message = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    if 500 <= code < 600:
        raise MailRefused(code, message)
    raise TargetUnavailable(f"MSSanté relay answered {code}", status=code)
