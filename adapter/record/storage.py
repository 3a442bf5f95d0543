"""Low-level writes of the record inside one database session: a new version of a resource,
its search index rows and its patient compartment. Access rules and HTTP live elsewhere."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert
from sqlmodel import Session, select

from adapter.record.indexing import IndexRows, index_rows, parse_reference, values_at
from adapter.record.models import (
    RecordDate,
    RecordReference,
    RecordResource,
    RecordString,
    RecordToken,
    RecordVersion,
)
from adapter.record.params import COMPARTMENT_VIA, compartment_paths

RESOURCES = RecordResource.__table__
VERSIONS = RecordVersion.__table__
INDEX_TABLES = (RecordToken.__table__, RecordReference.__table__, RecordDate.__table__,
                RecordString.__table__)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def instant(moment: datetime) -> str:
    """FHIR instant of a naive-UTC datetime (microseconds kept: `_lastUpdated` needs them)."""
    return moment.isoformat(timespec="microseconds") + "Z"


def new_id() -> str:
    return str(uuid.uuid4())


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
class Written:
    row: RecordResource
    resource: dict[str, Any]
    created: bool  # a new resource (201) rather than a new version or no change (200)
    changed: bool  # False: identical to the current version, nothing was written


def current(session: Session, resource_type: str, resource_id: str) -> RecordResource | None:
    return session.exec(
        select(RecordResource).where(
            RecordResource.resource_type == resource_type,
            RecordResource.resource_id == resource_id,
        )
    ).first()


def _target(value: Any) -> tuple[str, str] | None:
    link = value.get("reference") if isinstance(value, dict) else None
    return parse_reference(link) if link else None


def patient_of(session: Session, resource: dict[str, Any]) -> str | None:
    """The id of the Patient whose compartment the resource belongs to."""
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
                row = current(session, *target)
                if row is not None and row.patient_id:
                    return row.patient_id
    return None


def write_version(
    session: Session,
    resource: dict[str, Any],
    *,
    method: str,
    existing: RecordResource | None,
) -> Written:
    """Store `resource` (its `id` set) as the next version of `existing` (or as version 1)."""
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
    patient_id = patient_of(session, resource)
    if existing is None:
        row = RecordResource(
            resource_type=resource["resourceType"], resource_id=resource["id"], version_id=1,
            last_updated=now, patient_id=patient_id, body=body,
        )
        session.add(row)
    else:
        row = existing
        row.version_id, row.last_updated, row.deleted = version, now, False
        row.patient_id, row.body = patient_id, body
        session.add(row)
    session.flush()
    session.execute(insert(VERSIONS).values(
        resource_type=row.resource_type, resource_id=row.resource_id, version_id=version,
        last_updated=now, method=method, deleted=False, body=body,
    ))
    reindex(session, row.pk, resource)
    created = existing is None or existing.deleted
    return Written(row, resource, created=created, changed=True)


def write_deletion(session: Session, row: RecordResource) -> RecordResource:
    now = utcnow()
    row.version_id += 1
    row.last_updated, row.deleted = now, True
    session.add(row)
    session.flush()
    session.execute(insert(VERSIONS).values(
        resource_type=row.resource_type, resource_id=row.resource_id, version_id=row.version_id,
        last_updated=now, method="DELETE", deleted=True, body=None,
    ))
    clear_index(session, [row.pk])
    return row


def clear_index(session: Session, pks: list[int]) -> None:
    for table in INDEX_TABLES:
        session.execute(delete(table).where(table.c.resource_pk.in_(pks)))


def reindex(session: Session, pk: int, resource: dict[str, Any]) -> None:
    clear_index(session, [pk])
    insert_index(session, [(pk, resource["resourceType"], index_rows(resource))])


def insert_index(session: Session, indexed: list[tuple[int, str, IndexRows]]) -> None:
    tokens, references, dates, strings = [], [], [], []
    for pk, resource_type, rows in indexed:
        base = {"resource_pk": pk, "resource_type": resource_type}
        tokens += [{**base, "param": p, "system": s, "code": c} for p, s, c in rows.tokens]
        references += [{**base, "param": p, "target_type": t, "target_id": i}
                       for p, t, i in rows.references]
        dates += [{**base, "param": p, "low": lo, "high": hi} for p, lo, hi in rows.dates]
        strings += [{**base, "param": p, "normalized": n, "exact": e} for p, n, e in rows.strings]
    for table, values in zip(INDEX_TABLES, (tokens, references, dates, strings), strict=True):
        if values:
            session.execute(insert(table), values)
