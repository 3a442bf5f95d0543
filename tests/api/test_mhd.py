"""The letter the FHIR way: an MHD Provide Document Bundle posted to /fhir."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from adapter.auth import issue_token
from tests.api.conftest import bearer, wait_for_status
from tests.support.letter_variants import document_id, letter_variant

FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def provide_document_bundle(cda: bytes, *, inline: bool) -> dict[str, Any]:
    attachment: dict[str, Any] = {"contentType": "application/hl7-cda+xml"}
    entries: list[dict[str, Any]] = []
    if inline:
        attachment["data"] = base64.b64encode(cda).decode()
    else:
        attachment["url"] = "urn:uuid:7f1e6a3c-0c9b-4a47-9d0e-0d6c8c3a1b22"
        entries.append(
            {
                "fullUrl": attachment["url"],
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/hl7-cda+xml",
                    "data": base64.b64encode(cda).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            }
        )
    entries.insert(
        0,
        {
            "fullUrl": "urn:uuid:3c3b0f0e-5d1b-4f43-a7a5-8f2f6a0d2e10",
            "resource": {
                "resourceType": "DocumentReference",
                "status": "current",
                "content": [{"attachment": attachment}],
            },
            "request": {"method": "POST", "url": "DocumentReference"},
        },
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_a_provide_document_bundle_is_ingested_like_a_posted_letter(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    with liaison() as client:
        for n, inline in ((30, True), (31, False)):
            answer = client.post(
                "/fhir",
                json=provide_document_bundle(letter_variant(n), inline=inline),
                headers={**hospital, **FHIR},
            )
            assert answer.status_code == 200
            response = answer.json()
            assert response["type"] == "transaction-response"
            location = response["entry"][0]["response"]["location"]
            assert location.startswith("/discharge-letters/")
            assert response["entry"][0]["response"]["status"].startswith("202")
            receipt = wait_for_status(client, location, hospital, "pushed")
            assert receipt["document"]["id"].endswith(document_id(n)[1])


def test_other_bundles_go_on_to_the_record_which_only_liaison_writes(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Organization", "name": "Cabinet infirmier"},
                "request": {"method": "POST", "url": "Organization"},
            }
        ],
    }
    system = bearer(issue_token("system"))
    with liaison(push_in_server=False) as client:
        refused = client.post("/fhir", json=bundle, headers={**hospital, **FHIR})
        answer = client.post("/fhir", json=bundle, headers={**system, **FHIR})
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["code"] == "forbidden"
    assert answer.status_code == 200
    assert answer.json()["entry"][0]["response"]["status"].startswith("201")


def test_a_cda_attachment_that_is_not_base64_is_a_bad_request(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    bundle = provide_document_bundle(b"", inline=True)
    bundle["entry"][0]["resource"]["content"][0]["attachment"]["data"] = "%%% not base64 %%%"
    with liaison(push_in_server=False) as client:
        answer = client.post("/fhir", json=bundle, headers={**hospital, **FHIR})
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_a_bundle_produced_by_liaison_is_a_record_transaction_not_a_submission(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    """Another liaison pushing its bundle here (it carries the CDA too) writes to the record."""
    from adapter.mapping import convert_letter

    bundle = convert_letter(letter_variant(32)).bundle
    with liaison(push_in_server=False) as client:
        answer = client.post("/fhir", json=bundle,
                             headers={**bearer(issue_token("system")), **FHIR})
    assert answer.status_code == 200
    statuses = {entry["response"]["status"][:3] for entry in answer.json()["entry"]}
    assert statuses <= {"200", "201"}
