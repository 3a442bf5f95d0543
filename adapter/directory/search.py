"""Searching the directory by identifier, name, profession, specialty, postcode or local role,
for the CLI (`liaison directory search`) and the FHIR endpoint (/annuaire/fhir), paged."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.engine import Connection, Engine

from adapter.config import get_settings
from adapter.directory import codes
from adapter.directory.lookup import professional_idnat
from adapter.directory.text import fold
from adapter.errors import BadRequest
from adapter.store.directory_tables import (
    DirectoryMailbox,
    DirectoryOrganization,
    DirectoryPractitioner,
    DirectoryRole,
    roles_of,
)
from adapter.store.engine import table_of

practitioners = table_of(DirectoryPractitioner)
roles = table_of(DirectoryRole)
organizations = table_of(DirectoryOrganization)
mailboxes = table_of(DirectoryMailbox)

NATIONAL = "national"  # the source of rows from the national Annuaire Santé extract
_DIGITS = re.compile(r"^[0-9]+$")


@dataclass
class Criteria:
    identifier: str | None = (
        None  # "system|value" or a bare idNat_PS / RPPS / ADELI / FINESS / SIRET
    )
    name: str | None = None
    name_mode: str = "contains"  # contains | starts
    profession: str | None = None  # TRE_G15 code or words of the label
    specialty: str | None = None  # "system|code", code (SM54) or words of the label
    postcode: str | None = None  # exact, "75*" prefix or a 2-digit département
    role: str | None = None  # local role, e.g. coordinator
    cpts_id: str | None = None
    organization: str | None = None  # idNat_Struct of the site
    include_inactive: bool = False
    national_only: bool = False  # the public national subset (Annuaire Santé extract) only

    def is_empty(self) -> bool:
        return not any(
            (
                self.identifier,
                self.name,
                self.profession,
                self.specialty,
                self.postcode,
                self.role,
                self.cpts_id,
                self.organization,
            )
        )


@dataclass
class Match:
    """One activity of one professional, with the mailboxes they can be reached at."""

    practitioner: Any
    role: Any
    mailboxes: list[str] = field(default_factory=list)


@dataclass
class Page:
    total: int
    items: Sequence[Any]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _starts(text: str) -> str:
    return _like(text)[1:]


def split_identifier(text: str) -> tuple[str | None, str]:
    system, bar, value = text.partition("|")
    return (codes.canonical_system(system) if system else None, value) if bar else (None, text)


def _professional_idnats(identifier: str) -> list[str]:
    systems = codes.identifiers()["professional"]
    system, value = split_identifier(identifier.strip())
    if system:
        idnat = professional_idnat(system, value)
        return [idnat] if idnat else []
    if len(value) == 12 and value[0] in "80":
        return [value]
    if len(value) == 11 and _DIGITS.match(value):
        return ["8" + value]
    if len(value) == 9:
        return ["0" + value]  # an ADELI number (or a FINESS, handled with structures)
    return [professional_idnat(systems["local"], value) or value]


def _structure_condition(identifier: str) -> ColumnElement[bool] | None:
    systems = codes.identifiers()["organization"]
    system, value = split_identifier(identifier.strip())
    if system == systems["idnat_struct"]:
        return roles.c.organization_idnat == value
    if system == systems["finess"] or (system is None and len(value) == 9):
        return roles.c.finess == value
    if system == systems["siret"] or (system is None and len(value) == 14):
        return roles.c.siret == value
    return None


def _name_condition(criteria: Criteria) -> ColumnElement[bool]:
    pattern = _starts if criteria.name_mode == "starts" else _like
    conditions = []
    for token in (fold(criteria.name) or "").split():
        conditions.append(
            or_(
                practitioners.c.family_norm.like(pattern(token), escape="\\"),
                practitioners.c.given_norm.like(pattern(token), escape="\\"),
            )
        )
    return and_(*conditions) if conditions else false()


def _coded_condition(
    value: str, code: Any, display: Any, system: Any | None
) -> ColumnElement[bool]:
    wanted_system, wanted = split_identifier(value.strip())
    if wanted_system and system is not None:
        return and_(system == wanted_system, code == wanted)
    if " " not in wanted and (wanted.isdigit() or any(ch.isdigit() for ch in wanted)):
        return code == wanted
    return func.lower(display).like(_like(wanted.lower()), escape="\\")


def _postcode_condition(postcode: str) -> ColumnElement[bool]:
    postcode = postcode.strip()
    if postcode.endswith("*"):
        return roles.c.postcode.like(_starts(postcode[:-1]), escape="\\")
    if len(postcode) in (2, 3):  # a département
        return roles.c.postcode.like(_starts(postcode), escape="\\")
    return roles.c.postcode == postcode


def role_conditions(criteria: Criteria) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if not criteria.include_inactive:
        conditions.append(roles.c.active.is_(True))
    if criteria.identifier:
        options: list[ColumnElement[bool]] = [
            roles_of(idnat) for idnat in _professional_idnats(criteria.identifier)
        ]
        structure = _structure_condition(criteria.identifier)
        if structure is not None:
            options.append(structure)
        conditions.append(or_(*options) if options else false())
    if criteria.name:
        conditions.append(_name_condition(criteria))
    if criteria.profession:
        conditions.append(
            _coded_condition(
                criteria.profession, roles.c.profession_code, roles.c.profession_display, None
            )
        )
    if criteria.specialty:
        conditions.append(
            _coded_condition(
                criteria.specialty,
                roles.c.specialty_code,
                roles.c.specialty_display,
                roles.c.specialty_system,
            )
        )
    if criteria.postcode:
        conditions.append(_postcode_condition(criteria.postcode))
    if criteria.role:
        conditions.append(roles.c.local_role == criteria.role)
    if criteria.cpts_id:
        conditions.append(roles.c.cpts_id == criteria.cpts_id)
    if criteria.organization:
        conditions.append(roles.c.organization_idnat == criteria.organization)
    if criteria.national_only:
        conditions.append(roles.c.source == NATIONAL)
    return conditions


def _joined() -> Any:
    return roles.join(practitioners, practitioners.c.idnat == roles.c.practitioner_idnat)


def _page_bounds(limit: int, offset: int) -> tuple[int, int]:
    if limit < 0 or offset < 0:
        raise BadRequest("_count and _offset must not be negative")
    return min(limit, get_settings().max_page_size), offset


def search_roles(engine: Engine, criteria: Criteria, *, limit: int = 50, offset: int = 0) -> Page:
    """Activities (PractitionerRole) matching every given criterion, with their professional."""
    limit, offset = _page_bounds(limit, offset)
    where = role_conditions(criteria)
    with engine.connect() as connection:
        total = connection.execute(
            select(func.count()).select_from(_joined()).where(*where)
        ).scalar_one()
        rows = connection.execute(
            select(roles, practitioners.c.id.label("p_id"))
            .select_from(_joined())
            .where(*where)
            .order_by(practitioners.c.family_norm, practitioners.c.given_norm, roles.c.id)
            .limit(limit)
            .offset(offset)
        ).all()
        people = _practitioners_by_idnat(connection, [row.practitioner_idnat for row in rows])
        boxes = mailboxes_of(connection, list(people))
    items = [
        Match(people[row.practitioner_idnat], row, _reachable(row, boxes))
        for row in rows
        if row.practitioner_idnat in people
    ]
    return Page(total, items)


def search_practitioners(
    engine: Engine, criteria: Criteria, *, limit: int = 50, offset: int = 0
) -> Page:
    """Professionals with at least one activity matching the criteria (or by identity alone)."""
    limit, offset = _page_bounds(limit, offset)
    where: list[ColumnElement[bool]] = []
    if not criteria.include_inactive:
        where.append(practitioners.c.active.is_(True))
    if criteria.identifier:
        where.append(practitioners.c.idnat.in_(_professional_idnats(criteria.identifier)))
    if criteria.name:
        where.append(_name_condition(criteria))
    if criteria.national_only:
        where.append(practitioners.c.source == NATIONAL)
    activity = Criteria(
        profession=criteria.profession,
        specialty=criteria.specialty,
        postcode=criteria.postcode,
        role=criteria.role,
        cpts_id=criteria.cpts_id,
        organization=criteria.organization,
    )
    if not activity.is_empty():
        where.append(
            practitioners.c.idnat.in_(
                select(roles.c.practitioner_idnat).where(*role_conditions(activity))
            )
        )
    with engine.connect() as connection:
        total = connection.execute(
            select(func.count()).select_from(practitioners).where(*where)
        ).scalar_one()
        rows = connection.execute(
            select(practitioners)
            .where(*where)
            .order_by(practitioners.c.family_norm, practitioners.c.given_norm, practitioners.c.id)
            .limit(limit)
            .offset(offset)
        ).all()
    return Page(total, rows)


def search_organizations(
    engine: Engine,
    *,
    identifier: str | None = None,
    name: str | None = None,
    postcode: str | None = None,
    include_inactive: bool = False,
    national_only: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    limit, offset = _page_bounds(limit, offset)
    systems = codes.identifiers()["organization"]
    where: list[ColumnElement[bool]] = []
    if not include_inactive:
        where.append(organizations.c.active.is_(True))
    if national_only:
        where.append(organizations.c.source == NATIONAL)
    if identifier:
        system, value = split_identifier(identifier.strip())
        column = {
            systems["idnat_struct"]: organizations.c.idnat_struct,
            systems["finess"]: organizations.c.finess,
            systems["siret"]: organizations.c.siret,
        }.get(system or "")
        where.append(
            column == value
            if column is not None
            else or_(
                organizations.c.idnat_struct == value,
                organizations.c.finess == value,
                organizations.c.siret == value,
            )
        )
    if name:
        where.append(func.lower(organizations.c.name).like(_like(name.lower()), escape="\\"))
    if postcode:
        where.append(organizations.c.postcode == postcode)
    with engine.connect() as connection:
        total = connection.execute(
            select(func.count()).select_from(organizations).where(*where)
        ).scalar_one()
        rows = connection.execute(
            select(organizations)
            .where(*where)
            .order_by(organizations.c.name, organizations.c.id)
            .limit(limit)
            .offset(offset)
        ).all()
    return Page(total, rows)


def _practitioners_by_idnat(connection: Connection, idnats: list[str]) -> dict[str, Any]:
    if not idnats:
        return {}
    rows = connection.execute(
        select(practitioners).where(practitioners.c.idnat.in_(sorted(set(idnats))))
    ).all()
    return {row.idnat: row for row in rows}


def mailboxes_of(connection: Connection, idnats: list[str]) -> dict[str, list[Any]]:
    """Active MSSanté mailboxes of these professionals, personal ones first."""
    found: dict[str, list[Any]] = {}
    if not idnats:
        return found
    rows = connection.execute(
        select(mailboxes)
        .where(
            mailboxes.c.practitioner_idnat.in_(sorted(set(idnats))), mailboxes.c.active.is_(True)
        )
        .order_by(mailboxes.c.mailbox_type != "PER", mailboxes.c.address)
    ).all()
    for row in rows:
        found.setdefault(row.practitioner_idnat, []).append(row)
    return found


def _reachable(role: Any, boxes: dict[str, list[Any]]) -> list[str]:
    addresses = [box.address for box in boxes.get(role.practitioner_idnat, [])]
    if role.mssante and role.mssante not in addresses:
        addresses.append(role.mssante)
    return addresses


def describe(match: Match) -> str:
    """One line per match: name, profession, place, phone, MSSanté."""
    person, role = match.practitioner, match.role
    name = " ".join(part for part in (person.prefix, person.family, person.given) if part)
    profession = ", ".join(
        part
        for part in (
            role.profession_display or person.profession_display,
            role.specialty_display,
            role.local_role and f"{role.local_role} ({role.cpts_id})",
        )
        if part
    )
    place = ", ".join(
        part
        for part in (
            role.organization_name,
            role.address_line,
            " ".join(p for p in (role.postcode, role.city) if p),
        )
        if part
    )
    cells = [
        name,
        profession or "-",
        place or "-",
        role.phone or "-",
        ", ".join(match.mailboxes) or "-",
    ]
    if not role.active:
        cells.append("(inactive)")
    return " | ".join(cells)
