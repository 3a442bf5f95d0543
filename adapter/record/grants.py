"""Precomputed read grants: which professionals, hospitals and CPTS may read which patient.

Computed on write (never on search) so a filtered search stays one indexed join, and only
from liaison's own facts:
- `idnat` — the idNat_PS of every ACTIVE participant of an active CareTeam of the patient
  (participant.member a Practitioner, a PractitionerRole whose `practitioner` is one, or a
  logical reference by identifier); the participant's period bounds the grant. CareTeams are
  written by liaison only (a client cannot write the record), from the letter and the
  coordination rules;
- `cpts` — every identifier value of the organisations of an active CareTeam (its
  managingOrganization, Organization participants, participants' `onBehalfOf`, the
  `organization` of PractitionerRole participants) and of their `partOf` parent: a CPTS is
  either the managing organisation or the parent of a member structure;
- `org` — the organisation a letter was accepted for (checked against the sender's token at
  ingestion) on each resource that letter's bundle wrote (resource grant), and on its patient
  (patient grant: the hospital reads the patient's shared identity and care team, see
  access.py). Written when the bundle is stored (`grant_sources`), never recomputed from
  content: a custodian or author named in a resource grants nothing;
- per resource: a Communication is also readable by the idNat_PS of each of its recipients.

Identifier systems and derivations (idNat_PS = "8" + RPPS, idNat_Struct = "1" + FINESS) are read
from `mappings/identifiers.yaml` (`adapter.national_ids`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, false
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from adapter.national_ids import national_ids
from adapter.record.indexing import date_range, parse_reference
from adapter.record.storage import insert_rows, loads
from adapter.store.engine import table_of
from adapter.store.locking import lock_keys
from adapter.store.record_tables import PatientGrant, RecordReference, RecordResource, ResourceGrant

_RESOURCES = table_of(RecordResource)
_PATIENT_GRANTS = table_of(PatientGrant)
_RESOURCE_GRANTS = table_of(ResourceGrant)

_ACTIVE_TEAM = {"active", None}
_PATIENT_GRANT_COLUMNS = ("patient_id", "kind", "value", "valid_from", "valid_until",
                          "granted_seq")
# Grant kinds recomputed from the record's CareTeams; `org` grants are facts written once.
_DERIVED = ("idnat", "cpts")


@dataclass(frozen=True)
class Grant:
    kind: str
    value: str
    valid_from: datetime | None = None
    valid_until: datetime | None = None


def _parsed(row: Any) -> dict[str, Any]:
    """The resource of a current row: as this transaction wrote it, or parsed from its body."""
    resource = getattr(row, "resource", None)
    return resource if resource is not None else loads(row.body)


class _Resolver:
    """Follows references inside one session, remembering what it already read."""

    def __init__(self, session: Session,
                 known: Mapping[tuple[str, str], Any] | None = None) -> None:
        self.session = session
        self._seen: dict[tuple[str, str], dict[str, Any] | None] = {}
        # current rows the caller already holds (`storage.Stored`: the transaction's own)
        self.known = known or {}

    def get(self, reference: Any) -> dict[str, Any] | None:
        link = reference.get("reference") if isinstance(reference, dict) else None
        target = parse_reference(link) if link else None
        if target is None:
            return None
        if target not in self._seen and self.known.get(target) is not None:
            row = self.known[target]
            self._seen[target] = None if row.deleted else _parsed(row)
        if target not in self._seen:
            body = self.session.execute(
                select(_RESOURCES.c.body).where(
                    _RESOURCES.c.resource_type == target[0],
                    _RESOURCES.c.resource_id == target[1],
                    _RESOURCES.c.deleted == false(),
                )
            ).scalar_one_or_none()
            self._seen[target] = loads(body) if body is not None else None
        return self._seen[target]

    def idnats(self, member: Any) -> set[str]:
        if not isinstance(member, dict):
            return set()
        logical = member.get("identifier")
        found = national_ids([logical], "professional") if logical else set()
        resource = self.get(member)
        if resource is None:
            return found
        if resource["resourceType"] == "PractitionerRole":
            found |= self.idnats(resource.get("practitioner"))
        elif resource["resourceType"] == "Practitioner":
            found |= national_ids(resource.get("identifier"), "professional")
        return found

    def organization(self, reference: Any) -> dict[str, Any] | None:
        resource = self.get(reference)
        if resource and resource["resourceType"] == "PractitionerRole":
            resource = self.get(resource.get("organization"))
        return resource if resource and resource["resourceType"] == "Organization" else None

    def cpts_values(self, reference: Any) -> set[str]:
        values: set[str] = set()
        organization = self.organization(reference)
        for org in (organization, self.get(organization.get("partOf")) if organization else None):
            if org and org["resourceType"] == "Organization":
                values |= {i["value"] for i in org.get("identifier") or [] if i.get("value")}
        return values


def _period(participant: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    period = participant.get("period") or {}
    start = date_range(period["start"]) if period.get("start") else None
    end = date_range(period["end"]) if period.get("end") else None
    return (start[0] if start else None), (end[1] if end else None)


def _care_team_grants(care_team: dict[str, Any], resolver: _Resolver) -> set[Grant]:
    if care_team.get("status") not in _ACTIVE_TEAM:
        return set()
    grants: set[Grant] = set()
    for reference in care_team.get("managingOrganization") or []:
        grants |= {Grant("cpts", v) for v in resolver.cpts_values(reference)}
    for participant in care_team.get("participant") or []:
        start, end = _period(participant)
        member = participant.get("member")
        grants |= {Grant("idnat", v, start, end) for v in resolver.idnats(member)}
        for reference in (member, participant.get("onBehalfOf")):
            grants |= {Grant("cpts", v, start, end) for v in resolver.cpts_values(reference)}
    return grants


def communication_grants(communication: dict[str, Any], resolver: _Resolver) -> set[str]:
    found: set[str] = set()
    for recipient in communication.get("recipient") or []:
        found |= resolver.idnats(recipient)
    return found


def _kind_in(grants: Table, *kinds: str) -> ColumnElement[bool]:
    """The grants of `kinds`, in a statement that picks them by patient or resource. Compared
    as `kind || ''`: SQLite, with no statistics, prefers an index whose first column an `=`
    compares — the access filter's (kind, value, …) — and would read every grant of the kind,
    so that a letter's transaction grew with the record."""
    return grants.c.kind.concat("").in_(kinds)


def _chunks(values: set[Any], size: int = 500) -> list[list[Any]]:
    ordered = sorted(values)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def lock(session: Session, patient_ids: set[str], communication_pks: set[int]) -> None:
    """PostgreSQL: two transactions touching the same patient recompute its grants one after
    the other, each from what the other committed (read committed), so no stale grant
    survives. A record transaction takes these before the feed's position (`feed.reserve`),
    whose row every writer waits for at its end: one waiting here while holding it deadlocked
    with a letter holding a slot it wanted."""
    lock_keys(session, [f"grants:patient:{p}" for p in patient_ids]
              + [f"grants:resource:{pk}" for pk in communication_pks])


def refresh(session: Session, patient_ids: set[str], communication_pks: set[int],
            known: Mapping[tuple[str, str], Any] | None = None,
            granted_seq: int | None = None, *, locked: bool = False) -> None:
    """Recompute the grants of these patients and Communications from what is stored now
    (`known`: current rows already in hand, by (type, id), spared a query each). A patient
    grant that did not exist before is stamped with the change-feed position `granted_seq`.
    `locked`: the caller has taken their `lock` already."""
    if not locked:
        lock(session, patient_ids, communication_pks)
    resolver = _Resolver(session, known)
    for chunk in _chunks(patient_ids):
        found: dict[str, set[Grant]] = {patient_id: set() for patient_id in chunk}
        for patient_id, resource in _grant_sources(session, chunk, resolver.known):
            found[patient_id] |= _care_team_grants(resource, resolver)
        derived = (_PATIENT_GRANTS.c.patient_id.in_(chunk), _kind_in(_PATIENT_GRANTS, *_DERIVED))
        since = {(patient, kind, value): seq for patient, kind, value, seq in session.execute(
            select(_PATIENT_GRANTS.c.patient_id, _PATIENT_GRANTS.c.kind, _PATIENT_GRANTS.c.value,
                   _PATIENT_GRANTS.c.granted_seq).where(*derived))}
        session.execute(delete(_PATIENT_GRANTS).where(*derived))
        rows = [(patient_id, g.kind, g.value, g.valid_from, g.valid_until,
                 since.get((patient_id, g.kind, g.value), granted_seq))
                for patient_id, granted in found.items() for g in granted]
        if rows:
            insert_rows(session, _PATIENT_GRANTS, _PATIENT_GRANT_COLUMNS, rows)
    for chunk in _chunks(communication_pks):
        session.execute(delete(_RESOURCE_GRANTS).where(
            _RESOURCE_GRANTS.c.resource_pk.in_(chunk), _kind_in(_RESOURCE_GRANTS, "idnat")))
        messages = _current(session, resolver.known, _RESOURCES.c.pk.in_(chunk),
                            _RESOURCES.c.resource_type == "Communication")
        pairs = [(pk, "idnat", value) for pk, _, resource in messages
                 for value in communication_grants(resource, resolver)]
        if pairs:
            insert_rows(session, _RESOURCE_GRANTS, ("resource_pk", "kind", "value"), pairs)


def _grant_sources(session: Session, patient_ids: list[str],
                   known: Mapping[tuple[str, str], Any]) -> list[tuple[str, dict[str, Any]]]:
    """(patient id, resource) of the current CareTeams of `patient_ids`, in storage order."""
    rows = _current(session, known, _RESOURCES.c.patient_id.in_(patient_ids),
                    _RESOURCES.c.resource_type == "CareTeam")
    return [(patient_id, resource) for _, patient_id, resource in rows if patient_id]


def _current(session: Session, known: Mapping[tuple[str, str], Any], *where: Any
             ) -> list[tuple[int, str | None, dict[str, Any]]]:
    """(pk, patient id, resource) of the current resources matching `where`, by pk. A row
    this transaction holds parsed (`known`) is not read again: a letter's DocumentReference
    carries ~100 KB of base64 that grants never look at."""
    listed = session.execute(select(
        _RESOURCES.c.pk, _RESOURCES.c.resource_type, _RESOURCES.c.resource_id,
        _RESOURCES.c.patient_id).where(*where, _RESOURCES.c.deleted == false())
        .order_by(_RESOURCES.c.pk)).all()
    resources: dict[int, dict[str, Any]] = {}
    for pk, resource_type, resource_id, _ in listed:
        row = known.get((resource_type, resource_id))
        if row is not None and getattr(row, "resource", None) is not None:
            resources[pk] = row.resource
    missing = [pk for pk, *_ in listed if pk not in resources]
    for chunk in _chunks(set(missing)):
        for pk, body in session.execute(select(_RESOURCES.c.pk, _RESOURCES.c.body)
                                        .where(_RESOURCES.c.pk.in_(chunk))):
            resources[pk] = loads(body)
    return [(pk, patient_id, resources[pk]) for pk, _, _, patient_id in listed
            if pk in resources]


# Types whose change can alter who may read something that references them.
PARTY_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization"})


def dependents(session: Session, resource_type: str, resource_id: str) -> tuple[set[str], set[int]]:
    """(patients, Communication pks) whose grants depend on this Practitioner / Role / Org."""
    patients: set[str] = set()
    communications: set[int] = set()
    frontier = [(resource_type, resource_id)]
    seen = set(frontier)
    for _hop in range(3):  # Practitioner ← PractitionerRole ← CareTeam; Org ← Org ← Role ← …
        next_frontier = []
        for target_type, target_id in frontier:
            referencing = session.exec(
                select(RecordResource.resource_type, RecordResource.resource_id,
                       RecordResource.pk, RecordResource.patient_id)
                .join(RecordReference, col(RecordReference.resource_pk) == RecordResource.pk)
                .where(RecordReference.target_type == target_type,
                       RecordReference.target_id == target_id)
            ).all()
            for ref_type, ref_id, pk, patient_id in referencing:
                if ref_type == "CareTeam" and patient_id:
                    patients.add(patient_id)
                elif ref_type == "Communication" and pk is not None:
                    communications.add(pk)
                elif ref_type in PARTY_TYPES and (ref_type, ref_id) not in seen:
                    seen.add((ref_type, ref_id))
                    next_frontier.append((ref_type, ref_id))
        frontier = next_frontier
    return patients, communications


def grant_sources(session: Session, sourced: list[tuple[str, Any]],
                  granted_seq: int | None = None) -> None:
    """Grant each organisation the rows (`storage.Stored`) its letter's bundle wrote or
    matched, and the patients of those rows (stamped `granted_seq`, the change-feed position
    of this transaction); rows already granted are left as they are."""
    wanted = [(organization, row) for organization, row in sourced
              if row.pk is not None and row.patient_id is not None]
    if not wanted:
        return
    pks = {row.pk for _, row in wanted}
    patients = {row.patient_id for _, row in wanted}
    have_resources = {(pk, value) for pk, value in session.execute(
        select(_RESOURCE_GRANTS.c.resource_pk, _RESOURCE_GRANTS.c.value).where(
            _kind_in(_RESOURCE_GRANTS, "org"), _RESOURCE_GRANTS.c.resource_pk.in_(pks)))}
    have_patients = {(patient, value) for patient, value in session.execute(
        select(_PATIENT_GRANTS.c.patient_id, _PATIENT_GRANTS.c.value).where(
            _kind_in(_PATIENT_GRANTS, "org"), _PATIENT_GRANTS.c.patient_id.in_(patients)))}
    new_resources = {(row.pk, organization) for organization, row in wanted} - have_resources
    new_patients = {(row.patient_id, organization) for organization, row in wanted} \
        - have_patients
    # one statement each: an INSERT a row sent a letter's few dozen rows as as many messages
    if new_resources:
        insert_rows(session, _RESOURCE_GRANTS, ("resource_pk", "kind", "value"),
                    [(pk, "org", value) for pk, value in sorted(new_resources)])
    if new_patients:
        insert_rows(session, _PATIENT_GRANTS, _PATIENT_GRANT_COLUMNS,
                    [(patient, "org", value, None, None, granted_seq)
                     for patient, value in sorted(new_patients)])
