"""Low-level writes of the record inside one database session: a new version of a resource,
its search index rows and its patient compartment. Access rules and HTTP live elsewhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Table, bindparam, delete, text, update
from sqlalchemy.engine import Connection, Dialect
from sqlmodel import Session
from sqlmodel import select as model_select

from adapter.record.indexing import IndexRows, index_rows, parse_reference, values_at
from adapter.record.params import COMPARTMENT_VIA, compartment_paths
from adapter.store.engine import table_of
from adapter.store.record_tables import (
    RESTRICTED_READER_TAG,
    RecordDate,
    RecordReference,
    RecordResource,
    RecordString,
    RecordToken,
    RecordVersion,
    RestrictedReader,
)

RESOURCES = table_of(RecordResource)
VERSIONS = table_of(RecordVersion)
_RESTRICTED = table_of(RestrictedReader)
INDEX_TABLES = (table_of(RecordToken), table_of(RecordReference), table_of(RecordDate),
                table_of(RecordString))


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def instant(moment: datetime) -> str:
    """FHIR instant of a naive-UTC datetime (microseconds kept: `_lastUpdated` needs them)."""
    return moment.isoformat(timespec="microseconds") + "Z"


def dumps(resource: dict[str, Any]) -> str:
    return orjson.dumps(resource).decode()


def loads(body: str) -> dict[str, Any]:
    return orjson.loads(body)


def _content(resource: dict[str, Any]) -> bytes:
    """The resource without server-assigned meta, to tell a real change from a re-send."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")}
    stripped = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        stripped["meta"] = meta
    return orjson.dumps(stripped, option=orjson.OPT_SORT_KEYS)


@dataclass
class Stored:
    """The current row of a resource, read or written with plain SQL (not an ORM object: a
    transaction writes a bundle's rows in a few statements, without ORM flushes)."""

    pk: int | None  # None: a new row still waiting in its `WriteBatch`
    resource_type: str
    resource_id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    patient_id: str | None
    body: str
    # the parsed body, when this transaction wrote it (grants read it instead of parsing
    # `body` again); never changed once written
    resource: dict[str, Any] | None = field(default=None, repr=False, compare=False)


# typed columns: SQLite's stored text comes back as datetime / bool, as through the ORM
_STORED_ROWS = text(
    "SELECT pk, resource_type, resource_id, version_id, last_updated, deleted, patient_id, body "
    "FROM record_resource WHERE resource_type IN :kinds AND resource_id IN :ids"
).bindparams(bindparam("kinds", expanding=True), bindparam("ids", expanding=True)).columns(
    RESOURCES.c.pk, RESOURCES.c.resource_type, RESOURCES.c.resource_id,
    RESOURCES.c.version_id, RESOURCES.c.last_updated, RESOURCES.c.deleted,
    RESOURCES.c.patient_id, RESOURCES.c.body)


def stored_rows(session: Session, keys: Iterable[tuple[str, str]]
                ) -> dict[tuple[str, str], Stored]:
    """The current rows of (type, id) `keys` that exist, in one query per 500 ids."""
    wanted = set(keys)
    kinds = sorted({kind for kind, _ in wanted})
    ids = sorted({resource_id for _, resource_id in wanted})
    found: dict[tuple[str, str], Stored] = {}
    for start in range(0, len(ids), 500):
        rows = session.execute(_STORED_ROWS, {"kinds": kinds, "ids": ids[start:start + 500]})
        for row in rows:
            if (row.resource_type, row.resource_id) in wanted:
                found[(row.resource_type, row.resource_id)] = Stored(*row)
    return found


@dataclass
class Written:
    row: Stored
    resource: dict[str, Any]
    created: bool  # a new resource (201) rather than a new version or no change (200)
    changed: bool  # False: identical to the current version, nothing was written


@dataclass
class WriteBatch:
    """History rows and index changes of one transaction, written together before its reads
    (grants, GET entries): a few multi-row statements instead of several per resource."""

    created: list[tuple[Stored, IndexRows]] = field(default_factory=list)  # new rows, no pk yet
    versions: list[tuple[Any, ...]] = field(default_factory=list)  # `_VERSION_COLUMNS`
    # versions that stopped being current: their history row gets the body it shared with
    # the resource row until now (see `write_version`)
    superseded: list[dict[str, Any]] = field(default_factory=list)
    cleared: set[int] = field(default_factory=set)  # pks whose stored index rows go
    indexed: dict[int, tuple[str, IndexRows]] = field(default_factory=dict)  # pk → new rows

    def flush(self, session: Session) -> None:
        if self.created:
            # One executemany, then the pks read back by identity (unique): SQLite cannot
            # promise the order of a multi-row RETURNING, so SQLAlchemy sent one INSERT a row.
            pks = insert_resources(session, [
                (row.resource_type, row.resource_id, row.version_id, row.last_updated, False,
                 row.patient_id, row.body) for row, _ in self.created])
            for row, index in self.created:
                row.pk = pks[(row.resource_type, row.resource_id)]
                self.indexed[row.pk] = (row.resource_type, index)
            self.created = []
        if self.cleared:
            ordered = sorted(self.cleared)
            for start in range(0, len(ordered), 500):
                clear_index(session, ordered[start:start + 500])
        if self.indexed:
            insert_index(session, [(pk, kind, rows) for pk, (kind, rows) in self.indexed.items()])
        if self.versions:
            insert_versions(session, self.versions)
        if self.superseded:  # after the inserts: a version may be written and superseded at once
            session.execute(_KEEP_BODY, self.superseded)
        self.versions, self.cleared, self.indexed, self.superseded = [], set(), {}, []

    def supersede(self, previous: Stored) -> None:
        """`previous`, the current version, is replaced: its history row keeps its body."""
        if not previous.deleted:
            self.superseded.append({"body": previous.body, "kind": previous.resource_type,
                                    "id": previous.resource_id, "version": previous.version_id})


def insert_resources(session: Session, rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], int]:
    """New resource rows (`_RESOURCE_COLUMNS`), in one statement: their pks by (type, id)."""
    insert_rows(session, RESOURCES, _RESOURCE_COLUMNS, rows)
    return stored_pks(session, [(row[0], row[1]) for row in rows])


def insert_versions(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """History rows (`_VERSION_COLUMNS`), in one statement."""
    insert_rows(session, VERSIONS, _VERSION_COLUMNS, rows)


def current(session: Session, resource_type: str, resource_id: str) -> RecordResource | None:
    return session.exec(
        model_select(RecordResource).where(
            RecordResource.resource_type == resource_type,
            RecordResource.resource_id == resource_id,
        )
    ).first()


def _target(value: Any) -> tuple[str, str] | None:
    link = value.get("reference") if isinstance(value, dict) else None
    return parse_reference(link) if link else None


def patient_of(session: Session, resource: dict[str, Any],
               known: Mapping[tuple[str, str], Stored | None] | None = None) -> str | None:
    """The id of the Patient whose compartment the resource belongs to (`known`: current rows
    in hand, e.g. those written earlier in the same transaction)."""
    resource_type = resource["resourceType"]
    if resource_type == "Patient":
        return resource["id"]
    for path in compartment_paths(resource_type):
        for value in values_at(resource, path):
            target = _target(value)
            if target and target[0] == "Patient":
                return target[1]
    for path in COMPARTMENT_VIA.get(resource_type, ()):
        for value in values_at(resource, path):
            target = _target(value)
            if target:
                row: Stored | RecordResource | None = (
                    known[target] if known is not None and target in known
                    else current(session, *target))
                if row is not None and row.patient_id:
                    return row.patient_id
    return None


# History rows hold the body of past versions only: the current version's body is the resource
# row's (a letter's DocumentReference carries ~100 KB of base64; written twice, it was the
# largest part of what a delivery writes). When a version is replaced, its history row gets it.
# (History rows written before this kept a copy: `body IS NULL` leaves them as they are.)
_KEEP_BODY = text(
    "UPDATE record_version SET body = :body WHERE resource_type = :kind "
    "AND resource_id = :id AND version_id = :version AND body IS NULL"
)


def write_version(
    session: Session,
    resource: dict[str, Any],
    *,
    method: str,
    existing: Stored | None,
    batch: WriteBatch,
    known: Mapping[tuple[str, str], Stored | None] | None = None,
) -> Written:
    """Store `resource` (its `id` set) as the next version of `existing` (or as version 1); the
    new row, its history row and its index go to `batch`."""
    unchanged = (existing is not None and not existing.deleted
                 and _content(loads(existing.body)) == _content(resource))
    if unchanged:
        assert existing is not None
        return Written(existing, loads(existing.body), created=False, changed=False)
    now = utcnow()
    version = existing.version_id + 1 if existing is not None else 1
    resource = {**resource, "meta": {**(resource.get("meta") or {}),
                                     "versionId": str(version), "lastUpdated": instant(now)}}
    body = dumps(resource)
    patient_id = patient_of(session, resource, known)
    row = Stored(None, resource["resourceType"], resource["id"], version, now, False, patient_id,
                 body, resource)
    if existing is None:
        batch.created.append((row, index_rows(resource)))
    else:
        batch.supersede(existing)
        if existing.pk is None:  # created earlier in this transaction: give it its pk first
            batch.flush(session)
        pk = row.pk = existing.pk
        assert pk is not None  # given by the flush above
        session.execute(update(RESOURCES).where(RESOURCES.c.pk == pk).values(
            version_id=version, last_updated=now, deleted=False, patient_id=patient_id,
            body=body))
        batch.cleared.add(pk)
        batch.indexed[pk] = (row.resource_type, index_rows(resource))
    batch.versions.append((row.resource_type, row.resource_id, version, now, method, False,
                           None))  # the body is the resource row's while current
    created = existing is None or existing.deleted
    return Written(row, resource, created=created, changed=True)


def write_deletion(session: Session, row: Stored, batch: WriteBatch) -> Stored:
    if row.pk is None:  # created earlier in this transaction
        batch.flush(session)
    assert row.pk is not None
    now = utcnow()
    batch.supersede(row)
    deleted = Stored(row.pk, row.resource_type, row.resource_id, row.version_id + 1, now, True,
                     row.patient_id, row.body)
    session.execute(update(RESOURCES).where(RESOURCES.c.pk == row.pk).values(
        version_id=deleted.version_id, last_updated=now, deleted=True))
    batch.versions.append((row.resource_type, row.resource_id, deleted.version_id, now,
                           "DELETE", True, None))
    batch.cleared.add(row.pk)
    batch.indexed.pop(row.pk, None)
    return deleted


def clear_index(session: Session, pks: list[int]) -> None:
    for table in (*INDEX_TABLES, _RESTRICTED):
        session.execute(delete(table).where(table.c.resource_pk.in_(pks)))


def insert_index(session: Session, indexed: list[tuple[int, str, IndexRows]]) -> None:
    tokens: list[tuple[Any, ...]] = []
    references: list[tuple[Any, ...]] = []
    dates: list[tuple[Any, ...]] = []
    strings: list[tuple[Any, ...]] = []
    for pk, resource_type, rows in indexed:
        tokens += [(pk, resource_type, *values) for values in rows.tokens]
        references += [(pk, resource_type, *values) for values in rows.references]
        dates += [(pk, resource_type, *values) for values in rows.dates]
        strings += [(pk, resource_type, *values) for values in rows.strings]
    for table, values in zip(INDEX_TABLES, (tokens, references, dates, strings), strict=True):
        if values:
            insert_rows(session, table, _INDEX_COLUMNS[table.name], values)
    restricted = sorted({(pk, code) for pk, _, param, system, code in tokens
                         if param == "_tag" and system == RESTRICTED_READER_TAG})
    if restricted:
        insert_rows(session, _RESTRICTED, ("resource_pk", "reader"), restricted)


_RESOURCE_COLUMNS = ("resource_type", "resource_id", "version_id", "last_updated", "deleted",
                     "patient_id", "body")
_VERSION_COLUMNS = ("resource_type", "resource_id", "version_id", "last_updated", "method",
                    "deleted", "body")
_INDEX_COLUMNS = {
    "record_token": ("resource_pk", "resource_type", "param", "system", "code"),
    "record_reference": ("resource_pk", "resource_type", "param", "target_type", "target_id"),
    "record_date": ("resource_pk", "resource_type", "param", "low", "high"),
    "record_string": ("resource_pk", "resource_type", "param", "normalized", "exact"),
}


def insert_rows(session: Session | Connection, table: Table, columns: tuple[str, ...],
                rows: list[tuple[Any, ...]]) -> None:
    """INSERT of many rows given as tuples, straight to the driver's executemany: the same
    values as `session.execute(insert(table), dicts)` (each column's bind processing, e.g.
    SQLite's datetime text), without building and reading one dict per row — the index rows
    of a letter are a few hundred."""
    connection = session if isinstance(session, Connection) else session.connection()
    dialect = connection.dialect
    processors = _processors(dialect, table, columns)
    if any(processors):
        rows = [tuple(value if process is None else process(value)
                      for process, value in zip(processors, row, strict=True)) for row in rows]
    if dialect.name == "postgresql":
        # COPY: one stream for every row. psycopg's executemany sends each row as a message of
        # its own (a bulk load spent most of its time there).
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    statement = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
                 f"VALUES ({', '.join(['?'] * len(columns))})")
    connection.exec_driver_sql(statement, rows)


_PROCESSORS: dict[tuple[str, str, tuple[str, ...]], list[Any]] = {}


def _processors(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> list[Any]:
    key = (dialect.name, table.name, columns)
    if key not in _PROCESSORS:
        _PROCESSORS[key] = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                            for name in columns]
    return _PROCESSORS[key]


_PKS = text(
    "SELECT pk, resource_type, resource_id FROM record_resource "
    "WHERE resource_type IN :kinds AND resource_id IN :ids"
).bindparams(bindparam("kinds", expanding=True), bindparam("ids", expanding=True))


# PostgreSQL: the keys as pairs, each found by the identity index. Given two IN lists, it
# probed the index for every type × every id (a letter: ~20 types × ~30 ids).
_PKS_OF_PAIRS = text(
    "SELECT record_resource.pk, record_resource.resource_type, record_resource.resource_id "
    "FROM unnest(CAST(:kinds AS varchar[]), CAST(:ids AS varchar[])) AS wanted(kind, id) "
    "JOIN record_resource ON record_resource.resource_type = wanted.kind "
    "AND record_resource.resource_id = wanted.id")


def stored_pks(session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The pks of the (type, id) `keys` that exist (SQLite: in one query per 500 ids)."""
    if session.get_bind().dialect.name == "postgresql":
        pairs = sorted(set(keys))
        return {(kind, resource_id): pk for pk, kind, resource_id in session.execute(
            _PKS_OF_PAIRS, {"kinds": [kind for kind, _ in pairs],
                            "ids": [resource_id for _, resource_id in pairs]})}
    wanted = set(keys)
    kinds = sorted({kind for kind, _ in wanted})
    ids = sorted({resource_id for _, resource_id in wanted})
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(ids), 500):
        for pk, kind, resource_id in session.execute(
                _PKS, {"kinds": kinds, "ids": ids[start:start + 500]}):
            if (kind, resource_id) in wanted:
                found[(kind, resource_id)] = pk
    return found
