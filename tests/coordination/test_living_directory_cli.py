"""`liaison directory search --available-within 24h --skill … --postcode …` finds who can take
the patient, from the availabilities recorded with `liaison availability import`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from adapter.cli import app

AVAILABILITIES = (
    "idnat_ps,accepts_new_patients,home_visits,available_within,skills,postcodes\n"
    "810000000041,yes,yes,12h,wound-care picc-line,75005-75015\n"
    "810000000058,yes,yes,72h,wound-care,75\n"
    "810000000066,no,yes,12h,wound-care,75\n"
    "810000000074,yes,yes,6h,palliative-care,75\n"
    "810000000082,yes,yes,6h,wound-care,92\n"
)


def test_directory_search_by_delay_skill_and_postcode_lists_who_can_take_the_patient(
    tmp_path: Path,
) -> None:
    csv = tmp_path / "availability.csv"
    csv.write_text(AVAILABILITIES, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["availability", "import", str(csv)]).exit_code == 0
    found = runner.invoke(app, ["directory", "search", "--available-within", "24h",
                                "--skill", "wound-care", "--postcode", "75007"])
    assert found.exit_code == 0, found.output
    lines = found.stdout.strip().splitlines()
    # 72 h is too late, 066 takes no new patients, 074 lacks the skill, 082 works in the 92
    assert len(lines) == 1 and lines[0].startswith("810000000041")
    nobody = runner.invoke(app, ["directory", "search", "--available-within", "2h"])
    assert nobody.stdout == "" and "nobody matches" in nobody.output
