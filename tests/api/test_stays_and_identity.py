"""Patients are one patient only by INS, and the CPTS coordinator keeps the patient across
versions and stays — through the app (ingestion, coordination, the embedded record)."""

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
PCP = "801984758437"  # the example's médecin traitant
OTHER_PCP = "801984758499"
COORDINATOR = "810000000017"  # CPTS-PARIS-CENTRE covers the example patient's 75015
OTHER_HOSPITAL = "1120456789"


def send(client: TestClient, xml: bytes, headers: dict[str, str]) -> dict[str, Any]:
    answer = client.post("/discharge-letters", content=xml, headers={**headers, **CDA})
    assert answer.status_code == 202, answer.text
    return wait_for_status(client, answer.headers["Location"], headers, "pushed")


def count(client: TestClient, headers: dict[str, str], kind: str, **params: str) -> int:
    answer = client.get(f"/fhir/{kind}", headers=headers, params={**params, "_summary": "count"})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def without_ins(xml: bytes, n: int) -> bytes:
    return xml.replace(f'<id extension="{ins_of(n)}" root="1.2.250.1.213.1.4.10"/>'.encode(),
                       b'<id nullFlavor="UNK" root="1.2.250.1.213.1.4.10"/>')


def test_the_coordinator_keeps_the_patient_after_a_new_version_and_a_new_stay(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")
    coordinator = bearer(issue_token("coordinator", cpts="CPTS-PARIS-CENTRE"))
    patient = {"patient.identifier": f"{INS_SYSTEM}|{ins_of(501)}"}
    with liaison() as client:
        send(client, letter_variant(501), hospital)
        assert count(client, coordinator, "CarePlan", **patient) == 1
        send(client, letter_variant(501, version=2), hospital)
        assert count(client, coordinator, "CarePlan", **patient) == 1  # still theirs
        send(client, letter_variant(502, patient=501), hospital)  # a second stay
        assert count(client, coordinator, "CarePlan", **patient) == 2
        teams = client.get("/fhir/CareTeam", params=patient, headers=coordinator).json()
        page = client.get("/coordination/page", headers=coordinator)
    for entry in teams["entry"]:
        acting = [p for p in entry["resource"]["participant"] if p.get("onBehalfOf")]
        assert acting, "the coordinator acts for the CPTS in every team"
    assert page.status_code == 200
    assert "PAT-TROIS" in page.text  # the patient is on the coordinator's page


def test_two_patients_sharing_a_local_identifier_are_never_merged(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    """Letters for different INS with the same IPP (an identity error in the hospital's data):
    two patients, and the first one's médecin traitant never joins the second's care team."""
    first = letter_variant(511).replace(PCP.encode(), OTHER_PCP.encode())
    second = letter_variant(512).replace(b"IPP0000000512", b"IPP0000000511")
    system = bearer(issue_token("system"))
    with liaison() as client:
        send(client, first, hospital)
        send(client, second, hospital)
        assert count(client, system, "Patient", identifier="IPP0000000511") == 2
        other_pcp = bearer(issue_token("professional", idnat=OTHER_PCP))
        assert count(client, other_pcp, "Patient", identifier=f"{INS_SYSTEM}|{ins_of(512)}") == 0
        assert count(client, other_pcp, "Communication",
                     **{"patient.identifier": f"{INS_SYSTEM}|{ins_of(512)}"}) == 0


def test_an_ins_with_a_wrong_key_is_refused(liaison: Callable[..., Any],
                                            hospital: dict[str, str]) -> None:
    wrong = ins_of(521)[:13] + f"{(int(ins_of(521)[13:]) + 1) % 100:02d}"
    letter = letter_variant(521).replace(ins_of(521).encode(), wrong.encode())
    with liaison() as client:
        answer = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
        assert count(client, bearer(issue_token("system")), "Patient") == 0
    assert answer.status_code == 422
    assert "control key" in answer.json()["issue"][0]["diagnostics"]


def test_a_letter_without_ins_stays_its_hospitals_patient(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    ours = without_ins(letter_variant(531), 531)
    theirs = without_ins(letter_variant(532, patient=531), 531).replace(
        b'extension="1750803447"', f'extension="{OTHER_HOSPITAL}"'.encode())
    other = bearer(issue_token("hospital", organization=OTHER_HOSPITAL))
    system = bearer(issue_token("system"))
    with liaison() as client:
        receipt = send(client, ours, hospital)
        send(client, theirs, other)
        assert count(client, system, "Patient", identifier="IPP0000000531") == 2
        assert count(client, hospital, "Patient") == 1
        assert count(client, other, "Patient") == 1
    assert any("identity not qualified" in issue["diagnostics"]
               for issue in receipt["unmapped"]["issue"])
