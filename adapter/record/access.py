"""Who may read and write what in the record.

- `system`: reads and writes everything.
- `hospital`: writes (scope `system/*.cud`); reads the patients it sent letters for
  (grant `org` = its idNat_Struct, see grants.py) and the directory-like resources.
- `professional` (token with `idnat`): reads the patients whose active CareTeam lists them as
  an active participant (grant `idnat`), the Communications addressed to them, and the
  directory-like resources (Practitioner, PractitionerRole, Organization, …). No writes.
- `coordinator` (token with `cpts`): reads the patients whose active CareTeam belongs to its
  CPTS (grant `cpts`: managing organisation, or a member structure's `partOf`), and the
  directory-like resources. No writes.
Anything else (e.g. Subscription, a Binary outside any patient) is for `system` only.

Restricted resources: a resource tagged `urn:liaison:restricted-reader|<idNat_PS>` (a letter
marked R/V, or a patient who opposed sharing — see adapter/coordination/consent.py) is read by
those professionals only, besides the hospital that sent it and `system`; a restricted
resource tagged with no professional (`…|none`) is for them alone.

Searches are filtered in SQL (nothing leaks, not even through counts); a direct read of a
resource the caller may not see is 403.
"""

from __future__ import annotations

from sqlalchemy import and_, false, literal, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from adapter.auth.principal import Principal
from adapter.errors import Forbidden
from adapter.record.models import PatientGrant, RecordToken, ResourceGrant
from adapter.record.params import PUBLIC_TYPES
from adapter.record.storage import utcnow

_PATIENT_GRANTS = PatientGrant.__table__
_RESOURCE_GRANTS = ResourceGrant.__table__
_TOKENS = RecordToken.__table__
RESTRICTED_READER_TAG = "urn:liaison:restricted-reader"


def may_write(principal: Principal) -> bool:
    return principal.kind in ("system", "hospital") and principal.has_scope("c")


def require_write(principal: Principal) -> None:
    if not may_write(principal):
        raise Forbidden(f"a {principal.kind} token may not write to the record")


def _grant(principal: Principal) -> tuple[str, str] | None:
    if principal.kind == "professional" and principal.idnat:
        return "idnat", principal.idnat
    if principal.kind == "hospital" and principal.organization:
        return "org", principal.organization
    if principal.kind == "coordinator" and principal.cpts:
        return "cpts", principal.cpts
    return None


def read_filter(principal: Principal | None, resources: FromClause) -> ColumnElement[bool] | None:
    """A WHERE clause on `resources` (a record_resource alias) keeping what the caller may
    read; None when the caller may read everything."""
    if principal is None or principal.kind == "system":
        return None
    if not principal.has_scope("r") and not principal.has_scope("s"):
        return false()
    public = and_(resources.c.patient_id.is_(None), resources.c.resource_type.in_(PUBLIC_TYPES))
    grant = _grant(principal)
    if grant is None:
        return public
    kind, value = grant
    now = utcnow()
    patients = select(_PATIENT_GRANTS.c.patient_id).where(
        _PATIENT_GRANTS.c.kind == kind,
        _PATIENT_GRANTS.c.value == value,
        or_(_PATIENT_GRANTS.c.valid_from.is_(None), _PATIENT_GRANTS.c.valid_from <= now),
        or_(_PATIENT_GRANTS.c.valid_until.is_(None), _PATIENT_GRANTS.c.valid_until >= now),
    )
    clauses = [public, resources.c.patient_id.in_(patients)]
    if kind == "idnat":
        clauses.append(resources.c.pk.in_(
            select(_RESOURCE_GRANTS.c.resource_pk).where(
                _RESOURCE_GRANTS.c.kind == kind, _RESOURCE_GRANTS.c.value == value
            )
        ))
    if kind == "org":  # the sending hospital keeps reading what it restricted
        return or_(*clauses)
    return and_(or_(*clauses), _unrestricted_for(resources, value if kind == "idnat" else None))


def _restricted_readers(resources: FromClause, *codes: str) -> ColumnElement[bool]:
    tags = select(_TOKENS.c.resource_pk).where(
        _TOKENS.c.param == "_tag", _TOKENS.c.system == RESTRICTED_READER_TAG
    )
    if codes:
        tags = tags.where(_TOKENS.c.code.in_(codes))
    return resources.c.pk.in_(tags)


def _unrestricted_for(resources: FromClause, idnat: str | None) -> ColumnElement[bool]:
    """Not restricted, or restricted to readers among whom `idnat` is named."""
    if idnat is None:
        return not_(_restricted_readers(resources))
    return or_(not_(_restricted_readers(resources)), _restricted_readers(resources, idnat))


def denied(resource_type: str, resource_id: str) -> Forbidden:
    return Forbidden(f"access to {resource_type}/{resource_id} is not granted to this token")


TRUE = literal(True)
