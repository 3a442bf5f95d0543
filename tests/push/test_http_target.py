"""HttpTarget against Medplum (an independent FHIR server) and against scripted faults."""

from __future__ import annotations

import pytest

from adapter.errors import TargetRejected, TargetUnavailable
from adapter.push.targets import HttpTarget, response_locations
from tests.push.bundles import DOCS, INS, PLANS, document_value, letter_bundle, patient_ins
from tests.push.faulty import faulty_target
from tests.push.medplum_queries import count_by_identifier, search
from tests.support.servers import free_port

pytestmark = pytest.mark.medplum


def test_a_bundle_lands_in_medplum_once_even_when_sent_twice(medplum_base_url: str) -> None:
    target = HttpTarget(medplum_base_url)
    first = target.send(letter_bundle(9001))
    again = target.send(letter_bundle(9001))
    assert first["type"] == again["type"] == "transaction-response"
    assert response_locations(first)[0] == response_locations(again)[0]  # same Patient
    assert count_by_identifier(medplum_base_url, "Patient", INS, patient_ins(9001)) == 1
    assert (
        count_by_identifier(medplum_base_url, "DocumentReference", DOCS, document_value(9001)) == 1
    )
    assert (
        len(
            search(
                medplum_base_url,
                "Provenance",
                _tag=f"urn:liaison:provenance|{document_value(9001)}",
            )
        )
        == 1
    )


def test_version_two_updates_the_care_plan_of_version_one(medplum_base_url: str) -> None:
    target = HttpTarget(medplum_base_url)
    target.send(letter_bundle(9002, version=1))
    target.send(letter_bundle(9002, version=2))
    (plan,) = search(medplum_base_url, "CarePlan", identifier=f"{PLANS}|plan-9002")
    assert plan["title"] == "version 2"
    (patient,) = search(medplum_base_url, "Patient", identifier=f"{INS}|{patient_ins(9002)}")
    assert plan["subject"]["reference"] == f"Patient/{patient['id']}"
    assert (
        len(search(medplum_base_url, "DocumentReference", subject=f"Patient/{patient['id']}")) == 2
    )


def test_unreachable_target_is_worth_retrying() -> None:
    target = HttpTarget(f"http://127.0.0.1:{free_port()}/fhir", timeout=2)
    with pytest.raises(TargetUnavailable) as raised:
        target.send(letter_bundle(1))
    assert raised.value.outcome and raised.value.outcome["issue"][0]["code"] == "transient"


def test_503_is_retryable_with_the_retry_after_and_422_is_a_rejection(
    medplum_base_url: str,
) -> None:
    with faulty_target(medplum_base_url) as fault:
        fault.then(503, "maintenance", {"Retry-After": "7"}).then(
            422, "CarePlan.status is required"
        )
        target = HttpTarget(fault.base_url)
        with pytest.raises(TargetUnavailable) as unavailable:
            target.send(letter_bundle(9003))
        assert (unavailable.value.status, unavailable.value.retry_after) == (503, 7.0)
        with pytest.raises(TargetRejected) as rejected:
            target.send(letter_bundle(9003))
        assert rejected.value.status == 422
        assert rejected.value.outcome["issue"][0]["diagnostics"] == "CarePlan.status is required"  # type: ignore[index]
        assert target.send(letter_bundle(9003))["type"] == "transaction-response"


def test_a_409_conflict_is_retried_not_parked(medplum_base_url: str) -> None:
    with faulty_target(medplum_base_url) as fault:
        fault.then(409, "conditional create raced with another transaction")
        target = HttpTarget(fault.base_url)
        with pytest.raises(TargetUnavailable) as unavailable:
            target.send(letter_bundle(9004))
        assert unavailable.value.status == 409
        assert target.send(letter_bundle(9004))["type"] == "transaction-response"
