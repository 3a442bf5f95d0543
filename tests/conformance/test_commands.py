"""`liaison validate`, `liaison conformance capability|profiles|check`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from adapter.cli import app as cli
from adapter.config import get_settings
from adapter.conformance.capability import fetch_capability, stable
from adapter.mapping import convert_letter
from tests.conformance.letters import DISCHARGE_TREATMENTS, without_section
from tests.support.paths import LDL_SES_EXAMPLE
from tests.support.servers import serve_app


def test_validate_prints_a_clean_verdict_for_the_official_example() -> None:
    outcome = CliRunner().invoke(cli, ["validate", str(LDL_SES_EXAMPLE)])

    assert outcome.exit_code == 0, outcome.output
    assert "valid LDL-SES 2022.01 — 0 error(s)" in outcome.output


def test_validate_prints_each_failed_assertion_with_its_location(tmp_path: Path) -> None:
    letter = tmp_path / "letter.xml"
    letter.write_bytes(without_section(DISCHARGE_TREATMENTS))

    outcome = CliRunner().invoke(cli, ["validate", str(letter)])

    assert outcome.exit_code == 1
    lines = outcome.output.splitlines()
    assert lines[0].startswith("[error] CI-SIS_LDL-SES_2022.01.sch at /cda:ClinicalDocument: ")
    assert DISCHARGE_TREATMENTS in lines[0]
    assert "INVALID LDL-SES 2022.01 — 1 error(s)" in lines[-1]


def test_validate_json_report(tmp_path: Path) -> None:
    letter = tmp_path / "letter.xml"
    letter.write_bytes(without_section(DISCHARGE_TREATMENTS))

    outcome = CliRunner().invoke(cli, ["validate", "--json", str(letter)])

    report = json.loads(outcome.output)
    assert report["ok"] is False
    assert report["errors"][0]["location"] == "/cda:ClinicalDocument"


def test_validate_refuses_non_xml_in_one_line(tmp_path: Path) -> None:
    letter = tmp_path / "letter.xml"
    letter.write_text("hello")

    outcome = CliRunner().invoke(cli, ["validate", str(letter)])

    assert outcome.exit_code == 2
    assert outcome.output.startswith("error: the letter is not well-formed XML")
    assert len(outcome.output.strip().splitlines()) == 1


def test_validate_reports_an_unreadable_file(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(cli, ["validate", str(tmp_path / "missing.xml")])

    assert outcome.exit_code == 2
    assert "cannot read" in outcome.output


def test_committed_capability_statement_is_what_the_record_answers() -> None:
    from adapter.api.record_app import create_record_app

    with serve_app(create_record_app()) as base:
        live = fetch_capability(f"{base}/fhir")
    committed = json.loads(
        (get_settings().conformance_dir / "CapabilityStatement.json").read_text(encoding="utf-8")
    )

    assert committed == stable(live), (
        "regenerate: liaison conformance capability --out conformance/CapabilityStatement.json"
    )


def test_capability_command_writes_the_embedded_statement(tmp_path: Path) -> None:
    out = tmp_path / "CapabilityStatement.json"

    outcome = CliRunner().invoke(cli, ["conformance", "capability", "--out", str(out)])

    assert outcome.exit_code == 0, outcome.output
    statement = json.loads(out.read_text(encoding="utf-8"))
    assert statement["resourceType"] == "CapabilityStatement"
    assert "date" not in statement


def test_profiles_command_check_passes_on_the_committed_json() -> None:
    outcome = CliRunner().invoke(cli, ["conformance", "profiles", "--check"])

    assert outcome.exit_code == 0, outcome.output


def test_check_command_lists_problems_of_a_bundle(tmp_path: Path) -> None:
    bundle = convert_letter(LDL_SES_EXAMPLE.read_bytes()).bundle
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "CarePlan":
            entry["resource"]["intent"] = "order"
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))

    outcome = CliRunner().invoke(cli, ["conformance", "check", str(path)])

    assert outcome.exit_code == 1
    assert "CarePlan.intent: is 'order', must be 'plan'" in outcome.output
