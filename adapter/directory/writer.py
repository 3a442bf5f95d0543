"""Chunked, hash-compared writes shared by every importer.

Each chunk of source rows is compared with what the table holds (one SELECT on the business
keys), then written in at most two statements: an executemany INSERT of the new rows, an
executemany UPDATE of the changed ones; unchanged ones are not written, only remembered as seen
by this run. One transaction per chunk keeps memory flat and lets readers in between chunks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Index, Table, func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from adapter.store.directory_tables import DirectoryImportRun
from adapter.store.engine import table_of

# SQLite accepts 32,766 bound parameters per statement; stay well under for the key look-ups.
KEY_BATCH = 5_000
MAX_REJECTIONS_KEPT = 200


@dataclass
class Rejection:
    line: int
    reason: str


class Rejected(Exception):
    """A line (row, entry) of a directory source that cannot be imported: why (`reason`, the
    summary counts by it) and what exactly (`detail`); the rest of the source goes on."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class ImportSummary:
    """What an import did, in lines of the source (or resources, for a FHIR Bundle)."""

    kind: str
    source_name: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deactivated: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)  # the first ones, with line numbers
    seconds: float = 0.0
    run_id: int | None = None
    # per table: inserted / updated / unchanged / deactivated rows
    entities: dict[str, Counter[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def reject(self, line: int, reason: str, detail: str | None = None) -> Rejection:
        self.rejected += 1
        self.reasons[reason] += 1
        rejection = Rejection(line, f"{reason}: {detail}" if detail else reason)
        if len(self.rejections) < MAX_REJECTIONS_KEPT:
            self.rejections.append(rejection)
        return rejection

    def count(self, outcome: str, n: int = 1) -> None:
        setattr(self, outcome, getattr(self, outcome) + n)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source_name,
            "read": self.read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "deactivated": self.deactivated,
            "reasons": dict(self.reasons),
            "entities": {name: dict(counts) for name, counts in self.entities.items()},
            "notes": list(self.notes),
        }


RejectionCallback = Callable[[Rejection], None]
ProgressCallback = Callable[[int], None]  # bytes of the source read so far


# SQLite settings of an import connection, put back when the import ends (the connection goes
# back to the engine's pool). synchronous stays NORMAL, the engine's setting: in WAL mode a commit
# then writes the WAL without waiting for the disk, and only checkpoints sync. OFF would save
# those syncs (~5 %) but lets a power cut or an OS crash during a checkpoint corrupt the whole
# database file, which also holds the letters and the record. A killed or failed import, on
# the other hand, leaves every chunk committed before it in place and the rest untouched, with
# any setting: running it again resumes it (rows already written compare equal and are skipped).
BULK_PRAGMAS = {
    "cache_size": -65536,  # 64 MiB: the B-tree pages being appended to stay in memory
    "wal_autocheckpoint": 0,  # pages for BULK_WAL_BYTES (files differ in page size): set below
}
BULK_WAL_BYTES = 400 * 1024 * 1024  # fewer, larger checkpoints during the import


@contextmanager
def bulk_settings(connection: Connection) -> Iterator[None]:
    """BULK_PRAGMAS on this SQLite connection while the block runs; PostgreSQL needs nothing."""
    if connection.dialect.name != "sqlite":
        yield
        return
    before = {
        name: connection.exec_driver_sql(f"PRAGMA {name}").scalar_one() for name in BULK_PRAGMAS
    }
    page_size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
    settings = {**BULK_PRAGMAS, "wal_autocheckpoint": BULK_WAL_BYTES // page_size}
    for name, value in settings.items():
        connection.exec_driver_sql(f"PRAGMA {name}={int(value)}")
    connection.commit()
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        for name, value in before.items():
            connection.exec_driver_sql(f"PRAGMA {name}={int(value)}")
        connection.commit()


def start_run(engine: Engine, kind: str, source_name: str, *, full: bool) -> int:
    runs = table_of(DirectoryImportRun)
    with engine.begin() as connection:
        result = connection.execute(
            runs.insert().values(
                kind=kind, source_name=source_name, full=full, started_at=datetime.now(UTC)
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def finish_run(engine: Engine, summary: ImportSummary) -> None:
    runs = table_of(DirectoryImportRun)
    with engine.begin() as connection:
        connection.execute(
            update(runs)
            .where(runs.c.id == summary.run_id)
            .values(
                finished_at=datetime.now(UTC),
                lines_read=summary.read,
                inserted=summary.inserted,
                updated=summary.updated,
                unchanged=summary.unchanged,
                rejected=summary.rejected,
                deactivated=summary.deactivated,
            )
        )


@contextmanager
def deferred_indexes(connection: Connection, tables: list[Table]) -> Iterator[bool]:
    """On a first import into empty tables, build the secondary indexes once at the end:
    sorting two million keys once is several times cheaper than maintaining the B-trees row
    by row. Unique constraints stay, they are what the upserts rely on. Yields whether the
    tables were empty."""
    empty = all(
        connection.execute(select(func.count()).select_from(table)).scalar_one() == 0
        for table in tables
    )
    connection.commit()
    dropped: list[Index] = []
    if not empty:
        # an earlier first import killed half-way left its indexes dropped: put them back
        with connection.begin():
            for table in tables:
                for index in table.indexes:
                    index.create(connection, checkfirst=True)
    if empty:
        with connection.begin():
            for table in tables:
                for index in table.indexes:
                    if not index.unique:
                        index.drop(connection)
                        dropped.append(index)
    try:
        yield empty
    finally:
        if dropped:
            with connection.begin():
                for index in dropped:
                    index.create(connection)


@dataclass
class Outcome:
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


class Upserter:
    """Writes rows keyed by a business key, skipping those whose content hash did not change.

    Rows are tuples in the order of `columns` (key first). Unchanged rows are not written at all:
    the ids this run saw are remembered in a byte map (one byte per row id, 2 MB for two million
    rows), and only the rows absent from a full import are stamped inactive at the end. A row
    already seen by the current run keeps its first version: the national extract repeats a
    professional's identity on each of their activities, and the first one wins.
    Statements go straight to the driver's executemany (SQLite and psycopg alike): building
    SQLAlchemy parameters row by row would cost more than the database writes themselves.
    """

    def __init__(
        self,
        model: type[SQLModel],
        columns: tuple[str, ...],
        hash_column: str,
        run_id: int,
        *,
        blank_is_null: bool = False,
    ) -> None:
        self.table = table_of(model)
        self.name = self.table.name
        self.columns = columns
        self.key = columns[0]
        self.hash_column = hash_column
        self.hash_at = columns.index(hash_column)
        self.run_id = int(run_id)
        # With blank_is_null, rows hold '' for absent text values and the statement turns them
        # into NULL: the sqlite3 driver binds a str directly but sends None (and True) through its
        # adapter look-up, which cost more than SQLite's own work on a wide row.
        self.blank_is_null = blank_is_null
        # seen_run and active are written as literals, so rows go to the driver as they are.
        self._stamp_sql = (str(self.run_id), "TRUE")
        self._seen = bytearray()

    def _mark_seen(self, row_id: int) -> None:
        if row_id >= len(self._seen):
            self._seen.extend(bytes(max(row_id + 1 - len(self._seen), len(self._seen))))
        self._seen[row_id] = 1

    def seen_ids(self) -> bytearray:
        return self._seen

    def merge_seen(self, other: bytearray) -> None:
        """Add the row ids another process's Upserter of the same run saw."""
        size = max(len(self._seen), len(other))
        # marks are 0 or 1 per byte: a bitwise or of the two maps read as big integers
        merged = int.from_bytes(self._seen.ljust(size, b"\0")) | int.from_bytes(
            other.ljust(size, b"\0")
        )
        self._seen = bytearray(merged.to_bytes(size))

    def _was_seen(self, row_id: int) -> bool:
        return row_id < len(self._seen) and self._seen[row_id] == 1

    def _marks(self, connection: Connection, count: int) -> str:
        mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        return ", ".join([mark] * count)

    def _values(self, connection: Connection) -> list[str]:
        """One SQL expression per column of `columns`: a placeholder, or NULLIF(placeholder, '')."""
        mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        value = f"NULLIF({mark}, '')" if self.blank_is_null else mark
        return [value] * len(self.columns)

    def _insert_sql(self, connection: Connection) -> str:
        columns = (*self.columns, "seen_run", "active")
        values = (*self._values(connection), *self._stamp_sql)
        return f"INSERT INTO {self.name} ({', '.join(columns)}) VALUES ({', '.join(values)})"

    def existing(
        self, connection: Connection, keys: list[str]
    ) -> dict[str, tuple[int, str, int, bool]]:
        found: dict[str, tuple[int, str, int, bool]] = {}
        for start in range(0, len(keys), KEY_BATCH):
            batch = keys[start : start + KEY_BATCH]
            sql = (
                f"SELECT id, {self.key}, {self.hash_column}, seen_run, active FROM {self.name} "
                f"WHERE {self.key} IN ({self._marks(connection, len(batch))})"
            )
            for row_id, key, digest, seen_run, active in _fetch_all(connection, sql, batch):
                found[key] = (row_id, digest, seen_run, bool(active))
        return found

    def insert_new(self, connection: Connection, rows: Mapping[str, tuple[Any, ...]]) -> Outcome:
        """First import into an empty table: no look-up, keys already written by this run win."""
        outcome = Outcome()
        if not rows:
            return outcome
        sql = f"{self._insert_sql(connection)} ON CONFLICT ({self.key}) DO NOTHING"
        result = connection.exec_driver_sql(sql, list(rows.values()))
        written = result.rowcount if result.rowcount is not None and result.rowcount >= 0 else None
        keys = list(rows)
        if written is None or written == len(keys):
            outcome.inserted = keys
        else:  # a professional whose lines straddle two chunks: later copies are no-ops
            outcome.inserted = keys[:written]
            outcome.unchanged = keys[written:]
        return outcome

    def apply(self, connection: Connection, rows: Mapping[str, tuple[Any, ...]]) -> Outcome:
        """Insert or update `rows` (business key → values in `columns` order) that changed."""
        outcome = Outcome()
        if not rows:
            return outcome
        existing = self.existing(connection, list(rows))
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        hash_at, run_id = self.hash_at, self.run_id
        for key, row in rows.items():
            found = existing.get(key)
            if found is None:
                inserts.append(row)
                outcome.inserted.append(key)
                continue
            row_id, digest, seen_run, active = found
            if seen_run == run_id or self._was_seen(row_id):
                outcome.unchanged.append(key)  # already written by this run: first one wins
            elif active and digest == row[hash_at]:
                self._mark_seen(row_id)
                outcome.unchanged.append(key)
            else:  # changed, or back after being marked inactive
                self._mark_seen(row_id)
                updates.append((*row, row_id))
                outcome.updated.append(key)
        if inserts:
            connection.exec_driver_sql(self._insert_sql(connection), inserts)
        if updates:
            mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
            columns = (*self.columns, "seen_run", "active")
            values = (*self._values(connection), *self._stamp_sql)
            assignments = ", ".join(
                f"{name} = {value}" for name, value in zip(columns, values, strict=True)
            )
            sql = f"UPDATE {self.name} SET {assignments} WHERE id = {mark}"
            connection.exec_driver_sql(sql, updates)
        return outcome

    def deactivate_unseen(self, connection: Connection, *conditions: Any) -> int:
        """Mark inactive the active rows this (full) run did not see; returns how many."""
        candidates = connection.execute(
            select(self.table.c.id).where(
                self.table.c.seen_run != self.run_id, self.table.c.active.is_(True), *conditions
            )
        ).scalars()
        # a re-import reads every row id here (unchanged rows are not stamped): check inline
        seen, known = self._seen, len(self._seen)
        unseen = [row_id for row_id in candidates if row_id >= known or not seen[row_id]]
        for start in range(0, len(unseen), KEY_BATCH):
            connection.execute(
                update(self.table)
                .where(self.table.c.id.in_(unseen[start : start + KEY_BATCH]))
                .values(active=False)
            )
        return len(unseen)


def _fetch_all(connection: Connection, sql: str, parameters: Sequence[Any]) -> list[Any]:
    """Rows of `sql` as the driver returns them, on the connection's current transaction:
    the key look-ups of a re-import read millions of rows, SQLAlchemy's result rows would
    cost more than the queries."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, tuple(parameters))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
