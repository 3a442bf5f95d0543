"""`SqlDirectory`: the directory as the mapping sees it (adapter.mapping.directory_port).

A professional's card gathers what every source says about them: identity and activities from
the national extract (or a FHIR Bundle), MSSanté mailboxes from the correspondence extract, and
local CPTS roles (coordinator…) with their territory from local directories.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from adapter.directory import codes
from adapter.directory.text import postcode_in_territory
from adapter.mapping.directory_port import (
    Address,
    Coding,
    ContactPoint,
    DirectoryLookup,
    OrganizationCard,
    ProfessionalCard,
)
from adapter.store.directory_tables import (
    DirectoryMailbox,
    DirectoryOrganization,
    DirectoryPractitioner,
    DirectoryRole,
    roles_of,
)
from adapter.store.engine import reading, table_of

_SOURCE_RANK = {"national": 0, "fhir": 1, "mssante": 2, "local": 3}
_practitioners = table_of(DirectoryPractitioner)
_roles = table_of(DirectoryRole)
_organizations = table_of(DirectoryOrganization)
_mailboxes = table_of(DirectoryMailbox)


def professional_idnat(system: str, value: str) -> str | None:
    """The idNat_PS a (system, value) identifier designates, or None if it names no professional."""
    systems = codes.identifiers()["professional"]
    system, value = codes.canonical_system(system), value.strip()
    if system == systems["idnat_ps"] or system == systems["local"]:
        return value
    if system == systems["rpps"]:
        return "8" + value
    if system == systems["adeli"]:
        return "0" + value
    return None


def _professional_identifiers(row: Any) -> tuple[tuple[str, str], ...]:
    systems = codes.identifiers()["professional"]
    if row.id_type == "LOCAL":
        return ((systems["local"], row.idnat),)
    identifiers = [(systems["idnat_ps"], row.idnat)]
    if row.id_type == "RPPS":
        identifiers.append((systems["rpps"], row.rpps or row.idnat[1:]))
    elif row.id_type == "ADELI":
        identifiers.append((systems["adeli"], row.idnat[1:]))
    return tuple(identifiers)


def _mailbox_contacts(rows: list[Any]) -> list[ContactPoint]:
    # personal mailboxes first, then those of services
    ordered = sorted(rows, key=lambda row: (row.mailbox_type != "PER", row.address))
    return [ContactPoint("email", row.address, "work", mssante=True) for row in ordered]


def _unique(contacts: list[ContactPoint]) -> tuple[ContactPoint, ...]:
    seen: set[tuple[str, str]] = set()
    kept = []
    for contact in contacts:
        key = (contact.system, contact.value.lower())
        if key not in seen:
            seen.add(key)
            kept.append(contact)
    return tuple(kept)


class SqlDirectory(DirectoryLookup):
    """The imported directories, queried through SQLAlchemy Core (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = reading(engine)  # it only reads

    # -- DirectoryLookup -------------------------------------------------------------------
    def professional(self, system: str, value: str) -> ProfessionalCard | None:
        idnat = professional_idnat(system, value)
        if not idnat:
            return None
        with self.engine.connect() as connection:
            return self._professional_card(connection, idnat)

    def organization(self, system: str, value: str) -> OrganizationCard | None:
        systems = codes.identifiers()["organization"]
        system, value = codes.canonical_system(system), value.strip()
        column = {
            systems["idnat_struct"]: _organizations.c.idnat_struct,
            systems["finess"]: _organizations.c.finess,
            systems["siret"]: _organizations.c.siret,
        }.get(system)
        if column is None:
            return None
        with self.engine.connect() as connection:
            row = connection.execute(
                select(_organizations)
                .where(column == value)
                .order_by(_organizations.c.active.desc())
            ).first()
            idnat = (
                row.idnat_struct
                if row
                else (value if column is _organizations.c.idnat_struct else None)
            )
            if idnat is None:
                return None
            return self._organization_card(connection, idnat, row)

    # -- beyond the port: used by coordination ----------------------------------------------
    def coordinators(
        self, postcode: str, *, cpts_id: str | None = None, role: str = "coordinator"
    ) -> list[ProfessionalCard]:
        """Active local-directory people holding `role` whose territory covers `postcode`."""
        query = select(_roles.c.practitioner_idnat, _roles.c.territory_postcodes).where(
            _roles.c.local_role == role, _roles.c.active.is_(True)
        )
        if cpts_id:
            query = query.where(_roles.c.cpts_id == cpts_id)
        with self.engine.connect() as connection:
            idnats = [
                idnat
                for idnat, territory in connection.execute(query)
                if postcode_in_territory(postcode, territory)
            ]
            cards = [self._professional_card(connection, idnat) for idnat in dict.fromkeys(idnats)]
        return [card for card in cards if card is not None]

    # -- building cards --------------------------------------------------------------------
    def _professional_card(self, connection: Connection, idnat: str) -> ProfessionalCard | None:
        person = connection.execute(
            select(_practitioners).where(_practitioners.c.idnat == idnat)
        ).first()
        roles = sorted(
            connection.execute(
                select(_roles).where(roles_of(idnat), _roles.c.active.is_(True))
            ).all(),
            key=lambda role: (_SOURCE_RANK.get(role.source, 9), role.id),
        )
        mailboxes = connection.execute(
            select(_mailboxes).where(
                _mailboxes.c.practitioner_idnat == idnat, _mailboxes.c.active.is_(True)
            )
        ).all()
        if person is None and not roles and not mailboxes:
            return None
        systems = codes.code_systems()
        main = next((role for role in roles if role.source != "local"), roles[0] if roles else None)
        local_roles = [role for role in roles if role.source == "local"]
        source = person or (mailboxes[0] if mailboxes else None)
        identifiers = (
            _professional_identifiers(person)
            if person
            else ((codes.identifiers()["professional"]["idnat_ps"], idnat),)
        )
        profession_code = (person.profession_code if person else None) or (
            main.profession_code if main else None
        )
        profession_display = (person.profession_display if person else None) or (
            main.profession_display if main else None
        )
        specialty = None
        if person is not None and person.specialty_code:
            specialty = Coding(
                person.specialty_system or systems["default_specialty"],
                person.specialty_code,
                person.specialty_display,
            )
        elif main is not None and main.specialty_code:
            specialty = Coding(
                main.specialty_system or systems["default_specialty"],
                main.specialty_code,
                main.specialty_display,
            )
        telecom: list[ContactPoint] = []
        for role in ([main] if main else []) + local_roles:
            if role.phone:
                telecom.append(ContactPoint("phone", role.phone, "work"))
        telecom.extend(_mailbox_contacts(list(mailboxes)))
        telecom.extend(
            ContactPoint("email", role.mssante, "work", mssante=True)
            for role in local_roles
            if role.mssante
        )
        address = None
        if main is not None and (main.address_line or main.postcode or main.city):
            address = Address(
                lines=(main.address_line,) if main.address_line else (),
                postal_code=main.postcode,
                city=main.city,
                country="FR",
            )
        organization = None
        if main is not None and main.organization_idnat:
            organization = self._organization_card(connection, main.organization_idnat, None)
        if organization is None and main is not None and main.organization_name:
            organization = OrganizationCard(identifiers=(), name=main.organization_name)
        extra: dict[str, str] = {}
        if local_roles:
            first = local_roles[0]
            extra = {
                key: value
                for key, value in (
                    ("cpts_id", first.cpts_id),
                    ("territory_postcodes", first.territory_postcodes),
                    ("structure", first.organization_name),
                )
                if value
            }
        return ProfessionalCard(
            identifiers=identifiers,
            family=getattr(source, "family", None),
            given=tuple((getattr(source, "given", None) or "").split()) or (),
            prefix=getattr(source, "prefix", None),
            profession=Coding(systems["profession"], profession_code, profession_display)
            if profession_code
            else None,
            specialty=specialty,
            telecom=_unique(telecom),
            address=address,
            organization=organization,
            roles=tuple(
                Coding(systems["local_role"], role.local_role, role.local_role)
                for role in local_roles
                if role.local_role
            ),
            active=bool(person.active) if person is not None else True,
            extra=extra,
        )

    def _organization_card(
        self, connection: Connection, idnat: str, row: Any | None
    ) -> OrganizationCard | None:
        if row is None:
            row = connection.execute(
                select(_organizations).where(_organizations.c.idnat_struct == idnat)
            ).first()
        mailboxes = connection.execute(
            select(_mailboxes).where(
                _mailboxes.c.organization_idnat == idnat,
                _mailboxes.c.practitioner_idnat.is_(None),
                _mailboxes.c.active.is_(True),
            )
        ).all()
        if row is None and not mailboxes:
            return None
        systems = codes.identifiers()["organization"]
        identifiers = [(systems["idnat_struct"], idnat)]
        if row is not None and row.finess:
            identifiers.append((systems["finess"], row.finess))
        if row is not None and row.siret:
            identifiers.append((systems["siret"], row.siret))
        telecom = (
            [ContactPoint("phone", row.phone, "work")] if row is not None and row.phone else []
        )
        telecom.extend(_mailbox_contacts(list(mailboxes)))
        address = None
        if row is not None and (row.address_line or row.postcode or row.city):
            address = Address(
                lines=(row.address_line,) if row.address_line else (),
                postal_code=row.postcode,
                city=row.city,
                country="FR",
            )
        name = row.name if row is not None else mailboxes[0].organization_name
        return OrganizationCard(
            identifiers=tuple(identifiers),
            name=name,
            telecom=_unique(telecom),
            address=address,
            active=bool(row.active) if row is not None else True,
        )
