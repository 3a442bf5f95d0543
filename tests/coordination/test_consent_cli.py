"""`liaison consent oppose|withdraw|show --ins …` and `liaison coordinators`."""

from __future__ import annotations

from typer.testing import CliRunner

from adapter.cli import app
from adapter.coordination.coordinators import CsvCoordinators
from adapter.coordination.enrichment import enrich
from adapter.store import outbox
from adapter.store.db import get_engine
from tests.coordination.letters import addressed, synthetic_conversion
from tests.support.paths import FIXTURES

DIRECTORY_CSV = FIXTURES / "coordination" / "local_directory.csv"


def test_opposition_from_the_command_line_holds_for_the_patients_letters() -> None:
    runner = CliRunner()
    # recorded under the INS-NIR system; the letter carries the same matricule as a test INS
    result = runner.invoke(app, ["consent", "oppose", "--ins", "279035121518989"])
    assert result.exit_code == 0, result.output
    assert "opposition recorded" in result.output
    assert outbox.counts(get_engine())["pending"] == 1  # the FHIR Consent, queued for the record
    shown = runner.invoke(app, ["consent", "show", "--ins", "279035121518989"])
    assert shown.output.startswith("oppose since")
    enriched = enrich(synthetic_conversion(), CsvCoordinators(DIRECTORY_CSV))
    assert addressed(enriched.bundle) == {"801234567896"}
    assert runner.invoke(app, ["consent", "withdraw", "--ins", "279035121518989"]).exit_code == 0
    enriched = enrich(synthetic_conversion(), CsvCoordinators(DIRECTORY_CSV))
    assert "810000000017" in addressed(enriched.bundle)


def test_consent_without_an_ins_fails_with_one_line_on_stderr() -> None:
    result = CliRunner().invoke(app, ["consent", "oppose", "--ins", "  "])
    assert result.exit_code == 1
    assert "--ins needs the patient's INS" in result.output


def test_coordinators_command_tells_who_covers_an_address() -> None:
    runner = CliRunner()
    covered = runner.invoke(
        app, ["coordinators", "--postcode", "75007", "--csv", str(DIRECTORY_CSV)]
    )
    assert "CPTS-PARIS-CENTRE" in covered.output
    nobody = runner.invoke(
        app, ["coordinators", "--postcode", "13001", "--csv", str(DIRECTORY_CSV)]
    )
    assert "no pathway coordinator" in nobody.output


def test_an_opposition_on_a_malformed_ins_is_refused_in_one_line_and_recorded_nowhere() -> None:
    result = CliRunner().invoke(app, ["consent", "oppose", "--ins", "279035121518988"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "control key" in result.output
    assert sum(outbox.counts(get_engine()).values()) == 0
