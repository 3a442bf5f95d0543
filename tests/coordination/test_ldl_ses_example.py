"""Acceptance on the official LDL-SES example (patient in 75007), through the real mapping and
the real directory import: the CPTS coordinator joins the care team only where a rule says so."""

from __future__ import annotations

from pathlib import Path

from adapter.coordination import coordinate
from adapter.coordination.bundle_tools import BundleView
from adapter.directory.importer import import_path
from adapter.fhir_validation import validate_bundle
from adapter.mapping import convert_letter
from adapter.store.db import get_engine
from tests.coordination.letters import addressed
from tests.support.paths import FIXTURES, LDL_SES_EXAMPLE

DIRECTORY_CSV = FIXTURES / "coordination" / "local_directory.csv"
COORDINATOR = "810000000017"


def _coordinators_in(bundle: dict) -> set[str]:
    view = BundleView(bundle)
    care_team = view.first("CareTeam") or {}
    found: set[str] = set()
    for participant in care_team.get("participant") or []:
        codes = {
            c.get("code") for r in participant.get("role") or [] for c in r.get("coding") or []
        }
        if "coordinator" in codes:
            found |= view.idnats_of(participant["member"]["reference"])
    return found


def test_example_letter_gets_the_cpts_coordinator_of_75005_75015() -> None:
    engine = get_engine()
    import_path(engine, DIRECTORY_CSV)
    conversion = convert_letter(LDL_SES_EXAMPLE.read_bytes())
    assert conversion.letter.patient_postal_code == "75007"
    enriched = coordinate(conversion, engine)
    assert _coordinators_in(enriched.bundle) == {COORDINATOR}
    assert COORDINATOR in addressed(enriched.bundle)
    # the letter's own recipients and médecin traitant still get theirs
    assert {"801234567897", "801234567896", "801984758437"} <= addressed(enriched.bundle)
    assert validate_bundle(enriched.bundle) == []


def test_example_letter_without_a_covering_rule_gets_no_coordinator(tmp_path: Path) -> None:
    engine = get_engine()
    lines = DIRECTORY_CSV.read_text(encoding="utf-8").splitlines()
    elsewhere = tmp_path / "lyon.csv"
    elsewhere.write_text("\n".join([lines[0], *(line for line in lines if "LYON" in line)]) + "\n")
    import_path(engine, elsewhere)
    enriched = coordinate(convert_letter(LDL_SES_EXAMPLE.read_bytes()), engine)
    assert _coordinators_in(enriched.bundle) == set()
    assert COORDINATOR not in addressed(enriched.bundle)
    assert any("no pathway coordinator" in i["diagnostics"] for i in enriched.report["issue"])
