"""A new stay's care team merges with the one in the record, and consent holds in the record."""

from __future__ import annotations

import pytest

from adapter.auth.principal import DEFAULT_SCOPES, Principal
from adapter.coordination import consent
from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.coordinators import CsvCoordinators
from adapter.coordination.enrichment import enrich
from adapter.errors import NotFound
from adapter.record.repository import Repository
from adapter.store.db import get_engine, session_scope
from tests.coordination.letters import INS, addressed, synthetic_conversion
from tests.support.paths import FIXTURES

DIRECTORY = CsvCoordinators(FIXTURES / "coordination" / "local_directory.csv")
NURSE = "801234567896"
PCP = "801984758437"
PATIENT = "279035121518989"


def _reader(idnat: str) -> Principal:
    return Principal(kind="professional", idnat=idnat, scopes=DEFAULT_SCOPES["professional"])


def _first_stay(repository: Repository) -> None:
    """Hospital A names the home nurse; the letter reaches the record."""
    first = enrich(synthetic_conversion(set_id="1.2.250.1.999.1"), DIRECTORY, repository)
    repository.transaction(first.bundle)


def _second_stay(**overrides: object):
    """Hospital B, weeks later: names only its own correspondent, not the nurse."""
    values = {
        "set_id": "1.2.250.1.888.1",
        "hospital": "1690000001",
        "author": ("801000000009", "DURAND", "Pierre"),
        "recipients": (("801111111111", "ROCHE", "Paul", None),),
    }
    values.update(overrides)
    return synthetic_conversion(**values)  # type: ignore[arg-type]


def _participant_of(bundle: dict, idnat: str) -> dict | None:
    view = BundleView(bundle)
    care_team = view.first("CareTeam") or {}
    for participant in care_team.get("participant") or []:
        if idnat in view.idnats_of(participant["member"]["reference"]):
            return participant
    return None


def test_second_letter_from_another_hospital_keeps_the_nurse_and_notifies_her() -> None:
    repository = Repository(get_engine())
    _first_stay(repository)
    second = enrich(_second_stay(), DIRECTORY, repository)
    nurse = _participant_of(second.bundle, NURSE)
    assert nurse is not None, "the nurse of the first stay was dropped from the care team"
    assert nurse["period"] == {"start": "2026-11-20T10:00:00+01:00"}  # her period is kept
    origin = {p["url"]: p for p in nurse["extension"][0]["extension"]}
    assert origin["source"]["valueIdentifier"]["value"] == "1.2.250.1.999.1.1"  # first letter
    assert NURSE in addressed(second.bundle)
    repository.transaction(second.bundle)  # the record takes the merged bundle
    # in the record, the nurse now finds the second hospital's message addressed to her
    messages = repository.search("Communication", [], _reader(NURSE))["entry"]
    values = {i["value"] for e in messages for i in e["resource"].get("identifier", [])}
    assert f"1.2.250.1.888.1.1/{NURSE}" in values


def test_a_corrected_letter_of_the_same_stay_drops_whom_it_no_longer_names() -> None:
    """The stay's earlier version is not an earlier care team: the nurse it named is not
    carried back into the corrected letter's CareTeam, nor told about it."""
    repository = Repository(get_engine())
    _first_stay(repository)
    corrected = enrich(
        _second_stay(set_id="1.2.250.1.999.1", hospital="1750803447"), DIRECTORY, repository)
    assert _participant_of(corrected.bundle, NURSE) is None
    assert NURSE not in addressed(corrected.bundle)
    repository.transaction(corrected.bundle)
    # once corrected, no later stay finds her in the patient's care team either
    later = enrich(_second_stay(set_id="1.2.250.1.666.1"), DIRECTORY, repository)
    assert _participant_of(later.bundle, NURSE) is None


def test_the_first_stays_coordinator_keeps_their_original_period() -> None:
    repository = Repository(get_engine())
    _first_stay(repository)
    second = enrich(_second_stay(), DIRECTORY, repository)
    coordinator = _participant_of(second.bundle, "810000000017")
    assert coordinator is not None
    origin = {p["url"]: p for p in coordinator["extension"][0]["extension"]}
    assert origin["source"]["valueIdentifier"]["value"] == "1.2.250.1.999.1.1"


def test_opposed_patient_letter_reaches_named_recipients_only_and_outsiders_cannot_read_it() -> (
    None
):
    repository = Repository(get_engine())
    with session_scope(get_engine()) as session:
        consent.record_decision(session, (INS, PATIENT), "oppose", source="cli")
    letter = enrich(synthetic_conversion(), DIRECTORY, repository)
    assert addressed(letter.bundle) == {NURSE}
    assert _participant_of(letter.bundle, PCP) is None  # not named: not in the care team either
    assert _participant_of(letter.bundle, "810000000017") is None
    repository.transaction(letter.bundle)
    # the PCP is not a named recipient: nothing of the letter is visible to them
    outsider = _reader(PCP)
    found = repository.search("DocumentReference", [], outsider)
    assert found.get("total", len(found.get("entry", []))) == 0
    assert not found.get("entry")
    [document] = [
        e
        for e in repository.search("DocumentReference", [])["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
    ]
    with pytest.raises(NotFound):  # hidden reads as unknown
        repository.read("DocumentReference", document["resource"]["id"], outsider)
    # the named nurse reads it
    mine = repository.search("DocumentReference", [], _reader(NURSE))
    assert [e["resource"]["id"] for e in mine["entry"]] == [document["resource"]["id"]]


def test_restricted_letter_is_filtered_out_for_readers_outside_itsaddressed() -> None:
    repository = Repository(get_engine())
    letter = enrich(synthetic_conversion(confidentiality="R"), DIRECTORY, repository)
    repository.transaction(letter.bundle)
    everything = repository.search("DocumentReference", [])
    assert consent.filter_searchset(everything, _reader(PCP))["entry"] == []
    assert len(consent.filter_searchset(everything, _reader(NURSE))["entry"]) == 1
