"""Tables of the coordination part: opposition registry, audit of sharing decisions,
FHIR Subscriptions, and the living-directory fields (availability, skills).

Keyed by business identifiers (patient identifier, idNat_PS), never by another part's rows,
so the directory and the record can evolve without migrations here.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class ConsentDecision(SQLModel, table=True):
    """One decision of the patient about sharing: `oppose` or `withdraw` (of an opposition).

    History is kept; the latest decision for a patient identifier is the one in force.
    """

    __tablename__ = "coordination_consent"

    id: int | None = Field(default=None, primary_key=True)
    patient_system: str = Field(index=True, max_length=200)
    patient_value: str = Field(index=True, max_length=100)
    decision: str = Field(max_length=20)  # oppose | withdraw
    recorded_at: datetime = Field(default_factory=utcnow, index=True)
    recorded_by: str | None = Field(default=None, max_length=200)
    source: str = Field(default="api", max_length=20)  # api | cli
    note: str | None = Field(default=None, sa_column=Column(Text))


class SharingAudit(SQLModel, table=True):
    """Why something was (or was not) shared with someone: one row per decision."""

    __tablename__ = "coordination_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    letter_id: str | None = Field(default=None, index=True, max_length=200)
    patient_value: str | None = Field(default=None, index=True, max_length=100)
    action: str = Field(max_length=60)  # e.g. communication, care-team, notify, read
    target: str | None = Field(default=None, max_length=300)  # idNat_PS, endpoint, reader
    outcome: str = Field(max_length=20)  # shared | withheld | restricted | denied
    reason: str = Field(sa_column=Column(Text))


class SubscriptionRecord(SQLModel, table=True):
    """A FHIR R4 Subscription (rest-hook) and its delivery state."""

    __tablename__ = "coordination_subscription"

    id: str = Field(primary_key=True, max_length=64)
    status: str = Field(default="active", index=True, max_length=20)  # requested|active|error|off
    criteria: str = Field(sa_column=Column(Text, nullable=False))
    resource_type: str = Field(index=True, max_length=60)
    endpoint: str = Field(sa_column=Column(Text, nullable=False))
    payload: str | None = Field(default=None, max_length=100)  # None: empty-body notification
    headers_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    owner_kind: str | None = Field(default=None, max_length=20)
    owner_idnat: str | None = Field(default=None, max_length=100)
    owner_organization: str | None = Field(default=None, max_length=100)  # a hospital's
    owner_cpts: str | None = Field(default=None, max_length=100)  # a coordinator's
    end: datetime | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    events_sent: int = 0


class Availability(SQLModel, table=True):
    """What a professional can take on: the living part of the directory."""

    __tablename__ = "coordination_availability"
    __table_args__ = (UniqueConstraint("identifier_system", "identifier_value"),)

    id: int | None = Field(default=None, primary_key=True)
    identifier_system: str = Field(max_length=200)
    identifier_value: str = Field(index=True, max_length=100)
    accepts_new_patients: bool | None = None
    home_visits: bool | None = None
    available_within_hours: int | None = None  # e.g. 24: can start within 24 h after discharge
    skills: str = Field(default="", sa_column=Column(Text, nullable=False))  # space separated
    postcodes: str = Field(default="", sa_column=Column(Text, nullable=False))  # area served
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str | None = Field(default=None, max_length=200)
