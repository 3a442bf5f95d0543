"""What a coordinator wrote on a stay's plan from the page — a note, an item marked done —
survives the stay's corrected letter: a reader never sees a done item to organise again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from adapter.auth import issue_token
from adapter.directory.importer import import_path
from adapter.store.db import get_engine
from tests.api.conftest import bearer, wait_for_status
from tests.support.letter_variants import INS_SYSTEM, ins_of, letter_variant
from tests.support.paths import FIXTURES

CDA = {"Content-Type": "application/hl7-cda+xml"}


def send(client: TestClient, letter: bytes, hospital: dict[str, str]) -> None:
    answer = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
    assert answer.status_code == 202, answer.text
    wait_for_status(client, answer.headers["Location"], hospital, "pushed")


def the_plan(client: TestClient, n: int) -> dict[str, Any]:
    (entry,) = client.get("/fhir/CarePlan", headers=bearer(issue_token("system")), params={
        "patient.identifier": f"{INS_SYSTEM}|{ins_of(n)}"}).json()["entry"]
    return dict(entry["resource"])


def test_a_corrected_letter_keeps_the_coordinators_note_and_done_item(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")
    coordinator = bearer(issue_token("coordinator", cpts="CPTS-PARIS-CENTRE",
                                     idnat="810000000017"))
    with liaison() as client:
        send(client, letter_variant(951), hospital)
        plan = the_plan(client, 951)
        scan = plan["activity"][1]["reference"]["reference"]  # a ServiceRequest
        for url, body in ((f"/coordination/plans/{plan['id']}/notes",
                           {"text": "IDEL prévenue, passe demain"}),
                          (f"/coordination/plans/{plan['id']}/activities/1/done", {})):
            done = client.post(url, json=body, headers=coordinator)
            assert done.status_code == 200, done.text
        send(client, letter_variant(951, version=2), hospital)
        corrected = the_plan(client, 951)
        assert "IDEL prévenue, passe demain" in [n["text"] for n in corrected["note"]]
        assert corrected["activity"][1]["progress"][-1]["text"] == "Fait"
        request = client.get(f"/fhir/{scan}", headers=bearer(issue_token("system"))).json()
        assert request["status"] == "completed"
