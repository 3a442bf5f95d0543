"""Discharge notices liaison accepted, one row per notice of a hospital: a notice sent again
(an interface engine resends what it did not see acknowledged) is answered, not queued twice."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class ReceivedNotice(SQLModel, table=True):
    __tablename__ = "discharge_notice"
    __table_args__ = (UniqueConstraint("hospital", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    hospital: str = Field(max_length=64)  # idNat_Struct of the sender
    message_id: str = Field(max_length=250)  # MSH-10, or a digest of a FHIR notice
    event: str = Field(max_length=32)  # planned | discharged | planned-cancelled | …
    stay: str = Field(max_length=300, index=True)  # liaison's key of the stay
    text: str  # what the care team was told
    told: int = 0  # how many Communications the notice's bundle holds
    outbox_id: int | None = None
    received_at: datetime = Field(default_factory=utcnow)
