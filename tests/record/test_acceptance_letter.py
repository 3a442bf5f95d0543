"""Acceptance: the official LDL-SES example, converted by liaison's mapping and stored as one
transaction, is found by the médecin traitant and by nobody else."""

from __future__ import annotations

import httpx
import pytest

from adapter.auth import issue_token
from tests.record.bundles import location, post_bundle
from tests.record.conftest import client_for
from tests.support.paths import LDL_SES_EXAMPLE

mapping = pytest.importorskip("adapter.mapping")
if not hasattr(mapping, "convert_letter"):
    pytest.skip("adapter.mapping.convert_letter is not there yet", allow_module_level=True)

INS_QUERY = "urn:oid:1.2.250.1.213.1.4.10|279035121518989"
PCP = "801984758437"  # the médecin traitant of the example letter
MY_MESSAGES = {"recipient:PractitionerRole.practitioner.identifier":
               f"urn:oid:1.2.250.1.71.4.2.1|{PCP}"}


@pytest.fixture
def stored_letter(writer: httpx.Client) -> dict:
    conversion = mapping.convert_letter(LDL_SES_EXAMPLE.read_bytes())
    return post_bundle(writer, conversion.bundle)


def test_the_medecin_traitant_finds_the_care_plan_and_their_message(
        stored_letter: dict, base_url: str):
    with client_for(base_url, issue_token("professional", idnat=PCP)) as pcp:
        found = pcp.get("CarePlan", params={"patient.identifier": INS_QUERY,
                                            "_include": "CarePlan:care-team"}).json()
        matches = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "match"]
        included = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "include"]
        assert [plan["status"] for plan in matches] == ["active"]
        assert [team["resourceType"] for team in included] == ["CareTeam"]
        messages = pcp.get("Communication", params=MY_MESSAGES).json()
        assert messages["total"] == 1
        message = messages["entry"][0]["resource"]
        role = pcp.get(message["recipient"][0]["reference"]).json()
        practitioner = pcp.get(role["practitioner"]["reference"]).json()
        assert {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": PCP}.items() <= \
            next(i for i in practitioner["identifier"] if i["value"] == PCP).items()


def test_an_unrelated_professional_gets_nothing_and_404_on_direct_read(
        stored_letter: dict, base_url: str):
    care_plan = location(stored_letter, "CarePlan")
    with client_for(base_url, issue_token("professional", idnat="809999999999")) as stranger:
        assert stranger.get("CarePlan", params={"patient.identifier": INS_QUERY}).json()[
            "total"] == 0
        assert stranger.get("Communication").json()["total"] == 0
        assert stranger.get(care_plan).status_code == 404
    with client_for(base_url, None) as anonymous:
        assert anonymous.get("CarePlan", params={"patient.identifier": INS_QUERY}
                             ).status_code == 401
