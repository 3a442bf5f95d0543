"""The directory's tables: professionals, their activities (one PractitionerRole per activity and
site), structures, MSSanté mailboxes and the import runs that fed them.

Rows are keyed by business identifiers (idNat_PS, idNat_Struct, mailbox address) and carry the
hash of the source content they came from, so a re-import only writes what changed; `seen_run`
records the last import that saw a row, so a full re-import can mark the missing ones inactive
instead of deleting them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ColumnElement, Index, Text
from sqlmodel import Field, SQLModel

from adapter.store.engine import table_of


class DirectoryPractitioner(SQLModel, table=True):
    __tablename__ = "directory_practitioner"
    # Name searches use LIKE '%…%', which no B-tree index serves: no index on the names.

    id: int | None = Field(default=None, primary_key=True)
    idnat: str = Field(unique=True, max_length=64)  # idNat_PS, or "local-<cpts>-<id>"
    id_type: str = Field(max_length=8)  # RPPS | ADELI | LOCAL
    rpps: str | None = Field(default=None, max_length=16)  # looked up through idnat = '8'+RPPS
    prefix: str | None = None
    family: str | None = None
    given: str | None = None
    family_norm: str | None = None  # upper case without accents, for name search
    given_norm: str | None = None
    profession_code: str | None = Field(default=None, max_length=8)
    profession_display: str | None = None
    category_code: str | None = Field(default=None, max_length=8)
    specialty_system: str | None = None
    specialty_code: str | None = Field(default=None, max_length=16)
    specialty_display: str | None = None
    source: str = Field(max_length=16)  # national | fhir | local
    content_hash: str = Field(max_length=32)
    active: bool = True
    seen_run: int = 0


class DirectoryRole(SQLModel, table=True):
    """One activity of a professional at one site (PractitionerRole), or a local CPTS role.

    role_key starts with the professional's idNat_PS, then the source and what tells their
    activities apart (site, mode, profession, savoir-faire for the national extract).
    """

    __tablename__ = "directory_role"
    __table_args__ = (
        Index("ix_dirrole_practitioner", "practitioner_idnat"),
        Index("ix_dirrole_postcode", "postcode"),
        Index("ix_dirrole_specialty", "specialty_code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    role_key: str = Field(unique=True, max_length=200)
    practitioner_idnat: str = Field(max_length=64)
    source: str = Field(max_length=16)
    line_hash: str = Field(max_length=32)
    active: bool = True
    seen_run: int = 0
    profession_code: str | None = Field(default=None, max_length=8)
    profession_display: str | None = None
    specialty_system: str | None = None
    specialty_code: str | None = Field(default=None, max_length=16)
    specialty_display: str | None = None
    practice_mode: str | None = Field(default=None, max_length=8)
    sector_code: str | None = Field(default=None, max_length=8)
    organization_idnat: str | None = Field(default=None, max_length=64)
    finess: str | None = Field(default=None, max_length=16)
    siret: str | None = Field(default=None, max_length=16)
    organization_name: str | None = None
    address_line: str | None = None
    postcode: str | None = Field(default=None, max_length=10)
    city: str | None = None
    phone: str | None = Field(default=None, max_length=32)
    phone2: str | None = Field(default=None, max_length=32)
    fax: str | None = Field(default=None, max_length=32)
    email: str | None = None
    mssante: str | None = None  # local directories give the mailbox on the role
    local_role: str | None = Field(default=None, max_length=64)  # e.g. coordinator
    cpts_id: str | None = Field(default=None, max_length=64)
    territory_postcodes: str | None = Field(default=None, sa_column=Column(Text))


class DirectoryOrganization(SQLModel, table=True):
    __tablename__ = "directory_organization"
    __table_args__ = (
        Index("ix_dirorg_finess", "finess"),
        Index("ix_dirorg_siret", "siret"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idnat_struct: str = Field(unique=True, max_length=64)
    finess: str | None = Field(default=None, max_length=16)
    siret: str | None = Field(default=None, max_length=16)
    name: str | None = None
    address_line: str | None = None
    postcode: str | None = Field(default=None, max_length=10)
    city: str | None = None
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = None
    sector_code: str | None = Field(default=None, max_length=8)
    source: str = Field(max_length=16)
    content_hash: str = Field(max_length=32)
    active: bool = True
    seen_run: int = 0


class DirectoryMailbox(SQLModel, table=True):
    """An MSSanté mailbox (BAL), personal (PER) or of a structure/service (ORG, APP, CAB)."""

    __tablename__ = "directory_mailbox"
    __table_args__ = (
        Index("ix_dirmbox_practitioner", "practitioner_idnat"),
        Index("ix_dirmbox_organization", "organization_idnat"),
    )

    id: int | None = Field(default=None, primary_key=True)
    mailbox_key: str = Field(unique=True, max_length=400)
    address: str = Field(max_length=256)
    mailbox_type: str = Field(max_length=8)
    practitioner_idnat: str | None = Field(default=None, max_length=64)
    organization_idnat: str | None = Field(default=None, max_length=64)
    service: str | None = None
    digitization: bool | None = None
    family: str | None = None
    given: str | None = None
    prefix: str | None = None
    profession_code: str | None = Field(default=None, max_length=8)
    profession_display: str | None = None
    organization_name: str | None = None
    source: str = Field(max_length=16)
    content_hash: str = Field(max_length=32)
    active: bool = True
    seen_run: int = 0


class DirectoryImportRun(SQLModel, table=True):
    __tablename__ = "directory_import_run"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # national | mssante | fhir | local
    source_name: str
    full: bool = True
    started_at: datetime
    finished_at: datetime | None = None
    lines_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deactivated: int = 0


# Column orders the importers write rows in (business key first).
PRACTITIONER_COLUMNS = (
    "idnat",
    "id_type",
    "rpps",
    "prefix",
    "family",
    "given",
    "family_norm",
    "given_norm",
    "profession_code",
    "profession_display",
    "category_code",
    "specialty_system",
    "specialty_code",
    "specialty_display",
    "source",
    "content_hash",
)
ROLE_COLUMNS = (
    "role_key",
    "practitioner_idnat",
    "source",
    "line_hash",
    "profession_code",
    "profession_display",
    "specialty_system",
    "specialty_code",
    "specialty_display",
    "practice_mode",
    "sector_code",
    "organization_idnat",
    "finess",
    "siret",
    "organization_name",
    "address_line",
    "postcode",
    "city",
    "phone",
    "phone2",
    "fax",
    "email",
    "mssante",
    "local_role",
    "cpts_id",
    "territory_postcodes",
)
ORGANIZATION_COLUMNS = (
    "idnat_struct",
    "finess",
    "siret",
    "name",
    "address_line",
    "postcode",
    "city",
    "phone",
    "email",
    "sector_code",
    "source",
    "content_hash",
)
MAILBOX_COLUMNS = (
    "mailbox_key",
    "address",
    "mailbox_type",
    "practitioner_idnat",
    "organization_idnat",
    "service",
    "digitization",
    "family",
    "given",
    "prefix",
    "profession_code",
    "profession_display",
    "organization_name",
    "source",
    "content_hash",
)


def roles_of(idnat: str) -> ColumnElement[bool]:
    """Condition selecting the roles of one professional (through ix_dirrole_practitioner)."""
    return table_of(DirectoryRole).c.practitioner_idnat == idnat
