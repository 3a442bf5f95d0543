"""The same letters land in Medplum (a FHIR server nobody here wrote) with the same resources as
in the embedded record, and are found there by patient identifier."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.api.conftest import wait_for_status
from tests.push.medplum_queries import search
from tests.support.letter_variants import DOCUMENT_ROOT, INS_SYSTEM, ins_of, letter_variant

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
