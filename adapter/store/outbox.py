"""The durable outbox: what must still be sent somewhere, written in the same database
transaction as the fact that caused it, so nothing accepted is ever lost.

Entries are keyed (e.g. by patient): only the oldest unfinished entry of a key can be claimed,
so a later version of a letter never overtakes an earlier one. Workers claim entries with a
lease (`claimed_until`) in one UPDATE — `FOR UPDATE SKIP LOCKED` on PostgreSQL, the database
write lock on SQLite — so several workers never send the same entry at once, and the entries of
a worker that crashed mid-send are taken over when its lease expires.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Column, Index, LargeBinary, Text, bindparam, func, insert, text
from sqlalchemy import select as select_columns
from sqlalchemy.engine import Engine
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import TextClause
from sqlmodel import Field, Session, SQLModel, col, select
from sqlmodel.sql.sqltypes import UTCDateTime

from adapter.store.engine import table_of
from adapter.store.locking import write_session

PENDING = "pending"  # never tried yet
RETRYING = "retrying"  # tried, failed for a reason worth retrying, waits for next_attempt_at
DELIVERED = "delivered"
FAILED = "failed"  # rejected by the target, or out of attempts: waits for a human (retry/replay)
def utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxEntry(SQLModel, table=True):
    __tablename__ = "outbox_entry"
    __table_args__ = (
        Index("ix_outbox_key_id", "key", "id"),
        Index("ix_outbox_status_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True, max_length=64)
    key: str = Field(max_length=128)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default=PENDING, max_length=16)
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    claimed_until: datetime | None = None
    claim_token: str | None = Field(default=None, max_length=64)
    last_status: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))  # OperationOutcome JSON
    result: str | None = Field(default=None, sa_column=Column(Text))  # what the target answered
    delivered_at: datetime | None = None

    def payload_json(self) -> Any:
        return orjson.loads(self.payload)

    def last_error_json(self) -> dict[str, Any] | None:
        return orjson.loads(self.last_error) if self.last_error else None

    def result_json(self) -> dict[str, Any] | None:
        return orjson.loads(self.result) if self.result else None


class OutboxPayload(SQLModel, table=True):
    """The body of an entry, in a table of its own: SQLite rewrites a whole row on UPDATE, so a
    letter's bundle (~150 KB) kept in the entry's row was written again by its claim and again
    by its result — most of the cost of the bookkeeping, and of the WAL checkpoints after it.
    (Entries queued before this table keep their body in `outbox_entry.payload`.)"""

    __tablename__ = "outbox_payload"

    entry_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


_ENTRIES = table_of(OutboxEntry)
_PAYLOADS = table_of(OutboxPayload)


@dataclass(frozen=True)
class Claim:
    """An entry a worker holds until `lease_until`; results are recorded only with its token."""

    entry_id: int
    kind: str
    key: str
    payload: bytes
    attempts: int
    token: str
    lease_until: datetime

    def payload_json(self) -> Any:
        return orjson.loads(self.payload)


_DATETIME_PARAMS = ("now", "until", "next_attempt_at", "delivered_at")


def _sql(statement: str, params: dict[str, Any]) -> TextClause:
    """A text statement whose datetime parameters are stored exactly as the ORM stores them."""
    typed = [bindparam(name, type_=UTCDateTime()) for name in _DATETIME_PARAMS if name in params]
    return text(statement).bindparams(*typed)


def write_scope(engine: Engine, *, urgent: bool = False) -> AbstractContextManager[Session]:
    """One write transaction. On SQLite, writers of this process queue on one lock (shared with
    the record's writes) and begin IMMEDIATE: waiting on SQLite's own busy handler, which sleeps
    in growing steps, made concurrent ingestion ten times slower. `urgent`: a client waits for
    this write (acceptance), it goes before background writes (delivery)."""
    return write_session(engine, urgent=urgent)


def enqueue(session: Session, kind: str, payload: dict[str, Any] | bytes, key: str) -> OutboxEntry:
    """Add an entry in the caller's transaction (committed, or rolled back, with its cause)."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    entry = OutboxEntry(kind=kind, key=key, payload=b"")  # the body goes beside (OutboxPayload)
    session.add(entry)
    session.flush()  # assigns the id, which also fixes the entry's place in its key's order
    session.execute(insert(_PAYLOADS).values(entry_id=entry.id, payload=body))
    set_committed_value(entry, "payload", body)  # for the caller, without writing it twice
    return entry


def _with_payloads(session: Session, found: list[OutboxEntry]) -> list[OutboxEntry]:
    """`found` with each body read from where it is kept (see `OutboxPayload`)."""
    ids = [entry.id for entry in found if not entry.payload]
    bodies: dict[int, bytes] = {}
    for start in range(0, len(ids), 500):
        bodies.update(session.execute(select(_PAYLOADS.c.entry_id, _PAYLOADS.c.payload).where(
            _PAYLOADS.c.entry_id.in_(ids[start:start + 500]))).all())
    for entry in found:
        if entry.id in bodies:  # not marked changed: these objects are only read
            set_committed_value(entry, "payload", bodies[entry.id])
    return found


_ELIGIBLE = """
SELECT o.id FROM outbox_entry o
WHERE o.status IN ('pending', 'retrying') AND o.next_attempt_at <= :now
  AND (o.claimed_until IS NULL OR o.claimed_until < :now)
  {kinds}
  AND NOT EXISTS (
    SELECT 1 FROM outbox_entry older
    WHERE older.key = o.key AND older.id < o.id AND older.status IN ('pending', 'retrying'))
ORDER BY o.id
LIMIT :limit
"""


def claim(
    engine: Engine, *, lease_seconds: float, limit: int = 1, kinds: tuple[str, ...] | None = None,
    now: datetime | None = None,
) -> list[Claim]:
    """Take up to `limit` due entries (the oldest unfinished one of each key) under a lease.
    `now`: the worker's clock (the time leases and due dates are compared with)."""
    now = now or utcnow()
    token = uuid.uuid4().hex
    lease_until = now + timedelta(seconds=lease_seconds)
    params: dict[str, Any] = {"now": now, "limit": limit, "token": token, "until": lease_until}
    kind_filter = ""
    if kinds:
        names = [f":kind{i}" for i in range(len(kinds))]
        kind_filter = f"AND o.kind IN ({', '.join(names)})"
        params.update({f"kind{i}": kind for i, kind in enumerate(kinds)})
    eligible = _ELIGIBLE.format(kinds=kind_filter)
    if engine.dialect.name == "postgresql":
        # Rows another worker is claiming right now are skipped, not waited for; a row claimed
        # meanwhile is re-checked by PostgreSQL against the WHERE clause before it is locked.
        eligible += " FOR UPDATE SKIP LOCKED"
    statement = _sql(
        "UPDATE outbox_entry SET claimed_until = :until, claim_token = :token, "
        f"attempts = attempts + 1 WHERE id IN ({eligible})",
        params,
    )
    held = (select_columns(_ENTRIES.c.id, _ENTRIES.c.kind, _ENTRIES.c.key,
                   func.coalesce(_PAYLOADS.c.payload, _ENTRIES.c.payload), _ENTRIES.c.attempts)
            .select_from(_ENTRIES.outerjoin(_PAYLOADS, _PAYLOADS.c.entry_id == _ENTRIES.c.id))
            .where(_ENTRIES.c.claim_token == token).order_by(_ENTRIES.c.id))
    with write_scope(engine) as session:
        session.execute(statement, params)
        return [Claim(entry_id, kind, key, bytes(payload), attempts, token, lease_until)
                for entry_id, kind, key, payload, attempts in session.execute(held)]


def _finish(engine: Engine, held: Claim, **values: Any) -> bool:
    """Record a result only if the claim is still ours (a lease taken over is not overwritten)."""
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    statement = _sql(
        f"UPDATE outbox_entry SET {assignments}, claimed_until = NULL, claim_token = NULL "
        "WHERE id = :entry_id AND claim_token = :token",
        values,
    )
    with write_scope(engine) as session:
        where = {"entry_id": held.entry_id, "token": held.token}
        outcome = session.execute(statement, {**values, **where})
        return bool(outcome.rowcount)  # type: ignore[attr-defined]


def renew(engine: Engine, held: Claim, *, lease_seconds: float,
          now: datetime | None = None) -> Claim | None:
    """A fresh lease on an entry still ours; None if another worker took it over meanwhile."""
    until = (now or utcnow()) + timedelta(seconds=lease_seconds)
    statement = _sql(
        "UPDATE outbox_entry SET claimed_until = :until "
        "WHERE id = :entry_id AND claim_token = :token",
        {"until": until},
    )
    with write_scope(engine) as session:
        outcome = session.execute(
            statement, {"until": until, "entry_id": held.entry_id, "token": held.token}
        )
        if not outcome.rowcount:  # type: ignore[attr-defined]
            return None
    return replace(held, lease_until=until)


def mark_delivered(engine: Engine, held: Claim, result: dict[str, Any] | None = None) -> bool:
    return _finish(
        engine,
        held,
        status=DELIVERED,
        delivered_at=utcnow(),
        result=orjson.dumps(result).decode() if result is not None else None,
        last_status=None,
    )


def mark_delivered_many(
    engine: Engine, delivered: list[tuple[Claim, dict[str, Any] | None]]
) -> list[bool]:
    """`mark_delivered` for several claims in ONE write transaction (a pusher's batch); each is
    recorded only if its claim is still held, as alone. True for each one recorded."""
    if not delivered:
        return []
    now = utcnow()
    statement = _sql(
        "UPDATE outbox_entry SET status = :status, delivered_at = :delivered_at, "
        "result = :result, last_status = NULL, claimed_until = NULL, claim_token = NULL "
        "WHERE id = :entry_id AND claim_token = :token",
        {"delivered_at": now},
    )
    recorded = []
    with write_scope(engine) as session:
        for held, result in delivered:  # rowcount per entry: a lost claim must be told apart
            outcome = session.execute(statement, {
                "status": DELIVERED, "delivered_at": now, "entry_id": held.entry_id,
                "token": held.token,
                "result": orjson.dumps(result).decode() if result is not None else None,
            })
            recorded.append(bool(outcome.rowcount))  # type: ignore[attr-defined]
    return recorded


def mark_retrying(
    engine: Engine, held: Claim, *, delay: float, status: int | None, outcome: dict[str, Any],
    now: datetime | None = None,
) -> bool:
    return _finish(
        engine,
        held,
        status=RETRYING,
        next_attempt_at=(now or utcnow()) + timedelta(seconds=delay),
        last_status=status,
        last_error=orjson.dumps(outcome).decode(),
    )


def mark_failed(
    engine: Engine, held: Claim, *, status: int | None, outcome: dict[str, Any]
) -> bool:
    return _finish(
        engine, held, status=FAILED, last_status=status, last_error=orjson.dumps(outcome).decode()
    )


# Entries of a letter version whose newer version (same setId) is already delivered: sending
# them again would roll the CarePlan, CareTeam and Encounter back to the older version.
_SUPERSEDED = (
    "SELECT older.outbox_id FROM received_letter older "
    "JOIN received_letter newer ON newer.set_id = older.set_id AND newer.version > older.version "
    "JOIN outbox_entry sent ON sent.id = newer.outbox_id AND sent.status = 'delivered' "
    "WHERE older.outbox_id IS NOT NULL"
)


def superseded(engine: Engine) -> list[int]:
    """Failed or waiting entries that replay and retry leave alone (a newer version landed)."""
    with Session(engine) as session:
        return [int(row[0]) for row in session.execute(text(_SUPERSEDED)).all()]


def retry(engine: Engine, entry_id: int) -> bool:
    """Put one failed (or waiting) entry back in line now; False if it does not exist, is done,
    or is superseded by a newer version of its letter already delivered."""
    with write_scope(engine) as session:
        outcome = session.execute(
            _sql(
                "UPDATE outbox_entry SET status = :pending, attempts = 0, next_attempt_at = :now "
                "WHERE id = :entry_id AND status IN ('failed', 'retrying', 'pending') "
                f"AND id NOT IN ({_SUPERSEDED})",
                {"now": None},
            ),
            {"pending": PENDING, "now": utcnow(), "entry_id": entry_id},
        )
        return bool(outcome.rowcount)  # type: ignore[attr-defined]


def replay_failed(engine: Engine) -> int:
    """Put every failed entry back in line, but those superseded by a newer delivered version of
    their letter; returns how many."""
    with write_scope(engine) as session:
        outcome = session.execute(
            _sql(
                "UPDATE outbox_entry SET status = :pending, attempts = 0, next_attempt_at = :now "
                f"WHERE status = 'failed' AND id NOT IN ({_SUPERSEDED})",
                {"now": None},
            ),
            {"pending": PENDING, "now": utcnow()},
        )
        return int(outcome.rowcount)  # type: ignore[attr-defined]


def get_entry(engine: Engine, entry_id: int) -> OutboxEntry | None:
    with Session(engine, expire_on_commit=False) as session:
        entry = session.get(OutboxEntry, entry_id)
        return _with_payloads(session, [entry])[0] if entry is not None else None


def counts(engine: Engine) -> dict[str, int]:
    """Number of entries per status (every status present, zero when none)."""
    with Session(engine) as session:
        rows = session.execute(
            text("SELECT status, COUNT(*) FROM outbox_entry GROUP BY status")
        ).all()
    found = {status: 0 for status in (PENDING, RETRYING, DELIVERED, FAILED)}
    found.update({status: int(number) for status, number in rows})
    return found


def entries(engine: Engine, *, status: str | None = None, limit: int = 100) -> list[OutboxEntry]:
    with Session(engine, expire_on_commit=False) as session:
        query = select(OutboxEntry).order_by(col(OutboxEntry.id)).limit(limit)
        if status:
            query = query.where(OutboxEntry.status == status)
        return _with_payloads(session, list(session.exec(query).all()))


def next_due_in(engine: Engine, now: datetime | None = None) -> float | None:
    """Seconds until the next unfinished entry is due (0 if one is due now), None if none."""
    with Session(engine) as session:
        due = session.execute(
            text(
                "SELECT MIN(CASE WHEN claimed_until IS NOT NULL "
                "AND claimed_until > next_attempt_at THEN claimed_until "
                "ELSE next_attempt_at END) FROM outbox_entry "
                "WHERE status IN ('pending', 'retrying')"
            )
        ).scalar()
    if due is None:
        return None
    if isinstance(due, str):  # SQLite returns the stored text (UTC, no offset) for an aggregate
        due = datetime.fromisoformat(due)
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return max(0.0, (due - (now or utcnow())).total_seconds())
