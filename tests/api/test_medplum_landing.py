"""The same letters land in Medplum (a FHIR server nobody here wrote) with the same resources as
in the embedded record, and are found there by patient identifier."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapter.coordination.record_port import member_key
from adapter.coordination.record_reader import RecordCareTeams
from adapter.coordination.rest_record import RestCareTeams
from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.api.conftest import wait_for_status
from tests.push.medplum_queries import search
from tests.support.letter_variants import (
    DOCUMENT_ROOT,
    INS_SYSTEM,
    ins_of,
    letter_variant,
    without_recipient,
)

pytestmark = pytest.mark.medplum

CDA = {"Content-Type": "application/hl7-cda+xml"}
PER_PATIENT = (
    "CarePlan",
    "CareTeam",
    "Communication",
    "DocumentReference",
    "Encounter",
    "MedicationRequest",
    "ServiceRequest",
)


def _identifiers(resources: list[dict[str, Any]]) -> list[str]:
    return sorted(
        f"{identifier.get('system')}|{identifier.get('value')}"
        for resource in resources
        for identifier in resource.get("identifier", [])
    )


def _post_all(client: Any, hospital: dict[str, str], letters: list[bytes]) -> None:
    locations = []
    for letter in letters:
        answer = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
        assert answer.status_code == 202
        locations.append(answer.headers["Location"])
    for location in locations:
        wait_for_status(client, location, hospital, "pushed", timeout=60)


def test_letters_land_in_medplum_with_the_same_resources_as_in_the_record(
    liaison: Callable[..., Any], hospital: dict[str, str], medplum_base_url: str, tmp_path: Path
) -> None:
    # letter 50 version 1 and 2 (same patient), letter 51 for another patient
    letters = [letter_variant(50), letter_variant(50, version=2), letter_variant(51)]
    with liaison() as embedded:
        _post_all(embedded, hospital, letters)
    medplum_db = f"sqlite:///{tmp_path / 'second-liaison.db'}"
    with liaison(
        target_url=medplum_base_url, target_max_entries=8, database_url=medplum_db
    ) as pushing:
        _post_all(pushing, hospital, letters)

    record = Repository(get_engine())
    for n in (50, 51):
        ins = f"{INS_SYSTEM}|{ins_of(n)}"
        (in_medplum,) = search(medplum_base_url, "Patient", identifier=ins)
        in_record = [
            entry["resource"] for entry in record.search("Patient", [("identifier", ins)])["entry"]
        ]
        assert len(in_record) == 1
        for resource_type in PER_PATIENT:
            there = search(medplum_base_url, resource_type, patient=f"Patient/{in_medplum['id']}")
            here = record.search(resource_type, [("patient", f"Patient/{in_record[0]['id']}")])
            here_resources = [entry["resource"] for entry in here.get("entry", [])]
            assert here_resources, resource_type
            assert _identifiers(there) == _identifiers(here_resources), resource_type
        plans = search(medplum_base_url, "CarePlan", patient=f"Patient/{in_medplum['id']}")
        assert len(plans) == 1  # version 2 updated the care plan of version 1
    for version in (1, 2):
        tag = f"urn:liaison:provenance|{DOCUMENT_ROOT}^liaison-test-50-v{version}"
        assert len(search(medplum_base_url, "Provenance", _tag=tag)) == 1


def _teams(source: Any, ins: str) -> dict[str, list[str]]:
    """Each CareTeam of the patient (by identifier) → the idNat_PS of its professionals."""
    teams, members = source.care_teams(source.patient_ids([(INS_SYSTEM, ins)]))

    def idnat(reference: str) -> str:
        resource = members[member_key(reference) or ""] or {}
        if resource.get("resourceType") == "PractitionerRole":
            resource = members[member_key(resource["practitioner"]["reference"]) or ""] or {}
        return next(i["value"] for i in resource.get("identifier", [])
                    if i["system"] == "urn:oid:1.2.250.1.71.4.2.1")

    return {team["identifier"][0]["value"]: sorted(
        idnat(p["member"]["reference"]) for p in team.get("participant", [])
        if member_key(p["member"]["reference"])) for team in teams}


def test_a_second_stay_merges_the_care_team_found_in_medplum_as_in_the_embedded_record(
    liaison: Callable[..., Any], hospital: dict[str, str], medplum_base_url: str, tmp_path: Path
) -> None:
    """With Medplum as the shared record, the care-team merge reads the earlier stay there
    (over REST) and gives the second stay the same care team as the embedded record does."""
    nurse = "801234567896"  # named by the first stay only
    second = without_recipient(letter_variant(55, patient=54), nurse)
    stays = [letter_variant(54, patient=54), second]
    with liaison() as embedded:
        for stay in stays:  # the first is in the record before the second is accepted
            _post_all(embedded, hospital, [stay])
    with liaison(target_url=medplum_base_url, target_max_entries=8,
                 database_url=f"sqlite:///{tmp_path / 'second-liaison.db'}") as pushing:
        for stay in stays:
            _post_all(pushing, hospital, [stay])
    here = _teams(RecordCareTeams(Repository(get_engine())), ins_of(54))
    there = _teams(RestCareTeams(medplum_base_url), ins_of(54))
    assert len(here) == 2 and here == there
    assert all(nurse in carers for carers in here.values())  # kept by the second stay
