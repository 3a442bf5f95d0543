"""The MSSanté messages liaison sent, by Message-ID: what a delivery report (DSN) or a read
receipt (MDN) collected from liaison's mailbox names, to find the message's outbox entry (and
so its Communication). Written with the message's outbox entry, in the letter's transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class SentMessage(SQLModel, table=True):
    __tablename__ = "mssante_message"

    message_id: str = Field(primary_key=True, max_length=250)  # "<…@…>" as in the header
    outbox_id: int = Field(index=True)
    # queued → received (the relay took it) → read (an MDN came back); or bounced / refused
    state: str = Field(default="queued", max_length=16)
    received_at: datetime | None = None  # when the relay took it (a read receipt keeps it)
    updated_at: datetime = Field(default_factory=utcnow)
