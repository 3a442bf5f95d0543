"""Who may read what in the record (who may write: `adapter.auth.rules`).

- `system`: reads everything.
- `hospital` (token with its organisations' idNat_Struct): reads what its own letters produced
  (grant `org` on each resource a letter accepted for one of its organisations wrote) and, for
  the patients of those letters, the shared identity and care team (the Patient and its
  CareTeams: grant `org` on the patient) — never another hospital's letters and documents.
- `professional` (token with `idnat`): reads the patients whose active CareTeam lists them as
  an active participant (grant `idnat`), and the Communications addressed to them.
- `coordinator` (token with `cpts`): reads the patients whose active CareTeam belongs to its
  CPTS (grant `cpts`: managing organisation, or a member structure's `partOf`).
Everyone with a token reads the directory-like resources (Practitioner, PractitionerRole,
Organization, …). Anything else (e.g. Subscription, a Binary outside any patient) is for
`system` only. Grants are written by liaison from its own facts (grants.py), never from what
a client wrote.

Restricted resources: a resource tagged `urn:liaison:restricted-reader|<idNat_PS>` (a letter
marked R/V, or a patient who opposed sharing — see adapter/coordination/consent.py) is read by
those professionals only, besides the hospital that sent it and `system`; a restricted
resource tagged with no professional (`…|none`) is for them alone.

Searches are filtered in SQL (nothing leaks, not even through counts); a resource the caller
may not read answers exactly as an unknown one (404), so its existence leaks neither.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sqlalchemy import DateTime, and_, bindparam, false, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from adapter.auth.principal import Principal
from adapter.auth.rules import token_organizations
from adapter.errors import NotFound
from adapter.record.params import PUBLIC_TYPES
from adapter.record.storage import utcnow
from adapter.store.engine import table_of
from adapter.store.record_tables import (
    PatientGrant,
    ResourceGrant,
    RestrictedReader,
)

_PATIENT_GRANTS = table_of(PatientGrant)
_RESOURCE_GRANTS = table_of(ResourceGrant)
_RESTRICTED = table_of(RestrictedReader)


# What a hospital reads of a patient it sent a letter for, beyond what its letters produced.
SHARED_WITH_SENDERS = ("Patient", "CareTeam")


def reader_grant(principal: Principal | None) -> tuple[str, tuple[str, ...]] | None:
    """(grant kind, values) the caller reads by; None: no grant (system, or no identity)."""
    if principal is None:
        return None
    if principal.kind == "professional" and principal.idnat:
        return "idnat", (principal.idnat,)
    if principal.kind == "hospital" and principal.organizations:
        return "org", tuple(sorted(token_organizations(principal)))
    if principal.kind == "coordinator" and principal.cpts:
        return "cpts", (principal.cpts,)
    return None


def read_filter(principal: Principal | None, resources: FromClause) -> ColumnElement[bool] | None:
    """A WHERE clause on `resources` (a record_resource alias) keeping what the caller may
    read; None when the caller may read everything."""
    if principal is None or principal.kind == "system":
        return None
    if not principal.has_scope("r") and not principal.has_scope("s"):
        return false()
    return _filter_of(resources, reader_grant(principal))


@lru_cache(maxsize=4096)
def _filter_of(resources: FromClause, grant: tuple[str, tuple[str, ...]] | None
               ) -> ColumnElement[bool]:
    """The filter of a reader with `grant` (its time bound is a parameter read at each run):
    built once per reader, a clause being most of what a search or a pull costs in Python."""
    public = and_(resources.c.patient_id.is_(None), resources.c.resource_type.in_(PUBLIC_TYPES))
    if grant is None:
        return public
    kind, values = grant
    reached = or_(public, *_paths(kind, values, resources, by_row=kind in _MANY_GRANTS))
    if kind == "org":  # the sending hospital keeps reading what it restricted
        return reached
    return and_(reached, _unrestricted_for(resources, values[0] if kind == "idnat" else None))


def patient_paths(principal: Principal | None, resources: FromClause,
                  *patient_grants: ColumnElement[bool], by_patient: bool = True,
                  by_resource: bool = True) -> list[ColumnElement[bool]] | None:
    """The ways the caller reaches a patient's resource — by a grant on the patient (and
    `patient_grants`, more conditions on that grant), by a grant on the resource itself —
    each a condition an index answers (those asked for: `by_patient`, `by_resource`). What
    `read_filter` keeps of patients' resources is within their union (it also checks
    restrictions); None: the caller reads everything."""
    if principal is None or principal.kind == "system":
        return None
    grant = reader_grant(principal)
    if grant is None or (not principal.has_scope("r") and not principal.has_scope("s")):
        return []
    return _paths(*grant, resources, *patient_grants, by_patient=by_patient,
                  by_resource=by_resource)


def _now() -> datetime:
    """The instant a statement runs at (the filters are built once: never the time then)."""
    return utcnow()


# Readers whose grants grow with their whole history: a hospital holds a grant on every
# resource its letters wrote and every patient they named. Their filter looks up each row's
# grant by its key, an index probe a row: as a list read first, PostgreSQL hashed all of the
# hospital's grants at every statement (48 ms a search at 200,000 resources, growing with
# each letter). A professional's or a CPTS's grants are read once a statement instead,
# cheaper than a probe a row when a search walks many rows (a coordinator's recent teams).
_MANY_GRANTS = ("org",)


def _paths(kind: str, values: tuple[str, ...], resources: FromClause,
           *patient_grants: ColumnElement[bool], by_row: bool = False, by_patient: bool = True,
           by_resource: bool = True) -> list[ColumnElement[bool]]:
    by_patients, by_resources = _paths_by_grant(kind, values, resources, *patient_grants,
                                                by_row=by_row)
    wanted = ((by_patients, by_patient), (by_resources, by_resource))
    # a hospital reaches most rows by the grant its letter left on each: asked first
    ordered = wanted[::-1] if kind == "org" else wanted
    return [path for path, asked in ordered if path is not None and asked]


def _paths_by_grant(kind: str, values: tuple[str, ...], resources: FromClause,
                    *patient_grants: ColumnElement[bool], by_row: bool = False
                    ) -> tuple[ColumnElement[bool] | None, ColumnElement[bool] | None]:
    """The reader's path by a grant on the patient, and by a grant on the resource (None:
    a reader of that kind has none); `by_row`: each row's grant looked up by its key."""
    now = bindparam("now", callable_=_now, type_=DateTime, unique=True)
    patient_grant = (
        _PATIENT_GRANTS.c.kind == kind,
        _PATIENT_GRANTS.c.value.in_(values),
        or_(_PATIENT_GRANTS.c.valid_from.is_(None), _PATIENT_GRANTS.c.valid_from <= now),
        or_(_PATIENT_GRANTS.c.valid_until.is_(None), _PATIENT_GRANTS.c.valid_until >= now),
        *patient_grants,
    )
    resource_grant = (_RESOURCE_GRANTS.c.kind == kind, _RESOURCE_GRANTS.c.value.in_(values))
    patients: ColumnElement[bool]
    granted_resources: ColumnElement[bool]
    if by_row:
        # OFFSET 0: PostgreSQL would otherwise plan each EXISTS as a hashed subplan too, and
        # chose it for a window of a few hundred rows: every grant of the hospital hashed
        # (~9 ms at 50,000 patients) to check 400 rows that a key look-up each checks in 1 ms
        patients = select(_PATIENT_GRANTS.c.patient_id).where(
            _PATIENT_GRANTS.c.patient_id == resources.c.patient_id, *patient_grant
        ).offset(0).exists()
        granted_resources = select(_RESOURCE_GRANTS.c.resource_pk).where(
            _RESOURCE_GRANTS.c.resource_pk == resources.c.pk, *resource_grant
        ).offset(0).exists()
    else:
        patients = resources.c.patient_id.in_(
            select(_PATIENT_GRANTS.c.patient_id).where(*patient_grant))
        granted_resources = resources.c.pk.in_(
            select(_RESOURCE_GRANTS.c.resource_pk).where(*resource_grant))
    if kind == "org":
        return and_(patients, resources.c.resource_type.in_(SHARED_WITH_SENDERS)), \
            granted_resources
    if kind == "idnat":
        return patients, granted_resources
    return patients, None


def _restricted_readers(resources: FromClause, *readers: str) -> ColumnElement[bool]:
    """Restricted resources (to one of `readers`, when given)."""
    restricted = select(_RESTRICTED.c.resource_pk)
    if readers:
        restricted = restricted.where(_RESTRICTED.c.reader.in_(readers))
    return resources.c.pk.in_(restricted)


def _unrestricted_for(resources: FromClause, idnat: str | None) -> ColumnElement[bool]:
    """Not restricted, or restricted to readers among whom `idnat` is named."""
    if idnat is None:
        return not_(_restricted_readers(resources))
    return or_(not_(_restricted_readers(resources)), _restricted_readers(resources, idnat))


def unknown(resource_type: str, resource_id: str) -> NotFound:
    """The answer for a resource that does not exist *or* that the caller may not read: the
    same status and text, so a hidden resource cannot be told from an absent one."""
    return NotFound(f"{resource_type}/{resource_id} is not known")
