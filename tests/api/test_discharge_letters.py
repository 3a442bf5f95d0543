"""POST /discharge-letters and GET /discharge-letters/{id} on the real app and database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from adapter.push.worker import TRANSACTION_KINDS
from adapter.record.repository import Repository
from adapter.store import outbox
from adapter.store.db import get_engine
from tests.api.conftest import wait_for_status
from tests.support.letter_variants import document_id, ins_of, letter_variant
from tests.support.paths import LDL_SES_EXAMPLE
from tests.support.waiting import wait_for

CDA = {"Content-Type": "application/hl7-cda+xml"}


def bundles_enqueued() -> int:
    entries = outbox.entries(get_engine(), limit=10_000)
    return sum(1 for entry in entries if entry.kind in TRANSACTION_KINDS)


def test_a_letter_is_accepted_with_a_receipt_then_pushed_to_the_record(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    with liaison() as client:
        answer = client.post(
            "/discharge-letters", content=letter_variant(1), headers={**hospital, **CDA}
        )
        assert answer.status_code == 202
        receipt = answer.json()
        assert answer.headers["Location"] == f"/discharge-letters/{receipt['id']}"
        assert receipt["status"] in ("accepted", "pushed")
        assert receipt["document"]["id"] == "urn:oid:{}|{}".format(*document_id(1))
        types = {item["resourceType"] for item in receipt["resources"]}
        assert {"CarePlan", "CareTeam", "Communication", "Patient", "Provenance"} <= types
        assert receipt["unmapped"]["resourceType"] == "OperationOutcome"
        pushed = wait_for_status(client, answer.headers["Location"], hospital, "pushed")
    plan = next(item for item in pushed["resources"] if item["resourceType"] == "CarePlan")
    assert plan["reference"].startswith("CarePlan/")
    record = Repository(get_engine())
    found = record.search("Patient", [("identifier", f"urn:oid:1.2.250.1.213.1.4.10|{ins_of(1)}")])
    assert len(found.get("entry", [])) == 1


def test_the_same_letter_posted_again_answers_the_existing_receipt(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    letter = letter_variant(2)
    with liaison(push_in_server=False) as client:
        first = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
        again = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
        # Same document id, different bytes (re-serialised by the EHR): still the same letter.
        reformatted = client.post(
            "/discharge-letters",
            content=letter.replace(b"<title>", b"<title >"),
            headers={**hospital, **CDA},
        )
    assert (first.status_code, again.status_code, reformatted.status_code) == (202, 200, 200)
    assert first.json()["id"] == again.json()["id"] == reformatted.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert bundles_enqueued() == 1


def test_another_hospital_posting_a_received_letters_id_gets_no_receipt(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    from adapter.auth import issue_token
    from tests.api.conftest import OTHER_HOSPITAL, bearer

    other = bearer(issue_token("hospital", organization=OTHER_HOSPITAL))
    letter = letter_variant(4)
    with liaison(push_in_server=False) as client:
        first = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
        same_bytes = client.post("/discharge-letters", content=letter, headers={**other, **CDA})
        same_id = client.post(
            "/discharge-letters",
            content=letter.replace(b"<title>", b"<title >"),
            headers={**other, **CDA},
        )
        again = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
    # the same bytes: already received from another sender; the same id in other bytes: a
    # letter whose custodian is not the sender's organisation
    assert (first.status_code, same_bytes.status_code, same_id.status_code) == (202, 409, 403)
    for refused in (same_bytes, same_id):  # the receipt lists the patient's INS: not shown
        assert ins_of(4) not in refused.text
        assert refused.json()["resourceType"] == "OperationOutcome"
    assert again.status_code == 200
    assert bundles_enqueued() == 1


def test_a_letter_can_be_uploaded_as_a_multipart_form(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    with liaison(push_in_server=False) as client:
        answer = client.post(
            "/discharge-letters",
            files={"letter": ("lettre.xml", letter_variant(3), "application/hl7-cda+xml")},
            headers=hospital,
        )
    assert answer.status_code == 202
    assert answer.json()["document"]["id"].endswith(document_id(3)[1])


def _refusal(answer: Any, status: int) -> str:
    assert answer.status_code == status
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome["issue"][0]["diagnostics"]


def test_refused_input_gets_an_operation_outcome_and_stores_nothing(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    with liaison(push_in_server=False, max_letter_bytes=200_000) as client:
        too_big = client.post(
            "/discharge-letters", content=b"<a/>" * 60_000, headers={**hospital, **CDA}
        )
        assert "limit" in _refusal(too_big, 413)
        wrong_type = client.post(
            "/discharge-letters",
            content=b"hello",
            headers={**hospital, "Content-Type": "text/plain"},
        )
        assert "text/plain" in _refusal(wrong_type, 415)
        not_xml = client.post(
            "/discharge-letters", content=b"this is not xml <", headers={**hospital, **CDA}
        )
        _refusal(not_xml, 400)
        other_xml = client.post(
            "/discharge-letters", content=b"<note><to>GP</to></note>", headers={**hospital, **CDA}
        )
        _refusal(other_xml, 422)
        empty_form = client.post(
            "/discharge-letters", files={"comment": (None, "no file")}, headers=hospital
        )
        _refusal(empty_form, 400)
    assert bundles_enqueued() == 0


def test_an_unknown_receipt_is_not_found(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    with liaison(push_in_server=False) as client:
        _refusal(client.get("/discharge-letters/unknown", headers=hospital), 404)


def test_the_official_example_itself_is_accepted(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    with liaison(push_in_server=False) as client:
        answer = client.post(
            "/discharge-letters",
            content=LDL_SES_EXAMPLE.read_bytes(),
            headers={**hospital, "Content-Type": "application/xml"},
        )
    assert answer.status_code == 202


def test_in_report_mode_the_validation_report_is_attached_to_the_receipt_later(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    with liaison(validation_mode="report") as client:
        answer = client.post(
            "/discharge-letters", content=letter_variant(4), headers={**hospital, **CDA}
        )
        assert answer.status_code == 202

        def reported() -> dict[str, Any] | None:
            receipt = client.get(answer.headers["Location"], headers=hospital).json()
            return receipt if "validation" in receipt else None

        receipt = wait_for(reported, "the validation report on the receipt", timeout=60)
    assert receipt["validation"]["resourceType"] == "OperationOutcome"
    assert receipt["validation"]["issue"][0]["severity"] == "information"  # the example conforms


def test_in_strict_mode_a_non_conforming_letter_is_refused_with_the_problems(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    broken = letter_variant(5).replace(
        b'<versionNumber value="1"/>', b'<versionNumber value="one"/>'
    )
    with liaison(validation_mode="strict", push_in_server=False) as client:
        refused = client.post("/discharge-letters", content=broken, headers={**hospital, **CDA})
        accepted = client.post(
            "/discharge-letters", content=letter_variant(6), headers={**hospital, **CDA}
        )
    assert refused.status_code == 422
    issues = refused.json()["issue"]
    assert "CI-SIS" in issues[0]["diagnostics"] and len(issues) > 1
    assert accepted.status_code == 202
    assert accepted.json()["validation"]["issue"][0]["severity"] == "information"
    assert bundles_enqueued() == 1


@pytest.mark.postgres
def test_ingestion_and_push_run_the_same_on_postgresql(
    liaison: Callable[..., Any], hospital: dict[str, str], postgres_url: str
) -> None:
    with liaison(database_url=postgres_url) as client:
        answer = client.post(
            "/discharge-letters", content=letter_variant(7), headers={**hospital, **CDA}
        )
        again = client.post(
            "/discharge-letters", content=letter_variant(7), headers={**hospital, **CDA}
        )
        assert (answer.status_code, again.status_code) == (202, 200)
        pushed = wait_for_status(client, answer.headers["Location"], hospital, "pushed")
    assert any(item.get("reference", "").startswith("CarePlan/") for item in pushed["resources"])
    record = Repository(get_engine(postgres_url))
    found = record.search("Patient", [("identifier", f"urn:oid:1.2.250.1.213.1.4.10|{ins_of(7)}")])
    assert len(found.get("entry", [])) == 1


@pytest.mark.postgres
def test_on_postgresql_a_letters_large_values_are_compressed_with_lz4(
    liaison: Callable[..., Any], hospital: dict[str, str], postgres_url: str
) -> None:
    """The letter, its bundle waiting in the outbox and its DocumentReference in the record
    are stored with lz4, not PostgreSQL's slower default (pglz)."""
    with liaison(database_url=postgres_url) as client:
        answer = client.post(
            "/discharge-letters", content=letter_variant(8), headers={**hospital, **CDA})
        assert answer.status_code == 202
        wait_for_status(client, answer.headers["Location"], hospital, "pushed")
    with get_engine(postgres_url).connect() as connection:
        compressed = connection.execute(text(
            "SELECT (SELECT pg_column_compression(content) FROM received_letter), "
            "(SELECT pg_column_compression(payload) FROM outbox_payload), "
            "(SELECT pg_column_compression(body) FROM record_resource "
            " WHERE resource_type = 'DocumentReference')")).one()
    assert tuple(compressed) == ("lz4", "lz4", "lz4")
