"""Importing the MSSanté extract, an Annuaire FHIR Bundle and a local CPTS directory CSV."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from adapter.directory.importer import import_path
from adapter.directory.lookup import SqlDirectory
from adapter.errors import BadRequest
from adapter.store.directory_tables import DirectoryMailbox, DirectoryRole
from adapter.store.engine import table_of
from tests.directory.conftest import FHIR_SAMPLE, LOCAL_SAMPLE, MSSANTE_SAMPLE, NATIONAL_SAMPLE

IDNAT = "urn:oid:1.2.250.1.71.4.2.1"
mailboxes = table_of(DirectoryMailbox)
roles = table_of(DirectoryRole)


def test_mssante_extract_rejects_bad_lines_and_attaches_mailboxes(engine: Engine) -> None:
    seen = []
    summary = import_path(engine, MSSANTE_SAMPLE, on_reject=seen.append)
    assert summary.kind == "mssante"
    assert (summary.read, summary.inserted, summary.rejected) == (8, 5, 3)
    assert [(r.line, r.reason.split(":")[0]) for r in seen] == [
        (6, "bad mailbox address"),
        (7, "bad mailbox type"),
        (8, "wrong column count"),
    ]
    card = SqlDirectory(engine).professional(IDNAT, "801984758437")
    assert card is not None  # known through its mailbox even before the national extract
    assert [(c.value, c.mssante) for c in card.telecom] == [
        ("stephane.medioni@medecin.mssante.fr", True)
    ]
    again = import_path(engine, MSSANTE_SAMPLE)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5)


def test_a_mailbox_gone_from_the_mssante_extract_is_marked_inactive(
    engine: Engine, tmp_path: Path
) -> None:
    import_path(engine, MSSANTE_SAMPLE)
    lines = MSSANTE_SAMPLE.read_text(encoding="utf-8").splitlines()
    shorter = tmp_path / MSSANTE_SAMPLE.name
    shorter.write_text("\n".join(line for line in lines if "elsa.ducout" not in line) + "\n")
    summary = import_path(engine, shorter)
    assert summary.deactivated == 1
    with engine.connect() as connection:
        gone = connection.execute(
            select(mailboxes.c.active).where(
                mailboxes.c.address == "elsa.ducout@infirmier.mssante.fr"
            )
        ).scalar_one()
    assert gone is False
    # she was known through that mailbox only
    assert SqlDirectory(engine).professional(IDNAT, "801234567896") is None


def test_fhir_bundle_of_annuaire_resources_is_imported(engine: Engine) -> None:
    seen = []
    summary = import_path(engine, FHIR_SAMPLE, on_reject=seen.append)
    assert summary.kind == "fhir"
    assert summary.read == 6 and summary.rejected == 2
    assert [r.reason.split(":")[0] for r in seen] == ["unsupported resource", "bad identifier"]
    card = SqlDirectory(engine).professional("https://rpps.esante.gouv.fr", "10003456789")
    assert card is not None
    assert (card.family, card.given, card.profession.code) == ("DUPONT", ("Jean-Marie",), "60")
    assert card.organization is not None and card.organization.name == "SSIAD PARIS CENTRE"
    assert ("https://finess.esante.gouv.fr", "750012345") in card.organization.identifiers
    mailbox = [c for c in card.telecom if c.mssante]
    assert [c.value for c in mailbox] == ["jean-marie.dupont@infirmier.mssante.fr"]
    service = [c.value for c in card.organization.telecom if c.mssante]
    assert service == ["coordination@ssiad-paris-centre.mssante.fr"]


def test_something_that_is_not_a_bundle_is_refused(engine: Engine, tmp_path: Path) -> None:
    patient = tmp_path / "patient.json"
    patient.write_text('{"resourceType": "Patient"}')
    with pytest.raises(BadRequest, match="not a FHIR Bundle"):
        import_path(engine, patient)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(BadRequest, match="not JSON"):
        import_path(engine, garbage)


def test_local_csv_adds_cpts_roles_and_keeps_national_identities(engine: Engine) -> None:
    import_path(engine, NATIONAL_SAMPLE)
    seen = []
    summary = import_path(engine, LOCAL_SAMPLE, on_reject=seen.append)
    assert summary.kind == "local"
    assert (summary.read, summary.inserted, summary.rejected) == (7, 4, 3)
    assert [(r.line, r.reason.split(":")[0]) for r in seen] == [
        (6, "bad identifier"),
        (7, "bad territory"),
        (8, "missing name"),
    ]
    directory = SqlDirectory(engine)
    nurse = directory.professional("https://rpps.esante.gouv.fr", "01234567896")
    assert nurse is not None
    assert nurse.address is not None and nurse.address.lines == ("8 Rue MOUFFETARD",)  # national
    assert [role.code for role in nurse.roles] == ["referent"]
    assert nurse.extra["cpts_id"] == "cpts-paris-5-15"
    assert "elsa.ducout@infirmier.mssante.fr" in [c.value for c in nurse.telecom if c.mssante]


def test_coordinator_is_found_for_a_postcode_of_the_territory(engine: Engine) -> None:
    import_path(engine, LOCAL_SAMPLE)
    directory = SqlDirectory(engine)
    inside = directory.coordinators("75013")
    assert [(card.family, card.extra["territory_postcodes"]) for card in inside] == [
        ("LAMBERT", "75005-75015")
    ]
    assert [c.value for c in inside[0].telecom if c.mssante] == [
        "coordination@cpts-paris-5-15.mssante.fr"
    ]
    assert directory.coordinators("75016") == []
    assert directory.coordinators("75013", cpts_id="another-cpts") == []
    social = directory.coordinators("75010", role="social-worker")
    assert [card.family for card in social] == ["ROUX"]


def test_a_person_gone_from_the_local_csv_loses_the_role(engine: Engine, tmp_path: Path) -> None:
    import_path(engine, LOCAL_SAMPLE)
    text = LOCAL_SAMPLE.read_text(encoding="utf-8").replace(",", ";")
    shorter = tmp_path / "cpts-paris-5-15.csv"
    shorter.write_text("\n".join(row for row in text.splitlines() if "LAMBERT" not in row) + "\n")
    summary = import_path(engine, shorter)
    assert summary.deactivated == 1 and summary.unchanged == 3  # ';' works as well as ','
    assert SqlDirectory(engine).coordinators("75013") == []
    with engine.connect() as connection:
        kept = connection.execute(
            select(roles.c.active).where(roles.c.local_role == "coordinator")
        ).scalar_one()
    assert kept is False


def test_a_csv_without_family_column_is_refused(engine: Engine, tmp_path: Path) -> None:
    csv_file = tmp_path / "x.csv"
    csv_file.write_text("name,phone\nA,1\n")
    with pytest.raises(BadRequest, match="'family' column"):
        import_path(engine, csv_file)


@pytest.mark.parametrize("sample", [LOCAL_SAMPLE, MSSANTE_SAMPLE, FHIR_SAMPLE, NATIONAL_SAMPLE])
def test_the_progress_of_an_import_is_in_bytes_of_the_file_up_to_its_size(
    engine: Engine, sample: Path
) -> None:
    """The progress bar is sized in bytes (`on_start`): what is reported counts bytes too."""
    sizes: list[int | None] = []
    reported: list[int] = []
    import_path(engine, sample, on_start=lambda _kind, _name, size: sizes.append(size),
                progress=reported.append)
    assert sizes == [sample.stat().st_size]
    assert reported and reported == sorted(reported) and reported[-1] == sample.stat().st_size
