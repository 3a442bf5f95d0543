"""`liaison directory import` and `liaison directory search` as a person runs them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from adapter.cli.directory import app
from tests.directory.conftest import LOCAL_SAMPLE, MSSANTE_SAMPLE, NATIONAL_SAMPLE

runner = CliRunner()


def _import(path: Path) -> object:
    return runner.invoke(app, ["import", str(path), "--quiet"])


def test_import_reports_each_rejected_line_and_a_summary(liaison_env: Path) -> None:
    result = _import(NATIONAL_SAMPLE)
    assert result.exit_code == 2  # some lines were rejected, the rest imported
    assert f"{NATIONAL_SAMPLE.name}: line 5: wrong column count" in result.stderr
    assert f"{NATIONAL_SAMPLE.name}: line 11: bad encoding" in result.stderr
    assert "read 10, inserted 6, updated 0, unchanged 0, rejected 4" in result.stdout
    assert "rejected 2: bad identifier" in result.stdout


def test_import_of_a_clean_file_exits_zero(liaison_env: Path, tmp_path: Path) -> None:
    clean = tmp_path / NATIONAL_SAMPLE.name
    lines = NATIONAL_SAMPLE.read_bytes().split(b"\n")
    clean.write_bytes(b"\n".join(lines[:4] + lines[5:7] + lines[8:9]) + b"\n")
    result = _import(clean)
    assert result.exit_code == 0, result.stderr
    assert "inserted 6" in result.stdout


def test_import_of_an_unknown_file_fails_with_one_line(liaison_env: Path, tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    result = _import(other)
    assert result.exit_code == 1
    assert result.stderr.startswith("liaison directory import: notes.txt: not a directory file")
    assert len(result.stderr.strip().splitlines()) == 1


def test_search_prints_one_line_per_match_with_phone_and_mssante(liaison_env: Path) -> None:
    for sample in (NATIONAL_SAMPLE, MSSANTE_SAMPLE, LOCAL_SAMPLE):
        _import(sample)
    result = runner.invoke(app, ["search", "--identifier", "801234567897"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines == [
        "Dr DAVID Charles | Médecin, Médecine interne (SM) | HOPITAL EUROPEEN GEORGES POMPIDOU, "
        "20 Rue LEBLANC, 75015 Paris | 0141297500 | charles.david@hegp.mssante.fr",
        "Dr DAVID Charles | Médecin, Médecine interne (SM) | CABINET DU DR DAVID, "
        "12 Boulevard DE PORT ROYAL, 75005 Paris | 0143310000 | charles.david@hegp.mssante.fr",
    ]
    by_rpps = runner.invoke(app, ["search", "-i", "01234567897"])
    assert by_rpps.stdout == result.stdout


def test_search_by_name_profession_specialty_postcode_and_role(liaison_env: Path) -> None:
    for sample in (NATIONAL_SAMPLE, MSSANTE_SAMPLE, LOCAL_SAMPLE):
        _import(sample)

    def names(*args: str) -> list[str]:
        result = runner.invoke(app, ["search", *args])
        return [line.split(" | ")[0] for line in result.stdout.strip().splitlines()]

    assert names("--name", "medi") == ["Dr MEDIONI Stéphane"]
    assert names("--name", "stephane") == ["Dr MEDIONI Stéphane"]  # accents do not matter
    assert names("--specialty", "SM04") == ["Dr MARTIN Sophie"]
    assert names("--specialty", "cardiologie") == ["Dr MARTIN Sophie"]
    assert names("--profession", "60", "--postcode", "75005") == [
        "Mme DUCOUT Elsa",
        "Mme DUCOUT Elsa",
    ]
    assert names("--profession", "kinési") == ["M. GIRARD Paul", "M. PETIT Louis"]
    assert names("--role", "coordinator") == ["Mme LAMBERT Claire"]
    assert names("--postcode", "75013") == ["Dr MARTIN Sophie"]


def test_search_without_criteria_or_without_match_fails(liaison_env: Path) -> None:
    _import(NATIONAL_SAMPLE)
    empty = runner.invoke(app, ["search"])
    assert empty.exit_code == 1 and "at least one criterion" in empty.stderr
    none = runner.invoke(app, ["search", "--name", "nobody"])
    assert none.exit_code == 1 and "no professional matches" in none.stderr
