"""Bearer tokens on the ingestion API, and what a hospital token may read back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapter.auth import issue_token
from tests.api.conftest import HOSPITAL, bearer, wait_for_status
from tests.support.letter_variants import ins_of, letter_variant

CDA = {"Content-Type": "application/hl7-cda+xml"}
FOREIGN_HOSPITAL = "1300000000"


def test_missing_wrong_or_expired_tokens_are_refused(liaison: Callable[..., Any]) -> None:
    refused = {
        "missing": {},
        "not a bearer": {"Authorization": "Basic aGVsbG86d29ybGQ="},
        "garbage": bearer("not-a-jwt"),
        "expired": bearer(issue_token("hospital", organization=HOSPITAL, lifetime=-600)),
    }
    with liaison(push_in_server=False) as client:
        for headers in refused.values():
            posted = client.post(
                "/discharge-letters", content=letter_variant(20), headers={**headers, **CDA}
            )
            assert posted.status_code == 401
            assert posted.json()["resourceType"] == "OperationOutcome"
            assert client.get("/discharge-letters/any", headers=headers).status_code == 401


def test_only_hospitals_submit_letters(liaison: Callable[..., Any]) -> None:
    professional = bearer(issue_token("professional", idnat="801234567897"))
    with liaison(push_in_server=False) as client:
        answer = client.post(
            "/discharge-letters", content=letter_variant(21), headers={**professional, **CDA}
        )
    assert answer.status_code == 403
    assert answer.json()["issue"][0]["code"] == "forbidden"


def test_a_hospital_reads_its_own_receipts_and_patients_only(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    foreign = bearer(issue_token("hospital", organization=FOREIGN_HOSPITAL))
    patient = f"urn:oid:1.2.250.1.213.1.4.10|{ins_of(22)}"
    with liaison() as client:
        answer = client.post(
            "/discharge-letters", content=letter_variant(22), headers={**hospital, **CDA}
        )
        wait_for_status(client, answer.headers["Location"], hospital, "pushed")
        assert client.get(answer.headers["Location"], headers=foreign).status_code == 404
        own = client.get("/fhir/Patient", params={"identifier": patient}, headers=hospital)
        other = client.get("/fhir/Patient", params={"identifier": patient}, headers=foreign)
    assert len(own.json().get("entry", [])) == 1
    assert other.status_code in (200, 403)
    if other.status_code == 200:
        assert other.json().get("entry", []) == []
