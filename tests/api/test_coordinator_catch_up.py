"""A coordinator declared after the letters arrived joins the care teams of their territory
(`liaison directory import` of a local list, `liaison coordinators --catch-up`), through the
outbox, and then reads those patients — except one who opposed sharing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapter.auth import issue_token
from adapter.cli import app as cli
from tests.api.conftest import bearer, wait_for_status
from tests.support.letter_variants import INS_SYSTEM, ins_of, letter_variant
from tests.support.paths import FIXTURES
from tests.support.waiting import wait_for

CDA = {"Content-Type": "application/hl7-cda+xml"}
COORDINATOR = "810000000017"


def send(client: TestClient, xml: bytes, hospital: dict[str, str]) -> None:
    answer = client.post("/discharge-letters", content=xml, headers={**hospital, **CDA})
    assert answer.status_code == 202, answer.text
    wait_for_status(client, answer.headers["Location"], hospital, "pushed")


def plans_read(client: TestClient, headers: dict[str, str], n: int) -> int:
    answer = client.get("/fhir/CarePlan", headers=headers,
                        params={"patient.identifier": f"{INS_SYSTEM}|{ins_of(n)}"})
    return int(answer.json()["total"])


def test_a_coordinator_declared_after_the_letters_joins_their_care_teams(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    coordinator = bearer(issue_token("coordinator", cpts="CPTS-PARIS-CENTRE"))
    runner = CliRunner()
    with liaison() as client:
        send(client, letter_variant(801), hospital)
        send(client, letter_variant(802), hospital)
        opposed = runner.invoke(cli, ["consent", "oppose", "--ins", ins_of(802), "--system",
                                      INS_SYSTEM])
        assert opposed.exit_code == 0, opposed.output
        assert plans_read(client, coordinator, 801) == 0  # nobody covered them then
        imported = runner.invoke(cli, ["directory", "import",
                                       str(FIXTURES / "coordination" / "local_directory.csv")])
        assert imported.exit_code == 0, imported.output
        assert "coordinators: 1 of 2 active care teams joined" in imported.output
        wait_for(lambda: plans_read(client, coordinator, 801), "the coordinator joining",
                 timeout=30)
        told = client.get("/fhir/Communication", headers=bearer(issue_token("system")),
                          params={"recipient.identifier":
                                  f"urn:oid:1.2.250.1.71.4.2.1|{COORDINATOR}"}).json()
        assert plans_read(client, coordinator, 802) == 0  # the patient who opposed
        # and the stay's D+7 review, owned by the CPTS, due a week after the discharge
        [review] = [e["resource"] for e in client.get("/fhir/Task", headers=coordinator).json()
                    ["entry"]]
        assert review["restriction"]["period"]["end"].startswith("2019-12-10")
        assert review["for"]["reference"].startswith("Patient/")
        assert review["focus"]["reference"].startswith("CarePlan/")
        again = runner.invoke(cli, ["coordinators", "--catch-up"])
    assert again.exit_code == 0 and "0 of 2 active care teams joined" in again.output
    [message] = [e["resource"] for e in told["entry"]]
    assert message["subject"]["reference"].startswith("Patient/")
    assert message["about"][0]["reference"].startswith("CarePlan/")
