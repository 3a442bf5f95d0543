"""The conformance runner: scenarios against real servers on loopback, JUnit XML + HTML."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from markupsafe import escape as html_escape
from typer.testing import CliRunner

from adapter.auth import issue_token
from adapter.cli import app as cli
from adapter.config import get_settings
from adapter.conformance.runner import run_conformance
from adapter.conformance.runner.scenarios import ACTORS, load_requirements, load_scenarios
from tests.conformance.deficient_server import create_deficient_app
from tests.support.letter_variants import letter_variant
from tests.support.servers import serve_app


@pytest.fixture
def deficient_base() -> Iterator[str]:
    with serve_app(create_deficient_app()) as base:
        yield f"{base}/fhir"


def test_every_scenario_cites_known_requirements_and_every_requirement_is_tested() -> None:
    folder = get_settings().conformance_dir
    requirements = load_requirements(folder)
    cited: set[str] = set()
    for actor in ACTORS:
        for scenario in load_scenarios(folder, actor):
            assert scenario.requirements, scenario.id
            assert set(scenario.requirements) <= set(requirements), scenario.id
            cited |= set(scenario.requirements)
    assert cited == set(requirements)


def test_failures_are_reported_with_request_response_and_differences(
    deficient_base: str, tmp_path: Path
) -> None:
    junit, html = tmp_path / "junit.xml", tmp_path / "report.html"

    result = run_conformance(deficient_base, junit=junit, html=html)

    assert not result.ok
    by_id = {test.id: test for test in result.tests}
    assert [a.description for a in by_id["SR-CAP-01"].failed_assertions] == [
        "the resource types liaison pushes are declared"  # it declares Patient only
    ]
    honesty = by_id["SR-CAP-02"]
    assert not honesty.passed
    failed = {a.description.split(" (")[0]: a.detail for a in honesty.failed_assertions}
    assert failed["declared search parameter Patient.name works"].startswith("400")
    assert "ignored" in failed["declared search parameter Patient.birthdate works"]
    assert not by_id["SR-TX-01"].passed
    differences = result.differences()
    assert any(line.startswith("SR-TX-01 (SR-03)") for line in differences)

    suite = etree.parse(str(junit)).getroot()
    assert suite.get("tests") == str(len(result.tests))
    assert suite.get("failures") == str(len(result.tests) - result.passed)
    failure = suite.find(".//testcase[@classname='shared-record.SR-TX-01']/failure")
    assert failure is not None and "body is a Bundle: got no FHIR resource" in failure.text

    page = html.read_text(encoding="utf-8")
    assert "Differences from the requirements" in page
    assert f"POST {deficient_base}" in page  # the request of a failed step…
    assert "Response 200" in page  # …and its response
    assert "Requirements traceability" in page


def test_traceability_lists_each_requirement_with_the_tests_covering_it(
    deficient_base: str,
) -> None:
    result = run_conformance(deficient_base, only={"SR-CAP-01", "SR-ERR-01"})

    rows = {requirement.id: [t.id for t in tests] for requirement, tests in result.traceability()}
    assert rows["SR-01"] == ["SR-CAP-01"]
    assert rows["SR-10"] == ["SR-ERR-01"]
    assert rows["SR-04"] == []  # not run: shown as not covered
    assert not any(requirement.startswith("IN-") for requirement in rows)


def test_conformance_run_command_writes_reports_and_exits_non_zero_on_failures(
    deficient_base: str, tmp_path: Path
) -> None:
    junit, html = tmp_path / "out" / "junit.xml", tmp_path / "out" / "report.html"

    outcome = CliRunner().invoke(
        cli, ["conformance", "run", "--base", deficient_base, "--junit", str(junit),
              "--html", str(html)],
    )

    assert outcome.exit_code == 1, outcome.output
    assert "FAIL  SR-TX-01" in outcome.output
    assert junit.is_file() and html.is_file()


def test_conformance_run_refuses_an_unknown_actor(deficient_base: str) -> None:
    outcome = CliRunner().invoke(
        cli, ["conformance", "run", "--base", deficient_base, "--actor", "pharmacy"]
    )

    assert outcome.exit_code == 2
    assert "unknown actor" in outcome.output


def test_run_against_the_embedded_record_passes_fully(tmp_path: Path) -> None:
    from adapter.api.record_app import create_record_app

    with serve_app(create_record_app()) as base:
        result = run_conformance(
            f"{base}/fhir", token=issue_token("system"),
            junit=tmp_path / "junit.xml", html=tmp_path / "report.html",
        )

    assert result.fixtures["letter-bundle"].startswith("convert_letter(")
    assert result.differences() == []
    assert result.ok


@pytest.mark.postgres
def test_run_against_the_embedded_record_on_postgresql_passes_fully(postgres_url: str) -> None:
    from adapter.api.record_app import create_record_app

    with serve_app(create_record_app(postgres_url)) as base:
        result = run_conformance(f"{base}/fhir", token=issue_token("system"))

    assert result.differences() == []
    assert result.ok


def test_ingestion_run_against_liaison_passes_fully(tmp_path: Path) -> None:
    from adapter.api.app import create_app

    with serve_app(create_app()) as base:
        result = run_conformance(
            base, actor="ingestion", token=issue_token("system"),
            junit=tmp_path / "junit.xml", html=tmp_path / "report.html",
        )

    assert result.differences() == []
    assert result.ok


@pytest.mark.medplum
def test_run_against_medplum_reports_what_it_does_differently(
    medplum_base_url: str, tmp_path: Path
) -> None:
    junit, html = tmp_path / "junit.xml", tmp_path / "report.html"

    # the Medplum peer is shared by the session: a letter (patient, setId) nobody else posts;
    # it caps transactions with conditional entries at 8, so split as liaison's pusher does
    result = run_conformance(
        medplum_base_url, junit=junit, html=html, letter=letter_variant(6006), max_entries=8
    )

    assert len(result.tests) == len(load_scenarios(get_settings().conformance_dir,
                                                   "shared-record"))
    assert junit.is_file() and html.is_file()
    page = html.read_text(encoding="utf-8")
    for line in result.differences():  # whatever Medplum does differently is in the report
        assert f"<li>{html_escape(line)}</li>" in page
        assert f'id="{line.split(" ", 1)[0]}"' in page  # with the failed exchanges in detail
    assert ("None: the server behaves" in page) == result.ok
    assert "Transactions split in chunks of at most 8 entries" in page
    # with the data loaded in chunks, the scenarios that need it did run
    assert any(test.passed for test in result.tests if test.id != "SR-TX-01")


def test_conformance_run_against_an_unreachable_server_fails_in_one_line() -> None:
    from tests.support.servers import free_port

    base = f"http://127.0.0.1:{free_port()}/fhir"

    outcome = CliRunner().invoke(cli, ["conformance", "run", "--base", base])

    assert outcome.exit_code == 2
    assert outcome.output.startswith(f"error: cannot reach {base}")


def test_conformance_run_command_passes_against_the_record_with_a_letter_of_ones_own(
    tmp_path: Path,
) -> None:
    from adapter.api.record_app import create_record_app

    letter = tmp_path / "letter.xml"
    letter.write_bytes(letter_variant(6007))
    junit = tmp_path / "junit.xml"

    with serve_app(create_record_app()) as base:
        outcome = CliRunner().invoke(
            cli, ["conformance", "run", "--base", f"{base}/fhir", "--token", issue_token("system"),
                  "--letter", str(letter), "--junit", str(junit)],
        )

    assert outcome.exit_code == 0, outcome.output
    assert "0 failed assertion(s)" in outcome.output
    fixture = etree.parse(str(junit)).find(".//property[@name='fixture.letter-bundle']")
    assert fixture is not None and fixture.get("value") == "convert_letter(the given letter)"


def test_split_transactions_are_sent_in_chunks_and_still_pass_on_the_record() -> None:
    from adapter.api.record_app import create_record_app

    with serve_app(create_record_app()) as base:
        result = run_conformance(
            f"{base}/fhir", token=issue_token("system"), max_entries=5,
            only={"SR-TX-01", "SR-TX-02", "SR-SEARCH-02"},
        )

    assert result.ok, result.differences()
    by_id = {test.id: test for test in result.tests}
    first_post = by_id["SR-TX-02"].steps[0].exchanges[0]
    assert "transactions of at most 5" in first_post.request_body
    whole = by_id["SR-TX-01"].steps[0].exchanges[0]  # "as one unit": never split
    assert whole.request_body.startswith('{"resourceType": "Bundle"')


def _access_tokens() -> dict[str, str]:
    return {"hospital": issue_token("hospital", organization="1999999999"),
            "outsider": issue_token("professional", idnat="809999999999")}


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres",
                                                             marks=pytest.mark.postgres)])
def test_access_scenarios_pass_against_the_embedded_record(
        database: str, request: pytest.FixtureRequest) -> None:
    from adapter.api.record_app import create_record_app

    url = request.getfixturevalue("postgres_url") if database == "postgres" else None
    with serve_app(create_record_app(url)) as base:
        result = run_conformance(f"{base}/fhir", actor="access", token=issue_token("system"),
                                 tokens=_access_tokens())
    assert [test.id for test in result.tests] == ["AC-WRITE-01", "AC-READ-01", "AC-FEED-01"]
    assert result.differences() == []
    assert result.ok


@pytest.mark.medplum
def test_access_scenarios_fail_against_a_server_without_liaisons_rules(
        medplum_base_url: str) -> None:
    result = run_conformance(medplum_base_url, actor="access", letter=letter_variant(6007),
                             max_entries=8, tokens=_access_tokens())
    [writes] = [test for test in result.tests if test.id == "AC-WRITE-01"]
    assert all(step.passed for step in writes.steps if step.phase == "setup")
    refused = [step.passed for step in writes.steps if step.phase == "test"]
    assert refused and not any(refused)  # anyone writes there, and the care plan is gone


def test_a_scenario_calling_as_an_unnamed_caller_says_which_token_is_missing() -> None:
    from adapter.api.record_app import create_record_app

    with serve_app(create_record_app()) as base:
        result = run_conformance(f"{base}/fhir", actor="access", token=issue_token("system"),
                                 only={"AC-WRITE-01"})
    [test] = result.tests
    assert not test.passed
    assert any("--as hospital=TOKEN" in (step.error or "") for step in test.steps)
