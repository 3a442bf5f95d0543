"""What the mapping asks of a professional directory, and what it gets back.

The mapping depends on this small interface only; `adapter.directory` implements it on the
imported national and local directories. Identifiers are FHIR (system URI, value) pairs as
FR Core writes them (idNat_PS `urn:oid:1.2.250.1.71.4.2.1`, RPPS `https://rpps.esante.gouv.fr`,
idNat_Struct `urn:oid:1.2.250.1.71.4.2.2`, FINESS `https://finess.esante.gouv.fr`, …).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str | None = None


@dataclass(frozen=True)
class ContactPoint:
    system: str  # FHIR ContactPoint.system: phone | email | fax | url | other
    value: str
    use: str | None = None  # work | home | mobile
    mssante: bool = False  # an MSSanté secure mailbox (typed as the Annuaire does)


@dataclass(frozen=True)
class Address:
    lines: tuple[str, ...] = ()
    postal_code: str | None = None
    city: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class OrganizationCard:
    identifiers: tuple[tuple[str, str], ...]
    name: str | None = None
    telecom: tuple[ContactPoint, ...] = ()
    address: Address | None = None
    active: bool = True


@dataclass(frozen=True)
class ProfessionalCard:
    """One professional as the directory knows them, with their practice sites."""

    identifiers: tuple[tuple[str, str], ...]
    family: str | None = None
    given: tuple[str, ...] = ()
    prefix: str | None = None  # civilité d'exercice, e.g. "Dr"
    profession: Coding | None = None  # TRE_G15 profession
    specialty: Coding | None = None  # TRE_R38 savoir-faire / specialty
    telecom: tuple[ContactPoint, ...] = ()  # includes MSSanté mailboxes
    address: Address | None = None
    organization: OrganizationCard | None = None
    roles: tuple[Coding, ...] = ()  # local roles, e.g. CPTS coordinator
    active: bool = True
    extra: dict[str, str] = field(default_factory=dict)


class DirectoryLookup(Protocol):
    def professional(self, system: str, value: str) -> ProfessionalCard | None:
        """The professional holding identifier (system, value), or None if unknown."""
        ...

    def organization(self, system: str, value: str) -> OrganizationCard | None:
        """The structure holding identifier (system, value), or None if unknown."""
        ...
