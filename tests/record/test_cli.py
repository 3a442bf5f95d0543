"""`liaison token …` and `liaison pull`, run as a user would."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from adapter.auth import verify_token
from adapter.cli import app
from adapter.record.repository import Repository
from tests.record.bundles import PCP, letter_bundle

runner = CliRunner()


def _kinds(bundle: dict) -> list[str]:
    return sorted(e["resource"]["resourceType"] for e in bundle["entry"])


def test_token_commands_print_tokens_the_record_accepts():
    professional = runner.invoke(app, ["token", "professional", "--idnat", PCP])
    assert professional.exit_code == 0
    principal = verify_token(professional.stdout.strip())
    assert (principal.kind, principal.idnat) == ("professional", PCP)
    hospital = runner.invoke(app, ["token", "hospital", "--organization", "1750000001"])
    assert verify_token(hospital.stdout.strip()).organization == "1750000001"
    coordinator = runner.invoke(app, ["token", "coordinator", "--cpts", "CPTS-42"])
    assert verify_token(coordinator.stdout.strip()).cpts == "CPTS-42"
    assert runner.invoke(app, ["token", "coordinator"]).exit_code != 0


def test_pull_resumes_where_the_last_pull_stopped(tmp_path):  # type: ignore[no-untyped-def]
    state = str(tmp_path / "cursor")
    repository = Repository()
    repository.transaction(letter_bundle(ins="1", set_id="a"))
    repository.transaction(letter_bundle(ins="2", set_id="b", team=("801111111111",),
                                         recipients=("801111111111",)))
    first = runner.invoke(app, ["pull", "--since", "2000-01-01", "--idnat", PCP,
                                "--state", state])
    assert first.exit_code == 0, first.output
    pulled = json.loads(first.stdout)
    assert _kinds(pulled) == ["CarePlan", "CareTeam", "Communication", "DocumentReference",
                              "Patient"]
    assert "resume cursor:" in first.stderr
    nothing = json.loads(runner.invoke(app, ["pull", "--idnat", PCP, "--state", state]).stdout)
    assert nothing["total"] == 0
    repository.transaction(letter_bundle(ins="1", set_id="a", version=2))
    changed = json.loads(runner.invoke(app, ["pull", "--idnat", PCP, "--state", state]).stdout)
    assert _kinds(changed) == ["CarePlan", "Communication", "DocumentReference"]
    again = json.loads(runner.invoke(app, ["pull", "--idnat", PCP, "--state", state]).stdout)
    assert again["total"] == 0


def test_pull_over_http_with_a_token(base_url: str, writer):  # type: ignore[no-untyped-def]
    writer.post("", json=letter_bundle())
    token = runner.invoke(app, ["token", "professional", "--idnat", PCP]).stdout.strip()
    answer = runner.invoke(app, ["pull", "--since", "2000-01-01", "--base", base_url,
                                 "--token", token, "--type", "CarePlan", "--type", "CareTeam"])
    assert answer.exit_code == 0, answer.output
    assert _kinds(json.loads(answer.stdout)) == ["CarePlan", "CareTeam"]


def test_pull_refuses_a_bad_timestamp_in_one_line():
    answer = runner.invoke(app, ["pull", "--since", "yesterday", "--idnat", PCP])
    assert answer.exit_code == 1
    assert answer.stderr.strip().count("\n") == 0 and "yesterday" in answer.stderr
