"""The coordination routes through the real app: consent, Subscriptions, living directory."""

from __future__ import annotations

from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import get_settings
from adapter.ingest.delivery import delivery_pusher
from adapter.record.repository import Repository
from adapter.store.db import get_engine

TEST_INS = "urn:oid:1.2.250.1.213.1.4.10"


def _client() -> TestClient:
    return TestClient(create_app(get_settings()))


def _auth(kind: str, **claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(kind, **claims)}"}


def test_opposition_through_the_api_is_registered_and_written_to_the_record_as_consent() -> None:
    client = _client()
    body = {"patient": {"system": TEST_INS, "value": "279035121518989"}, "decision": "oppose",
            "reason": "the patient asked at the discharge consultation"}
    answer = client.post("/coordination/consent", json=body, headers=_auth("system"))
    assert answer.status_code == 201, answer.text
    assert answer.json()["resourceType"] == "Consent"
    assert answer.json()["status"] == "active"
    shown = client.get(
        "/coordination/consent",
        params={"patient": f"{TEST_INS}|279035121518989"},
        headers=_auth("hospital", organization="1750803447"),
    ).json()
    assert shown["opposed"] is True
    # a professional who does not care for the patient can neither see, file nor lift it
    stranger = _auth("professional", idnat="809999999999")
    assert client.get("/coordination/consent", params={"patient": f"{TEST_INS}|279035121518989"},
                      headers=stranger).status_code == 403
    for decision in ("oppose", "withdraw"):
        filed = client.post("/coordination/consent", json=dict(body, decision=decision),
                            headers=stranger)
        assert filed.status_code == 403
    assert client.get("/coordination/audit", headers=_auth("hospital", organization="1")
                      ).status_code == 403
    engine = get_engine()
    assert delivery_pusher(engine, threads=1).drain(timeout=20)
    consents = Repository(engine).search("Consent", [])["entry"]
    [consent] = [e["resource"] for e in consents if e["resource"]["resourceType"] == "Consent"]
    assert consent["status"] == "active"
    assert consent["provision"]["type"] == "deny"
    # withdrawn: the same Consent becomes inactive (conditional update, one per patient)
    body["decision"] = "withdraw"
    assert (
        client.post("/coordination/consent", json=body, headers=_auth("system")).status_code == 201
    )
    assert delivery_pusher(engine, threads=1).drain(timeout=20)
    consents = Repository(engine).search("Consent", [])["entry"]
    statuses = [
        e["resource"]["status"] for e in consents if e["resource"]["resourceType"] == "Consent"
    ]
    assert statuses == ["inactive"]


def test_bad_consent_requests_get_an_operation_outcome() -> None:
    client = _client()
    answer = client.post(
        "/coordination/consent", json={"ins": "1", "decision": "maybe"}, headers=_auth("system")
    )
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert client.post("/coordination/consent", json={"decision": "oppose"}).status_code == 401


def test_subscription_lifecycle_over_http() -> None:
    client = _client()
    nurse = _auth("professional", idnat="801234567896")
    resource = {
        "resourceType": "Subscription", "status": "requested", "reason": "mes patients",
        "criteria": "Communication?recipient.identifier=urn:oid:1.2.250.1.71.4.2.1|801234567896",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook",
                    "payload": "application/fhir+json"},
    }  # fmt: skip
    created = client.post("/fhir/Subscription", json=resource, headers=nurse)
    assert created.status_code == 201, created.text
    subscription = created.json()
    assert subscription["status"] == "active"
    assert created.headers["Location"].endswith(subscription["id"])
    read = client.get(f"/fhir/Subscription/{subscription['id']}", headers=nurse)
    assert read.json()["criteria"] == resource["criteria"]
    other = _auth("professional", idnat="801111111111")
    assert (
        client.get(
            f"/fhir/Subscription/{subscription['id']}", headers=other
        ).status_code
        == 403
    )
    assert client.get("/fhir/Subscription", headers=other).json()["total"] == 0
    moved = dict(resource, id=subscription["id"],
                 channel=dict(resource["channel"], endpoint="http://127.0.0.1:9/other"))
    updated = client.put(f"/fhir/Subscription/{subscription['id']}", json=moved, headers=nurse)
    assert updated.status_code == 200, updated.text
    assert updated.json()["channel"]["endpoint"] == "http://127.0.0.1:9/other"
    assert client.put(f"/fhir/Subscription/{subscription['id']}", json=moved,
                      headers=other).status_code == 403
    mine = client.get("/fhir/Subscription", params={"criteria": "communication?", "status":
                                                     "active"}, headers=nurse).json()
    assert [e["resource"]["id"] for e in mine["entry"]] == [subscription["id"]]
    assert client.get("/fhir/Subscription", params={"criteria": "CarePlan"},
                      headers=nurse).json()["total"] == 0
    assert client.get("/fhir/Subscription", params={"colour": "blue"},
                      headers=nurse).status_code == 400
    deleted = client.delete(f"/fhir/Subscription/{subscription['id']}", headers=nurse)
    assert deleted.status_code == 204
    read = client.get(f"/fhir/Subscription/{subscription['id']}", headers=nurse)
    assert read.json()["status"] == "off"
    bad = dict(resource, criteria="Patient?name=x")
    refused = client.post("/fhir/Subscription", json=bad, headers=nurse)
    assert refused.status_code == 400
    assert "not supported" in refused.json()["issue"][0]["diagnostics"]


def test_living_directory_finds_who_can_take_the_patient_within_24h() -> None:
    client = _client()
    nurse = _auth("professional", idnat="810000000041")
    mine = {
        "idnat": "810000000041",
        "available_within": "24h",
        "skills": ["wound-care", "picc-line"],
        "accepts_new_patients": True,
        "home_visits": True,
        "postcodes": "75005-75015",
    }
    assert client.put("/coordination/availability", json=mine, headers=nurse).status_code == 200
    someone_else = dict(mine, idnat="810000000099")
    assert (
        client.put("/coordination/availability", json=someone_else, headers=nurse).status_code
        == 403
    )
    coordinator = _auth("coordinator", cpts="CPTS-PARIS-CENTRE")
    csv = (
        "idnat_ps,accepts_new_patients,home_visits,available_within,skills,postcodes\n"
        "810000000058,yes,yes,72h,wound-care,75\n"
        "810000000066,no,yes,12h,wound-care,75\n"
        "810000000074,yes,no,soon,wound-care,75\n"
    )
    imported = client.post(
        "/coordination/availability/csv", content=csv, headers=coordinator
    ).json()
    assert imported["saved"] == 2
    assert "line 4" in imported["rejected"][0]
    found = client.get(
        "/coordination/fhir/PractitionerRole",
        params={"available-within": "24h", "skill": "wound-care", "address-postalcode": "75007"},
        headers=coordinator,
    ).json()
    who = [e["resource"]["practitioner"]["identifier"]["value"] for e in found["entry"]]
    # 810000000058 needs 72 h, 810000000066 takes no new patients
    assert who == ["810000000041"]
    role = found["entry"][0]["resource"]
    assert {s["coding"][0]["code"] for s in role["specialty"]} == {"wound-care", "picc-line"}
    outside = client.get(
        "/coordination/fhir/PractitionerRole",
        params={"available-within": "24h", "address-postalcode": "92100"},
        headers=coordinator,
    ).json()
    assert outside["total"] == 0
