"""Who may read what, through real HTTP with real tokens."""

from __future__ import annotations

import time

import httpx
import pytest

from adapter.auth import issue_token
from adapter.record import audit
from adapter.store.record_tables import RESTRICTED_READER_TAG
from tests.record.bundles import INS, PCP, letter_bundle, location, post_bundle
from tests.record.conftest import client_for

PATIENT = f"{INS}|279035121518989"
STRANGER = "809999999999"


def _careplans(client: httpx.Client, identifier: str = PATIENT) -> dict:
    response = client.get("CarePlan", params={"patient.identifier": identifier,
                                              "_include": "CarePlan:care-team"})
    assert response.status_code == 200, response.text
    return response.json()


def test_no_token_gets_401_with_an_operation_outcome(anonymous: httpx.Client):
    response = anonymous.get("CarePlan")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["issue"][0]["code"] == "login"
    assert anonymous.get("metadata").status_code == 200  # the capability statement is public


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_an_invalid_token_gets_401(base_url: str, token: str):
    with client_for(base_url, token) as client:
        assert client.get("CarePlan").status_code == 401


def test_an_expired_token_gets_401(base_url: str):
    expired = issue_token("professional", idnat=PCP, lifetime=-120)
    with client_for(base_url, expired) as client:
        assert client.get("CarePlan").status_code == 401


def test_a_token_signed_by_another_key_gets_401(base_url: str, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from adapter.config import get_settings

    monkeypatch.setenv("LIAISON_DATA_DIR", str(tmp_path / "elsewhere"))
    get_settings.cache_clear()
    foreign = issue_token("system")
    monkeypatch.undo()
    get_settings.cache_clear()
    with client_for(base_url, foreign) as client:
        assert client.get("CarePlan").status_code == 401


def _forged(header: dict, secret: bytes) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = {"iss": "liaison-local", "exp": int(time.time()) + 600, "kind": "system"}
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{b64(signature)}"


@pytest.mark.parametrize("with_kid", [True, False])
def test_a_token_hmac_signed_with_the_public_key_gets_401(base_url: str, with_kid: bool):
    from adapter.auth.keys import local_private_key

    key = local_private_key()
    header = {"alg": "HS256", **({"kid": key.thumbprint()} if with_kid else {})}
    with client_for(base_url, _forged(header, key.as_pem(private=False))) as client:
        response = client.get("CarePlan")
    assert response.status_code == 401
    assert response.json()["issue"][0]["code"] == "login"


def test_the_care_team_member_finds_the_care_plan_and_others_see_nothing(
        writer: httpx.Client, professional):  # type: ignore[no-untyped-def]
    answer = post_bundle(writer, letter_bundle())
    member, stranger = professional(PCP), professional(STRANGER)
    found = _careplans(member)
    assert found["total"] == 1
    assert [e["search"]["mode"] for e in found["entry"]] == ["match", "include"]
    assert _careplans(stranger)["total"] == 0
    assert stranger.get("CarePlan", params={"_summary": "count"}).json()["total"] == 0
    care_plan = location(answer, "CarePlan")
    assert member.get(care_plan).status_code == 200
    # a resource the caller may not read answers exactly as one that does not exist
    denied = stranger.get(care_plan)
    unknown = stranger.get("CarePlan/" + "0" * 36)
    assert denied.status_code == unknown.status_code == 404
    assert denied.json() == {**unknown.json(), "issue": [{
        **unknown.json()["issue"][0],
        "diagnostics": unknown.json()["issue"][0]["diagnostics"].replace("0" * 36,
                                                                          care_plan[9:])}]}
    assert stranger.get(location(answer, "Patient")).status_code == 404
    assert stranger.get(f"{care_plan}/_history").status_code == 404
    assert stranger.get(f"{care_plan}/_history/1").status_code == 404
    # directory-like resources are for every authenticated reader
    assert stranger.get(location(answer, "Practitioner")).status_code == 200


def test_membership_through_a_practitioner_role_and_by_rpps_counts(
        writer: httpx.Client, professional):  # type: ignore[no-untyped-def]
    post_bundle(writer, letter_bundle(via_role=True, ins="1"))
    post_bundle(writer, letter_bundle(rpps_only=True, ins="2", set_id="set-2"))
    member = professional(PCP)
    assert _careplans(member, f"{INS}|1")["total"] == 1
    assert _careplans(member, f"{INS}|2")["total"] == 1


def test_a_participant_whose_period_has_ended_reads_nothing_more(
        writer: httpx.Client, professional):  # type: ignore[no-untyped-def]
    post_bundle(writer, letter_bundle(team=(PCP, STRANGER), ended=(STRANGER,), recipients=()))
    assert _careplans(professional(PCP))["total"] == 1
    assert _careplans(professional(STRANGER))["total"] == 0


def test_a_professional_removed_from_the_care_team_loses_access(
        writer: httpx.Client, professional):  # type: ignore[no-untyped-def]
    post_bundle(writer, letter_bundle(team=(PCP, STRANGER), recipients=()))
    assert _careplans(professional(STRANGER))["total"] == 1
    post_bundle(writer, letter_bundle(version=2, team=(PCP,), recipients=()))
    assert _careplans(professional(STRANGER))["total"] == 0


def test_an_inactive_or_deleted_care_team_grants_nothing(
        writer: httpx.Client, system: httpx.Client, professional):  # type: ignore[no-untyped-def]
    answer = post_bundle(writer, letter_bundle(recipients=()))
    care_team_path = location(answer, "CareTeam")
    care_team = system.get(care_team_path).json()
    member = professional(PCP)
    assert _careplans(member)["total"] == 1
    system.put(care_team_path, json={**care_team, "status": "inactive"})
    assert _careplans(member)["total"] == 0
    system.put(care_team_path, json={**care_team, "status": "active"})
    assert _careplans(member)["total"] == 1
    system.delete(care_team_path)
    assert _careplans(member)["total"] == 0


def test_a_practitioner_whose_identifier_changes_moves_the_access(
        writer: httpx.Client, system: httpx.Client, professional):  # type: ignore[no-untyped-def]
    answer = post_bundle(writer, letter_bundle(team=(STRANGER,), recipients=()))
    practitioner_path = next(
        e["response"]["location"].split("/_history")[0] for e in answer["entry"]
        if e["response"]["location"].startswith("Practitioner/")
        and STRANGER[-3:] in system.get(e["response"]["location"]).json()["name"][0]["family"])
    practitioner = system.get(practitioner_path).json()
    assert _careplans(professional(STRANGER))["total"] == 1
    practitioner["identifier"] = [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "805555555555"}]
    assert system.put(practitioner_path, json=practitioner).status_code == 200
    assert _careplans(professional(STRANGER))["total"] == 0
    assert _careplans(professional("805555555555"))["total"] == 1


def test_a_recipient_outside_the_care_team_reads_only_their_communication(
        writer: httpx.Client, professional):  # type: ignore[no-untyped-def]
    post_bundle(writer, letter_bundle(team=(PCP,), recipients=(PCP, STRANGER)))
    recipient = professional(STRANGER)
    messages = recipient.get("Communication").json()
    assert messages["total"] == 1
    assert _careplans(recipient)["total"] == 0
    pcp_messages = professional(PCP).get("Communication", params={"recipient.identifier":
                                                                   f"urn:oid:1.2.250.1.71.4.2.1|{PCP}"})
    assert pcp_messages.json()["total"] == 1


def test_a_hospital_reads_only_the_patients_it_sent_letters_for(
        writer: httpx.Client, base_url: str):
    with client_for(base_url, issue_token("hospital", organization="1750000001")) as first, \
            client_for(base_url, issue_token("hospital", organization="1750000002")) as second:
        post_bundle(writer, letter_bundle(ins="1", hospital="1750000001"))
        post_bundle(writer, letter_bundle(ins="2", hospital="1750000002", set_id="set-2"))
        assert _careplans(first, f"{INS}|1")["total"] == 1
        assert _careplans(first, f"{INS}|2")["total"] == 0
        assert second.get("Patient", params={"_summary": "count"}).json()["total"] == 1


def test_a_hospital_reads_the_shared_care_team_but_not_another_hospitals_letter(
        writer: httpx.Client, base_url: str):
    """One letter naming an INS opens the patient's identity and care team to its sender,
    never what other hospitals' letters produced."""
    with client_for(base_url, issue_token("hospital", organization="1750000001")) as first, \
            client_for(base_url, issue_token("hospital", organization="1750000002")) as second:
        post_bundle(writer, letter_bundle(ins="1", hospital="1750000001", family="Secret"))
        post_bundle(writer, letter_bundle(ins="1", hospital="1750000002", set_id="set-2"))
        for kind in ("CarePlan", "DocumentReference", "Communication", "Provenance"):
            mine = second.get(kind, params={"_summary": "count"}).json()["total"]
            assert mine == 1, kind  # its own letter's, not the first hospital's
        teams = second.get("CareTeam", params={"patient.identifier": f"{INS}|1"}).json()
        assert teams["total"] == 2  # the patient's care team, whichever letter built it
        assert second.get("Patient", params={"identifier": f"{INS}|1"}).json()["total"] == 1
        assert first.get("CarePlan", params={"_summary": "count"}).json()["total"] == 1


def test_hospitals_and_professionals_cannot_write_the_record(
        writer: httpx.Client, base_url: str, professional):  # type: ignore[no-untyped-def]
    """Grants come from liaison's facts only: a hospital cannot write a DocumentReference or a
    CareTeam of its own to open another hospital's patient, nor overwrite or delete anything;
    a refusal says the same whether the target exists or not."""
    answer = post_bundle(writer, letter_bundle(ins="1", hospital="1750000001", family="Secret"))
    plan_path = location(answer, "CarePlan")
    with client_for(base_url, issue_token("hospital", organization="1750000002")) as second:
        plan = writer.get(plan_path).json()
        document = {"resourceType": "DocumentReference", "status": "current",
                    "subject": {"reference": location(answer, "Patient")},
                    "custodian": {"reference": location(answer, "Organization")},
                    "content": [{"attachment": {"contentType": "text/plain"}}]}
        attempts = [
            second.post("DocumentReference", json=document),
            second.post("", json=letter_bundle(ins="1", hospital="1750000002", set_id="x")),
            second.put(plan_path, json={**plan, "status": "revoked"}),
            second.delete(plan_path),
            second.put("CarePlan", params={"identifier": "urn:liaison:careplan|set-1"},
                       json={**plan, "status": "revoked"}),
            second.put("CarePlan", params={"identifier": "urn:liaison:careplan|nothing"},
                       json={**plan, "status": "revoked"}),
            second.post("Patient", json={"resourceType": "Patient"},
                        headers={"If-None-Exist": f"identifier={INS}|1"}),
            professional(PCP).post("CareTeam", json={"resourceType": "CareTeam"}),
        ]
        for attempt in attempts:
            assert attempt.status_code == 403, attempt.text
            assert "Secret" not in attempt.text and plan["id"] not in attempt.text
        assert len({attempt.text for attempt in attempts[2:7]}) == 1  # no oracle
        assert second.get("Patient", params={"identifier": f"{INS}|1"}).json()["total"] == 0
        assert second.get(plan_path).status_code == 404
    assert writer.get(plan_path).json()["status"] == "active"  # untouched
    assert writer.get("DocumentReference", params={"_summary": "count"}).json()["total"] == 1


def test_a_coordinator_reads_the_patients_of_its_cpts(writer: httpx.Client, base_url: str):
    cpts = {"resourceType": "Organization", "name": "CPTS Test",
            "identifier": [{"system": "urn:liaison:cpts", "value": "CPTS-42"}]}
    created = writer.post("Organization", json=cpts)
    assert created.status_code == 201
    bundle = letter_bundle()
    care_team = next(e["resource"] for e in bundle["entry"]
                     if e["resource"]["resourceType"] == "CareTeam")
    care_team["managingOrganization"].append(
        {"reference": f"Organization/{created.json()['id']}"})
    post_bundle(writer, bundle)
    with client_for(base_url, issue_token("coordinator", cpts="CPTS-42")) as coordinator, \
            client_for(base_url, issue_token("coordinator", cpts="CPTS-7")) as other:
        assert _careplans(coordinator)["total"] == 1
        assert _careplans(other)["total"] == 0


def test_only_liaison_and_system_tokens_write(professional, base_url: str):  # type: ignore[no-untyped-def]
    patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": "9"}]}
    assert professional(PCP).post("Patient", json=patient).status_code == 403
    assert professional(PCP).post("", json=letter_bundle()).status_code == 403
    with client_for(base_url, issue_token("coordinator", cpts="C")) as coordinator:
        assert coordinator.post("Patient", json=patient).status_code == 403
    with client_for(base_url, issue_token("hospital", organization="1750000001")) as hospital:
        assert hospital.post("Patient", json=patient).status_code == 403
    read_only = issue_token("system", scope="system/*.rs")
    with client_for(base_url, read_only) as system:
        assert system.post("Patient", json=patient).status_code == 403
    with client_for(base_url, issue_token("system")) as system:
        assert system.post("Patient", json=patient).status_code == 201


def test_every_interaction_is_audited_without_clinical_content(
        writer: httpx.Client, professional, record_app,  # type: ignore[no-untyped-def]
        anonymous: httpx.Client):
    answer = post_bundle(writer, letter_bundle())
    stranger = professional(STRANGER)
    stranger.get(location(answer, "CarePlan"))
    _careplans(professional(PCP))
    engine = record_app.state.record_repository.engine
    audit.flush()
    rows = audit.trail(engine)
    summary = [(r.actor_kind, r.actor, r.action, r.resource_type, r.outcome) for r in rows]
    assert ("system", "system:local", "transaction", None, 200) in summary
    assert ("system", "system:local", "put", "CarePlan", 201) in summary
    assert ("professional", STRANGER, "read", "CarePlan", 404) in summary
    assert ("professional", PCP, "search", "CarePlan", 200) in summary
    anonymous.get("CarePlan")
    audit.flush()
    rows = audit.trail(engine)
    assert rows[-1].actor_kind == "anonymous" and rows[-1].outcome == 401
    dumped = repr([r._asdict() for r in rows])
    assert "279035121518989" not in dumped and "Durand" not in dumped


def test_tokens_from_an_external_issuer_are_checked_against_its_jwks(
        base_url: str, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """A Pro Santé Connect-like issuer: its own key, published as a JWKS on loopback."""
    import warnings

    from fastapi import FastAPI

    from adapter.auth import keys
    from adapter.config import get_settings
    from tests.support.servers import serve_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from authlib.jose import JsonWebKey, jwt

    issuer_key = JsonWebKey.generate_key("EC", "P-256", is_private=True)
    public = {**issuer_key.as_dict(is_private=False), "kid": "psc-1"}
    jwks_app = FastAPI()
    jwks_app.get("/jwks")(lambda: {"keys": [public]})

    def psc_token(idnat: str, issuer: str) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "sub": "x", "iat": now, "exp": now + 60, "aud": "liaison-psc",
                  "SubjectNameID": idnat, "scope": "openid scope_all"}
        return jwt.encode({"alg": "ES256", "kid": "psc-1"}, claims, issuer_key).decode()

    with serve_app(jwks_app) as jwks_root:
        monkeypatch.setenv("LIAISON_JWKS_URL", f"{jwks_root}/jwks")
        monkeypatch.setenv("LIAISON_TOKEN_ISSUER", "https://psc.example")
        monkeypatch.setenv("LIAISON_TOKEN_AUDIENCE", "liaison-psc")
        get_settings.cache_clear()
        keys.forget_external_keys()
        with client_for(base_url, issue_token("system")) as writer:
            post_bundle(writer, letter_bundle())
        with client_for(base_url, psc_token(PCP, "https://psc.example")) as member:
            assert _careplans(member)["total"] == 1
        with client_for(base_url, psc_token(PCP, "https://other.example")) as wrong_issuer:
            assert wrong_issuer.get("CarePlan").status_code == 401
    keys.forget_external_keys()


def test_with_an_audience_set_tokens_issued_for_another_service_get_401(
        base_url: str, monkeypatch):  # type: ignore[no-untyped-def]
    """An issuer such as Pro Santé Connect signs tokens for many services: one meant for
    another service (its `aud`) must not open liaison's record."""
    from adapter.auth import verify_token
    from adapter.auth.keys import local_private_key
    from adapter.config import get_settings

    monkeypatch.setenv("LIAISON_TOKEN_AUDIENCE", "https://liaison.example")
    get_settings.cache_clear()
    key = local_private_key()

    def signed(**claims: object) -> str:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from authlib.jose import JsonWebKey, jwt
        now = int(time.time())
        payload = {"iss": "liaison-local", "exp": now + 60, "SubjectNameID": PCP, **claims}
        # liaison's key as another JOSE implementation reads it from its PEM
        pem_key = JsonWebKey.import_key(key.as_pem(private=True))
        return jwt.encode({"alg": "ES256", "kid": key.thumbprint()}, payload, pem_key).decode()

    for token in (signed(aud="https://other-service.example"), signed()):
        with client_for(base_url, token) as client:
            assert client.get("CarePlan").status_code == 401
    assert verify_token(signed(aud="https://liaison.example")).idnat == PCP
    assert verify_token(issue_token("professional", idnat=PCP)).idnat == PCP  # ours carry it


def _restrict_to(bundle: dict, *readers: str) -> dict:
    """Tag every per-letter resource as consent.py does for an R/V letter."""
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] in ("CarePlan", "Communication", "DocumentReference"):
            tags = [{"system": RESTRICTED_READER_TAG, "code": r} for r in readers or ("none",)]
            entry["resource"].setdefault("meta", {})["tag"] = tags
    return bundle


def test_a_restricted_letter_is_read_only_by_its_named_readers_and_its_hospital(
        writer: httpx.Client, hospital: httpx.Client, professional):  # type: ignore[no-untyped-def]
    named, other_member = PCP, "801111111111"
    bundle = _restrict_to(letter_bundle(team=(PCP, other_member), recipients=(PCP,)), named)
    answer = post_bundle(writer, bundle)
    care_plan = location(answer, "CarePlan")
    reader, outsider = professional(named), professional(other_member)
    assert _careplans(reader)["total"] == 1
    assert reader.get(care_plan).status_code == 200
    # still in the care team (the CareTeam itself is visible), yet the letter's plan is not
    assert _careplans(outsider)["total"] == 0
    assert outsider.get(care_plan).status_code == 404
    assert outsider.get("DocumentReference", params={"patient.identifier": PATIENT}).json()[
        "total"] == 0
    assert hospital.get(care_plan).status_code == 200


def test_a_care_team_membership_that_ended_stops_giving_access_when_it_ends(
        database_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The reader's filter is built once and kept: the instant its grants are checked against
    is the one each statement runs at, not the one the filter was built at."""
    from datetime import datetime

    from adapter.auth.principal import DEFAULT_SCOPES, Principal
    from adapter.record import access
    from adapter.record.repository import Repository
    from adapter.store.db import get_engine

    nurse = "810000000333"
    repository = Repository(get_engine(database_url) if database_url else None)
    repository.transaction(letter_bundle(team=(PCP, nurse), ended=(nurse,)))
    reader = Principal(kind="professional", idnat=nurse,
                       scopes=DEFAULT_SCOPES["professional"])

    def plans() -> int:
        return len(repository.search("CarePlan", [("patient.identifier", PATIENT)], reader)
                   .get("entry") or [])

    monkeypatch.setattr(access, "utcnow", lambda: datetime(2020, 6, 1))  # within the period
    assert plans() == 1
    monkeypatch.setattr(access, "utcnow", lambda: datetime(2021, 6, 1))  # after it ended
    assert plans() == 0
