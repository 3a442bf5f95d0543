"""Tables of the embedded FHIR record: current resources, their versions, the search index,
the precomputed access grants and the audit trail.

Resources are stored as JSON text; everything a search filters on is copied into narrow index
tables (one row per indexed value) so a search is a handful of indexed `IN (subquery)` joins.
Datetimes are naive UTC everywhere so SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

from pydantic import NaiveDatetime
from sqlalchemy import DDL, BigInteger, Column, Index, Text, UniqueConstraint, event
from sqlmodel import Field, SQLModel


class RecordResource(SQLModel, table=True):
    """The current version of each resource (a deleted one keeps its row, flagged)."""

    __tablename__ = "record_resource"
    __table_args__ = (
        UniqueConstraint("resource_type", "resource_id", name="uq_record_resource_identity"),
        Index("ix_record_resource_type_updated", "resource_type", "last_updated", "pk"),
        Index("ix_record_resource_patient", "patient_id", "resource_type"),
    )

    # `pk` is the unique, never-reused key that makes paging stable
    pk: int | None = Field(default=None, primary_key=True)
    resource_type: str = Field(max_length=64)
    resource_id: str = Field(max_length=64)
    version_id: int = 1
    last_updated: NaiveDatetime
    deleted: bool = False
    # the Patient whose compartment holds the resource (None for directory-like resources)
    patient_id: str | None = Field(default=None, max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))


class RecordChange(SQLModel, table=True):
    """Where each resource's last change stands in the change feed (feed.py), assigned at the
    end of the writing transaction, in commit order. A table of its own: updating a column of
    `record_resource` would rewrite the whole row, a letter's 100 KB document included."""

    __tablename__ = "record_change"
    # resources stored before the feed existed: their pk as position
    __table_args__ = ({"info": {"backfill": "INSERT INTO record_change (resource_pk, "
                                            "change_seq) SELECT pk, pk FROM record_resource"}},)

    resource_pk: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    change_seq: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))


def _note_patient_changes(changes: str) -> str:
    """The statement that moves each patient's last position (`PatientChange`) up to the
    largest of `changes` (rows of `resource_pk`, `change_seq`) of their resources, never back."""
    return ("INSERT INTO record_patient_change (patient_id, change_seq) "
            "SELECT record_resource.patient_id, max(changed.change_seq) "
            f"FROM {changes} AS changed "
            "JOIN record_resource ON record_resource.pk = changed.resource_pk "
            "WHERE record_resource.patient_id IS NOT NULL GROUP BY record_resource.patient_id "
            "ON CONFLICT (patient_id) DO UPDATE SET change_seq = excluded.change_seq "
            "WHERE excluded.change_seq > record_patient_change.change_seq")


class PatientChange(SQLModel, table=True):
    """Each patient's last position in the change feed: the largest of their compartment's
    resources in `record_change`. A reader of a few patients asks "anything of mine after my
    cursor?" with one look-up per patient, where the resources' own positions cost one per
    resource, a number that only grows with the patient's stays.

    The database keeps it, by triggers on `record_change` (`_PATIENT_CHANGE_TRIGGERS`): whoever
    writes the feed, an instance of an earlier version during a rolling upgrade included, moves
    it. Kept from Python, a write it missed would tell that patient's readers "nothing new" past
    their change, for good."""

    __tablename__ = "record_patient_change"
    # a database of an earlier version: from the feed (the triggers may already have noted
    # later writes: never back)
    __table_args__ = ({"info": {"backfill": _note_patient_changes("record_change")}},)

    patient_id: str = Field(primary_key=True, max_length=64)
    change_seq: int = Field(sa_column=Column(BigInteger, nullable=False))


# Created with the table, in the same transaction: the trigger waits for the writers already
# stamping and holds back new ones until it exists; the backfill, after, reads all that
# committed before.
_PATIENT_CHANGE_TRIGGERS = {
    # once per statement: a letter's ~30 resources, one patient, one row written
    "postgresql": [
        "CREATE OR REPLACE FUNCTION record_note_patient_changes() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN {_note_patient_changes('changed')}; RETURN NULL; END $$",
        *(f"CREATE TRIGGER record_patient_change_on_{event_name} AFTER {event_name} "
          "ON record_change REFERENCING NEW TABLE AS changed FOR EACH STATEMENT "
          "EXECUTE FUNCTION record_note_patient_changes()"
          for event_name in ("insert", "update")),
    ],
    # SQLite has no statement-level triggers: once per row
    "sqlite": [
        f"CREATE TRIGGER record_patient_change_on_{event_name} AFTER {event_name} "
        "ON record_change BEGIN " + _note_patient_changes(
            "(SELECT NEW.resource_pk AS resource_pk, NEW.change_seq AS change_seq)") + "; END"
        for event_name in ("insert", "update")
    ],
}
for _dialect, _statements in _PATIENT_CHANGE_TRIGGERS.items():
    for _statement in _statements:
        event.listen(PatientChange.__table__, "after_create",  # type: ignore[attr-defined]
                     DDL(_statement).execute_if(dialect=_dialect))


class RecordFeed(SQLModel, table=True):
    """The change feed's last position handed out (one row, id 1; see feed.py)."""

    __tablename__ = "record_feed"

    id: int = Field(primary_key=True)
    position: int = Field(sa_column=Column(BigInteger, nullable=False))


class RecordVersion(SQLModel, table=True):
    """Every version ever written (vread, history); a deletion is a version without body."""

    __tablename__ = "record_version"
    __table_args__ = (
        UniqueConstraint(
            "resource_type", "resource_id", "version_id", name="uq_record_version_identity"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    resource_type: str = Field(max_length=64)
    resource_id: str = Field(max_length=64)
    version_id: int
    last_updated: NaiveDatetime
    method: str = Field(max_length=8)  # POST | PUT | DELETE
    deleted: bool = False
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class RecordToken(SQLModel, table=True):
    """token search values: identifiers, codes, codings, tags ('' when there is no system)."""

    __tablename__ = "record_token"
    __table_args__ = (
        Index("ix_record_token_lookup", "resource_type", "param", "code", "system", "resource_pk"),
    )

    id: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(index=True)
    resource_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    system: str = Field(default="", max_length=255)
    code: str = Field(max_length=255)


class RecordReference(SQLModel, table=True):
    """reference search values: a local target (type, id) per reference found."""

    __tablename__ = "record_reference"
    __table_args__ = (
        Index(
            "ix_record_reference_lookup",
            "resource_type",
            "param",
            "target_type",
            "target_id",
            "resource_pk",
        ),
        Index("ix_record_reference_target", "target_type", "target_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(index=True)
    resource_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    target_type: str = Field(max_length=64)
    target_id: str = Field(max_length=64)


class RecordDate(SQLModel, table=True):
    """date search values as an inclusive [low, high] range (precision and Periods widen it)."""

    __tablename__ = "record_date"
    __table_args__ = (
        Index("ix_record_date_lookup", "resource_type", "param", "low", "high", "resource_pk"),
    )

    id: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(index=True)
    resource_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    low: NaiveDatetime
    high: NaiveDatetime


class RecordString(SQLModel, table=True):
    """string search values, normalised (lower case, no accents) for the default prefix match."""

    __tablename__ = "record_string"
    __table_args__ = (
        Index("ix_record_string_lookup", "resource_type", "param", "normalized", "resource_pk"),
    )

    id: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(index=True)
    resource_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    normalized: str = Field(max_length=255)
    exact: str = Field(max_length=255)


# The security label of a restricted letter's resources: meta.tag <this>|<idNat_PS> per reader.
RESTRICTED_READER_TAG = "urn:liaison:restricted-reader"


class RestrictedReader(SQLModel, table=True):
    """The readers a restricted resource names (its `RESTRICTED_READER_TAG` tags), kept apart
    from the token index: every filtered read asks "is this resource restricted, and to whom",
    and in the token table, keyed by resource type first, that is a scan of every token."""

    __tablename__ = "record_restricted_reader"
    __table_args__ = (Index("ix_record_restricted_reader", "reader", "resource_pk"),)

    id: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(index=True)
    reader: str = Field(max_length=255)


RestrictedReader.__table__.info["backfill"] = (  # type: ignore[attr-defined]
    "INSERT INTO record_restricted_reader (resource_pk, reader) SELECT DISTINCT resource_pk, "
    f"code FROM record_token WHERE param = '_tag' AND system = '{RESTRICTED_READER_TAG}'")


class PatientGrant(SQLModel, table=True):
    """Who may read a patient's compartment (see grants.py).

    kind: `idnat` (active care-team participant) and `cpts` (CPTS the care team belongs to),
    recomputed whenever a CareTeam of the patient (or a party it points at) is written; `org`
    (a hospital that sent a letter for the patient: its Patient and CareTeams only), written
    once when the letter is stored. A search joins this table on (kind, value).
    """

    __tablename__ = "record_patient_grant"
    __table_args__ = (
        Index("ix_record_patient_grant_lookup", "kind", "value", "patient_id"),
        # a pull's grants given in its window: those few, not all of a hospital's
        Index("ix_record_patient_grant_window", "kind", "value", "granted_seq",
              info={"upgrade": True}),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)
    value: str = Field(max_length=128)
    valid_from: NaiveDatetime | None = None
    valid_until: NaiveDatetime | None = None
    # the change-feed position at which the grant appeared (its reader then pulls the
    # patient's resources written before); None: before the feed existed
    granted_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class ResourceGrant(SQLModel, table=True):
    """Who may read one resource outside the patient rule: a Communication's recipients
    (`idnat`), the organisation whose letter wrote it (`org`)."""

    __tablename__ = "record_resource_grant"
    __table_args__ = (Index("ix_record_resource_grant_lookup", "kind", "value", "resource_pk"),)

    id: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(index=True)
    kind: str = Field(max_length=16)
    value: str = Field(max_length=128)


class RecordAudit(SQLModel, table=True):
    """AuditEvent-like trail: who did what to which resource, when, with what outcome.

    Only identifiers of the actor and of the resource: never clinical content or search values.
    """

    __tablename__ = "record_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: NaiveDatetime = Field(index=True)
    actor_kind: str = Field(max_length=16)
    actor: str | None = Field(default=None, max_length=128)
    action: str = Field(max_length=16)  # read | vread | history | search | create | update | …
    resource_type: str | None = Field(default=None, max_length=64)
    resource_id: str | None = Field(default=None, max_length=64)
    outcome: int  # HTTP status answered
    result_count: int | None = None
