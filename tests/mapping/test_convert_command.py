"""`liaison convert` in this process: stdout bundles, many letters into a folder, refusals on
stderr (in worker processes: test_convert_jobs.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from adapter.cli import app
from tests.mapping.helpers import LETTERS

runner = CliRunner()


def test_convert_prints_the_bundle_json_on_stdout() -> None:
    result = runner.invoke(app, ["convert", str(LETTERS / "ldl-ses-v1.xml")])
    assert result.exit_code == 0, result.stderr
    bundle = json.loads(result.stdout)
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "transaction")


def test_a_refused_letter_prints_one_line_on_stderr_and_fails() -> None:
    result = runner.invoke(app, ["convert", str(LETTERS / "refused" / "lab-report.xml")])
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "laboratory report" in lines[0]


def test_a_missing_file_is_refused_in_one_line() -> None:
    result = runner.invoke(app, ["convert", "/nonexistent/letter.xml"])
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1


def test_report_and_validate_in_stdout_mode() -> None:
    result = runner.invoke(app, ["convert", str(LETTERS / "ldl-ses-v1.xml"), "--report",
                                 "--validate"])
    assert result.exit_code == 0
    report = json.loads(result.stderr)
    assert report["resourceType"] == "OperationOutcome"
    assert any("expression" in issue for issue in report["issue"])


def test_many_letters_go_to_a_folder_and_refusals_are_listed(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("ldl-ses-v1.xml", "ldl-ses-v2.xml"):
        shutil.copy(LETTERS / name, inbox / name)
    shutil.copy(LETTERS / "refused" / "entry-letter.xml", inbox / "entry-letter.xml")
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(inbox), str(LETTERS / "n1-pdf-discharge.xml"),
                                 "--out", str(out), "--report", "--validate", "--jobs", "1"])
    assert result.exit_code == 1  # one refused
    assert sorted(p.name for p in out.iterdir()) == [
        "ldl-ses-v1.json", "ldl-ses-v1.report.json", "ldl-ses-v2.json", "ldl-ses-v2.report.json",
        "n1-pdf-discharge.json", "n1-pdf-discharge.report.json"]
    assert json.loads((out / "ldl-ses-v2.json").read_text())["type"] == "transaction"
    assert result.stdout == ""  # the bundles are in the folder, the lines on stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{inbox / 'entry-letter.xml'}: refused: ")
    assert lines[1] == f"3 of 4 letters converted into {out}"


def test_several_letters_without_out_is_a_usage_error() -> None:
    result = runner.invoke(app, ["convert", str(LETTERS / "ldl-ses-v1.xml"),
                                 str(LETTERS / "ldl-ses-v2.xml")])
    assert result.exit_code == 2
    assert "--out" in result.stderr


def test_convert_with_the_imported_directory_reports_unknown_professionals() -> None:
    # a fresh data directory: the real SQL directory is empty, so nobody is known
    result = runner.invoke(app, ["convert", str(LETTERS / "ldl-ses-v1.xml"), "--directory",
                                 "--report"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stderr)
    assert any("Professional 810009876543 is not in the directory" in issue["diagnostics"]
               for issue in report["issue"])
