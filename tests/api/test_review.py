"""The D+7 review: each stay with a coordinator gets one FHIR Task owned by the CPTS, due a week
after the discharge; the page shows it due or late; a coordinator of that CPTS completes it
(who and when kept), nobody else can, and a corrected letter does not reset it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.auth import issue_token
from adapter.directory.importer import import_path
from adapter.store.db import get_engine
from tests.api.conftest import OTHER_HOSPITAL, bearer, wait_for_status
from tests.support.letter_variants import INS_SYSTEM, ins_of, letter_variant
from tests.support.paths import FIXTURES

CDA = {"Content-Type": "application/hl7-cda+xml"}
REVIEW = "https://liaison.github.io/fhir/CodeSystem/task-kind|discharge-review"
COORDINATOR = {"cpts": "CPTS-PARIS-CENTRE"}


def send(client: TestClient, letter: bytes, hospital: dict[str, str]) -> None:
    answer = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
    assert answer.status_code == 202, answer.text
    wait_for_status(client, answer.headers["Location"], hospital, "pushed")


def reviews(client: TestClient, n: int) -> list[dict[str, Any]]:
    found = client.get("/fhir/Task", headers=bearer(issue_token("system")), params={
        "patient.identifier": f"{INS_SYSTEM}|{ins_of(n)}", "code": REVIEW}).json()
    return [e["resource"] for e in found.get("entry") or []]


@pytest.fixture
def stay(liaison: Callable[..., Any], hospital: dict[str, str]) -> Iterator[TestClient]:
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")  # the CPTS
    with liaison() as client:
        send(client, letter_variant(701), hospital)
        yield client


def test_a_stay_gets_its_review_due_a_week_after_discharge(stay: TestClient) -> None:
    (task,) = reviews(stay, 701)
    assert task["status"] == "requested"
    assert task["restriction"]["period"]["end"].startswith("2019-12-10")
    assert task["focus"]["reference"].startswith("CarePlan/")
    assert [i["type"]["coding"][0]["code"] for i in task["input"]] == [
        "gp-appointment", "nurse-visiting", "drugs-obtained", "letter-read"]
    owner = stay.get(f"/fhir/{task['owner']['reference']}",
                     headers=bearer(issue_token("system"))).json()
    assert {"system": "urn:liaison:cpts", "value": "CPTS-PARIS-CENTRE"} in owner["identifier"]
    page = stay.get("/coordination/page", headers=bearer(issue_token("coordinator",
                                                                     **COORDINATOR))).text
    assert "Revue J+7 :" in page and "en retard, prévue le mardi 10 décembre 2019, 13 h 30" in page


def test_a_coordinator_of_the_cpts_completes_it_and_nobody_else(
        stay: TestClient, hospital: dict[str, str]) -> None:
    (task,) = reviews(stay, 701)
    answers = {"checks": {"gp-appointment": True, "letter-read": True},
               "note": "RDV le 12, IDEL passe chaque matin."}
    url = f"/coordination/review/{task['id']}"
    for who, token in {
        "another CPTS's coordinator": issue_token("coordinator", cpts="CPTS-AILLEURS"),
        "the GP": issue_token("professional", idnat="801984758437"),
        "the hospital": issue_token("hospital", organization="1750803447"),
        "another hospital": issue_token("hospital", organization=OTHER_HOSPITAL),
    }.items():
        refused = stay.post(url, headers=bearer(token), json=answers)
        assert refused.status_code == 403, (who, refused.text)
    coordinator = bearer(issue_token("coordinator", **COORDINATOR))
    assert stay.post("/coordination/review/unknown", headers=coordinator,
                     json=answers).status_code == 404
    assert stay.post(url, headers=coordinator,
                     json={"checks": {"made-up": True}}).status_code == 400

    done = stay.post(url, headers=coordinator, json=answers)
    assert done.status_code == 200, done.text
    (task,) = reviews(stay, 701)
    assert task["status"] == "completed"
    assert {o["type"]["coding"][0]["code"]: o["valueBoolean"] for o in task["output"]} == {
        "gp-appointment": True, "nurse-visiting": False, "drugs-obtained": False,
        "letter-read": True}
    assert task["note"][-1]["authorString"] == "Coordination CPTS-PARIS-CENTRE"
    assert task["note"][-1]["text"] == "RDV le 12, IDEL passe chaque matin."
    assert task["executionPeriod"]["end"]
    assert stay.post(url, headers=coordinator, json=answers).status_code == 409
    page = stay.get("/coordination/page", headers=coordinator).text
    assert "faite le" in page and "par Coordination CPTS-PARIS-CENTRE" in page

    # a corrected letter of the same stay keeps the review as it is
    send(stay, letter_variant(701, version=2), hospital)
    (after,) = reviews(stay, 701)
    assert after["status"] == "completed"
