"""SqlDirectory answers the mapping's questions (adapter.mapping.directory_port)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from adapter.directory.lookup import SqlDirectory
from adapter.mapping.directory_port import DirectoryLookup


def test_sql_directory_implements_the_port(loaded: Engine) -> None:
    directory: DirectoryLookup = SqlDirectory(loaded)
    assert isinstance(directory, SqlDirectory)


def test_a_professional_is_found_by_idnat_rpps_or_cda_oid(loaded: Engine) -> None:
    directory = SqlDirectory(loaded)
    by_idnat = directory.professional("urn:oid:1.2.250.1.71.4.2.1", "801234567897")
    by_rpps = directory.professional("https://rpps.esante.gouv.fr", "01234567897")
    by_oid = directory.professional("1.2.250.1.71.4.2.1", "801234567897")
    assert by_idnat == by_rpps == by_oid
    assert by_idnat is not None
    assert by_idnat.identifiers == (
        ("urn:oid:1.2.250.1.71.4.2.1", "801234567897"),
        ("https://rpps.esante.gouv.fr", "01234567897"),
    )
    assert (by_idnat.family, by_idnat.prefix, by_idnat.profession.code) == ("DAVID", "Dr", "10")
    assert by_idnat.specialty is not None and by_idnat.specialty.code == "SM27"
    phones = [c.value for c in by_idnat.telecom if c.system == "phone"]
    mss = [c.value for c in by_idnat.telecom if c.mssante]
    assert phones == ["0141297500"]
    assert mss == ["charles.david@hegp.mssante.fr"]
    assert by_idnat.organization is not None
    assert by_idnat.organization.name == "HOPITAL EUROPEEN GEORGES POMPIDOU"


def test_an_adeli_professional_gets_the_adeli_identifiers(loaded: Engine) -> None:
    card = SqlDirectory(loaded).professional("urn:oid:1.2.250.1.71.4.2.1", "0751234567")
    assert card is not None
    assert ("https://adeli.esante.gouv.fr", "751234567") in card.identifiers
    assert card.profession is not None and card.profession.display == "Masseur-Kinésithérapeute"


def test_unknown_identifiers_and_systems_answer_none(loaded: Engine) -> None:
    directory = SqlDirectory(loaded)
    assert directory.professional("urn:oid:1.2.250.1.71.4.2.1", "899999999999") is None
    assert directory.professional("urn:oid:1.2.250.1.213.1.4.8", "1234") is None
    assert directory.organization("https://finess.esante.gouv.fr", "999999999") is None
    assert directory.organization("urn:oid:9.9.9", "1750803447") is None


def test_a_structure_is_found_by_idnat_struct_or_finess_with_its_mailboxes(loaded: Engine) -> None:
    directory = SqlDirectory(loaded)
    by_idnat = directory.organization("1.2.250.1.71.4.2.2", "1750803447")
    by_finess = directory.organization("https://finess.esante.gouv.fr", "750803447")
    assert by_idnat == by_finess
    assert by_idnat is not None
    assert [c.value for c in by_idnat.telecom if c.mssante] == [
        "secretariat.medecine-interne@hegp.mssante.fr"
    ]
    assert by_idnat.address is not None and by_idnat.address.postal_code == "75015"


def test_a_local_only_person_is_found_by_the_local_identifier(loaded: Engine) -> None:
    coordinator = SqlDirectory(loaded).coordinators("75005")[0]
    system, value = coordinator.identifiers[0]
    assert SqlDirectory(loaded).professional(system, value) == coordinator
    assert [role.code for role in coordinator.roles] == ["coordinator"]
