"""The patient's thread through `/fhir`: the care team and the CPTS coordinator write messages
about the patient to members of its care team; the members read them; nobody else reads or
writes, and nobody writes as someone else or widens who reads (attacks, each refused)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient

from adapter.auth import issue_token
from adapter.directory.importer import import_path
from adapter.store.db import get_engine
from tests.api.conftest import OTHER_HOSPITAL, bearer, wait_for_status
from tests.support.letter_variants import INS_SYSTEM, ins_of, letter_variant
from tests.support.paths import FIXTURES
from tests.support.servers import free_port, serve_app

CDA = {"Content-Type": "application/hl7-cda+xml"}
IDNAT = "urn:oid:1.2.250.1.71.4.2.1"
GP, NURSE, OUTSIDER = "801984758437", "801234567896", "899999999990"
THREAD = "https://liaison.github.io/fhir/CodeSystem/communication-kind|care-team-thread"


def professional(idnat: str, **claims: Any) -> dict[str, str]:
    return bearer(issue_token("professional", idnat=idnat, **claims))


@pytest.fixture
def patient(liaison: Callable[..., Any], hospital: dict[str, str]) -> Iterator[
        tuple[TestClient, str, dict[str, str]]]:
    """The app with one letter pushed; (client, Patient id, member references by idNat_PS)."""
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")  # the CPTS
    with liaison() as client:
        answer = client.post("/discharge-letters", content=letter_variant(601),
                             headers={**hospital, **CDA})
        assert answer.status_code == 202, answer.text
        wait_for_status(client, answer.headers["Location"], hospital, "pushed")
        yield client, *_team(client, 601)


def _team(client: TestClient, n: int) -> tuple[str, dict[str, str]]:
    system = bearer(issue_token("system"))
    found = client.get("/fhir/CareTeam", headers=system, params={
        "patient.identifier": f"{INS_SYSTEM}|{ins_of(n)}", "_include": "CareTeam:participant",
        "_include:iterate": "PractitionerRole:practitioner"}).json()
    resources = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
                 for e in found["entry"]}
    team = next(r for r in resources.values() if r["resourceType"] == "CareTeam")
    members: dict[str, str] = {}
    for participant in team["participant"]:
        reference = participant["member"]["reference"]
        member = resources.get(reference, {})
        holder = resources.get((member.get("practitioner") or {}).get("reference", ""), member)
        for identifier in holder.get("identifier") or []:
            if identifier.get("system") == IDNAT:
                members[identifier["value"]] = reference
    return team["subject"]["reference"].split("/")[1], members


def message(patient_id: str, *recipients: str, text: str = "Passage infirmier demain ?",
            **more: Any) -> dict[str, Any]:
    return {"resourceType": "Communication", "subject": {"reference": f"Patient/{patient_id}"},
            "recipient": [{"reference": r} for r in recipients],
            "payload": [{"contentString": text}], **more}


def thread_of(client: TestClient, patient_id: str, reader: dict[str, str]) -> list[dict]:
    answer = client.get("/fhir/Communication", headers=reader, params={
        "subject": f"Patient/{patient_id}", "category": THREAD})
    assert answer.status_code == 200, answer.text
    return [e["resource"] for e in answer.json().get("entry") or []]


@contextmanager
def endpoint() -> Iterator[tuple[str, list[bytes], threading.Event]]:
    received: list[bytes] = []
    arrived = threading.Event()
    hook = FastAPI()

    @hook.api_route("/{path:path}", methods=["POST", "PUT"])
    async def told(path: str, request: Request) -> Response:
        received.append(await request.body())
        arrived.set()
        return Response(status_code=200)

    port = free_port()
    with serve_app(hook, port=port):
        yield f"http://127.0.0.1:{port}/hook", received, arrived


def test_the_gp_writes_to_the_nurse_who_is_told_reads_it_and_answers(
        patient: tuple[TestClient, str, dict[str, str]]) -> None:
    client, patient_id, members = patient
    with endpoint() as (url, received, arrived):
        subscription = {"resourceType": "Subscription", "status": "requested",
                        "reason": "messages for me",
                        "criteria": f"Communication?recipient.identifier={IDNAT}|{NURSE}",
                        "channel": {"type": "rest-hook", "endpoint": url,
                                    "payload": "application/fhir+json"}}
        made = client.post("/fhir/Subscription", json=subscription, headers=professional(NURSE))
        assert made.status_code == 201, made.text

        written = client.post("/fhir/Communication", headers=professional(GP),
                              json=message(patient_id, members[NURSE]))
        assert written.status_code == 201, written.text
        assert written.headers["Location"].split("/fhir/")[1].startswith("Communication/")
        sent = written.json()
        assert sent["sender"] == {"reference": members[GP]}
        assert sent["status"] == "completed" and sent["sent"]

        assert arrived.wait(10), "the nurse's subscription was not told"
        assert sent["id"].encode() in received[0]

    seen = thread_of(client, patient_id, professional(NURSE))
    assert [m["payload"][0]["contentString"] for m in seen] == ["Passage infirmier demain ?"]
    answer = client.post("/fhir/Communication", headers=professional(NURSE), json=message(
        patient_id, members[GP], text="Oui, à 9 h.",
        inResponseTo=[{"reference": f"Communication/{sent['id']}"}]))
    assert answer.status_code == 201, answer.text
    assert len(thread_of(client, patient_id, professional(GP))) == 2
    # no recipient: the whole care team but the writer
    to_all = {k: v for k, v in message(patient_id, text="Sortie bien passée.").items()
              if k != "recipient"}
    told_all = client.post("/fhir/Communication", headers=professional(GP), json=to_all)
    assert told_all.status_code == 201, told_all.text
    told = {r["reference"] for r in told_all.json()["recipient"]}
    assert members[GP] not in told and set(members.values()) - {members[GP]} <= told


def test_the_cpts_coordinator_writes_and_reads_the_thread(
        patient: tuple[TestClient, str, dict[str, str]]) -> None:
    client, patient_id, members = patient
    coordinator = bearer(issue_token("coordinator", cpts="CPTS-PARIS-CENTRE"))
    written = client.post("/fhir/Communication", headers=coordinator,
                          json=message(patient_id, members[GP], text="Visite J+7 prévue."))
    assert written.status_code == 201, written.text
    assert written.json()["sender"] == {"display": "Coordination CPTS-PARIS-CENTRE"}
    assert len(thread_of(client, patient_id, coordinator)) == 1


def test_outsiders_neither_read_nor_write_the_thread(
        patient: tuple[TestClient, str, dict[str, str]], hospital: dict[str, str]) -> None:
    client, patient_id, members = patient
    written = client.post("/fhir/Communication", headers=professional(GP),
                          json=message(patient_id, members[NURSE]))
    assert written.status_code == 201, written.text
    message_id = written.json()["id"]
    outsiders = {
        "a professional outside the care team": professional(OUTSIDER),
        "another CPTS's coordinator": bearer(issue_token("coordinator", cpts="CPTS-AILLEURS")),
        "another hospital": bearer(issue_token("hospital", organization=OTHER_HOSPITAL)),
        "the hospital that sent the letter": hospital,
    }
    for who, token in outsiders.items():
        attempt = client.post("/fhir/Communication", headers=token,
                              json=message(patient_id, members[NURSE], text="je m'invite"))
        assert attempt.status_code == 403, (who, attempt.text)
        assert thread_of(client, patient_id, token) == [], who
        assert client.get(f"/fhir/Communication/{message_id}", headers=token).status_code \
            == 404, who
    # a member whose token cannot create (read-only scope) writes nothing either
    read_only = professional(GP, scope="user/*.rs")
    assert client.post("/fhir/Communication", headers=read_only,
                       json=message(patient_id, members[NURSE])).status_code == 403
    assert len(thread_of(client, patient_id, professional(NURSE))) == 1


def test_a_member_writes_as_themselves_to_the_care_team_about_this_patient_only(
        patient: tuple[TestClient, str, dict[str, str]], hospital: dict[str, str]) -> None:
    client, patient_id, members = patient
    gp = professional(GP)
    as_nurse = client.post("/fhir/Communication", headers=gp, json=message(
        patient_id, members[GP], sender={"reference": members[NURSE]}))
    assert as_nurse.status_code == 403, as_nurse.text
    to_outsider = client.post("/fhir/Communication", headers=gp, json=message(
        patient_id, "Practitioner/someone-else"))
    assert to_outsider.status_code == 422, to_outsider.text
    # a tag that would grant another hospital the message is not taken
    tagged = client.post("/fhir/Communication", headers=gp, json=message(
        patient_id, members[NURSE], meta={"tag": [
            {"system": "urn:liaison:source-organization", "code": OTHER_HOSPITAL}]}))
    assert tagged.status_code == 400, tagged.text
    assert "meta" in tagged.json()["issue"][0]["diagnostics"]

    # another patient of the same GP: a message cannot answer across patients
    answer = client.post("/discharge-letters", content=letter_variant(602),
                         headers={**hospital, **CDA})
    wait_for_status(client, answer.headers["Location"], hospital, "pushed")
    other_id, other_members = _team(client, 602)
    there = client.post("/fhir/Communication", headers=gp,
                        json=message(other_id, other_members[NURSE]))
    assert there.status_code == 201, there.text
    across = client.post("/fhir/Communication", headers=gp, json=message(
        patient_id, members[NURSE], inResponseTo=[
            {"reference": f"Communication/{there.json()['id']}"}]))
    assert across.status_code == 422, across.text
    # nor address this patient's care team about the other patient
    mixed = client.post("/fhir/Communication", headers=gp,
                        json=message(other_id, members[NURSE]))
    if members[NURSE] != other_members[NURSE]:
        assert mixed.status_code == 422, mixed.text
