"""A new stay's care team merges with the one in the record, and consent holds in the record."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapter.auth.principal import DEFAULT_SCOPES, Principal
from adapter.coordination import consent
from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.coordinators import CsvCoordinators
from adapter.coordination.enrichment import enrich
from adapter.coordination.rest_record import RestCareTeams
from adapter.errors import NotFound
from adapter.push.targets import HttpTarget
from adapter.record.repository import Repository
from adapter.store.db import get_engine, session_scope
from tests.coordination.letters import INS, addressed, synthetic_conversion
from tests.support.medplum import medplum_base_url, medplum_server  # noqa: F401
from tests.support.paths import FIXTURES
from tests.support.servers import free_port

DIRECTORY = CsvCoordinators(FIXTURES / "coordination" / "local_directory.csv")
NURSE = "801234567896"
ASSIGNED = "810000000041"  # a nurse of the living directory a coordinator added
PCP = "801984758437"
PATIENT = "279035121518989"


def _reader(idnat: str) -> Principal:
    return Principal(kind="professional", idnat=idnat, scopes=DEFAULT_SCOPES["professional"])


class SharedRecord:
    """The record the merge reads earlier stays from, with a way to put a letter in it."""

    def __init__(self, reader: Any, store: Callable[[dict[str, Any]], object], ins: str) -> None:
        self.reader, self.store, self.ins = reader, store, ins


@pytest.fixture(params=["embedded", pytest.param("medplum", marks=pytest.mark.medplum)])
def shared_record(request: pytest.FixtureRequest) -> Iterator[SharedRecord]:
    """The embedded record, or the Medplum peer as another FHIR server read over REST (shared by
    the session: each test has a patient of its own there)."""
    if request.param == "embedded":
        repository = Repository(get_engine())
        yield SharedRecord(repository, repository.transaction, PATIENT)
        return
    base = request.getfixturevalue("medplum_base_url")
    target = HttpTarget(base, max_entries=8)  # as liaison pushes to it (the peer's limit)
    reader = RestCareTeams(base)
    yield SharedRecord(reader, target.send, f"2790351{secrets.randbelow(10**8):08d}")
    reader.close()
    target.close()


def _first_stay(record: SharedRecord) -> None:
    """Hospital A names the home nurse; the letter reaches the record."""
    first = enrich(synthetic_conversion(set_id="1.2.250.1.999.1", ins=record.ins), DIRECTORY,
                   record.reader)
    record.store(first.bundle)


def _second_stay(record: SharedRecord, **overrides: object):
    """Hospital B, weeks later: names only its own correspondent, not the nurse."""
    values = {
        "ins": record.ins,
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


def test_second_letter_from_another_hospital_keeps_the_nurse_and_notifies_her(
    shared_record: SharedRecord,
) -> None:
    _first_stay(shared_record)
    second = enrich(_second_stay(shared_record), DIRECTORY, shared_record.reader)
    nurse = _participant_of(second.bundle, NURSE)
    assert nurse is not None, "the nurse of the first stay was dropped from the care team"
    assert nurse["period"] == {"start": "2026-11-20T10:00:00+01:00"}  # her period is kept
    origin = {p["url"]: p for p in nurse["extension"][0]["extension"]}
    assert origin["source"]["valueIdentifier"]["value"] == "1.2.250.1.999.1.1"  # first letter
    assert NURSE in addressed(second.bundle)
    shared_record.store(second.bundle)  # the record takes the merged bundle


def test_the_nurse_finds_the_second_hospitals_message_in_the_embedded_record() -> None:
    repository = Repository(get_engine())
    record = SharedRecord(repository, repository.transaction, PATIENT)
    _first_stay(record)
    second = enrich(_second_stay(record), DIRECTORY, repository)
    repository.transaction(second.bundle)
    messages = repository.search("Communication", [], _reader(NURSE))["entry"]
    values = {i["value"] for e in messages for i in e["resource"].get("identifier", [])}
    assert f"1.2.250.1.888.1.1/{NURSE}" in values


def test_a_corrected_letter_of_the_same_stay_drops_whom_it_no_longer_names(
    shared_record: SharedRecord,
) -> None:
    """The stay's earlier version is not an earlier care team: the nurse it named is not
    carried back into the corrected letter's CareTeam, nor told about it."""
    _first_stay(shared_record)
    corrected = enrich(
        _second_stay(shared_record, set_id="1.2.250.1.999.1", hospital="1750803447"), DIRECTORY,
        shared_record.reader)
    assert _participant_of(corrected.bundle, NURSE) is None
    assert NURSE not in addressed(corrected.bundle)
    shared_record.store(corrected.bundle)
    # once corrected, no later stay finds her in the patient's care team either
    later = enrich(_second_stay(shared_record, set_id="1.2.250.1.666.1"), DIRECTORY,
                   shared_record.reader)
    assert _participant_of(later.bundle, NURSE) is None


def test_a_corrected_letter_keeps_whom_the_coordinator_added_to_the_stay(
    shared_record: SharedRecord,
) -> None:
    """A carer a coordinator assigned from the page is no letter's: the stay's corrected
    letter keeps her (it drops only whom letters named)."""
    from adapter.coordination.resources import ensure_practitioner, origin_extension
    from adapter.coordination.rules import load_rules

    first = enrich(synthetic_conversion(set_id="1.2.250.1.999.1", ins=shared_record.ins),
                   DIRECTORY, shared_record.reader)
    view = BundleView(first.bundle)
    assigned = ensure_practitioner(view, {"resourceType": "Practitioner", "identifier": [
        {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": ASSIGNED}]})
    view.first("CareTeam")["participant"].append({  # as the page's assignment writes it
        "member": {"reference": assigned}, "role": [{"text": "Infirmier(e)"}],
        "extension": [origin_extension(load_rules(), source=None,
                                       added_by="assigned by the coordinator 810000000017")]})
    shared_record.store(first.bundle)
    corrected = enrich(
        _second_stay(shared_record, set_id="1.2.250.1.999.1", hospital="1750803447"), DIRECTORY,
        shared_record.reader)
    assert _participant_of(corrected.bundle, ASSIGNED) is not None
    assert _participant_of(corrected.bundle, NURSE) is None  # the letter's nurse, dropped


def test_the_first_stays_coordinator_keeps_their_original_period(
    shared_record: SharedRecord,
) -> None:
    _first_stay(shared_record)
    second = enrich(_second_stay(shared_record), DIRECTORY, shared_record.reader)
    coordinator = _participant_of(second.bundle, "810000000017")
    assert coordinator is not None
    origin = {p["url"]: p for p in coordinator["extension"][0]["extension"]}
    assert origin["source"]["valueIdentifier"]["value"] == "1.2.250.1.999.1.1"


def test_an_unreachable_shared_record_leaves_the_letter_unmerged_and_says_so() -> None:
    """Reads happen before the 202: a record that does not answer is not waited for again."""
    now = [0.0]
    reader = RestCareTeams(f"http://127.0.0.1:{free_port()}/fhir", timeout=1.0, pause=30.0,
                           clock=lambda: now[0])
    first = enrich(_second_stay(SharedRecord(reader, print, PATIENT)), DIRECTORY, reader)
    warnings = [i["diagnostics"] for i in first.report["issue"] if i["severity"] == "warning"]
    assert any("not merged" in w and "could not be searched" in w for w in warnings)
    assert _participant_of(first.bundle, "801111111111") is not None  # the letter's own team
    now[0] = 10.0  # within the pause: not asked again
    again = enrich(_second_stay(SharedRecord(reader, print, PATIENT)), DIRECTORY, reader)
    assert any("a moment ago" in i["diagnostics"] for i in again.report["issue"])


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


def test_a_next_page_on_another_server_is_not_followed_with_our_token() -> None:
    """The record's answer names the next page; liaison's bearer token goes only to the
    record's own base URL."""
    from fastapi import FastAPI, Request

    from adapter.errors import TargetUnavailable
    from tests.support.servers import serve_app

    asked_elsewhere: list[str | None] = []
    elsewhere = FastAPI()

    @elsewhere.get("/{path:path}")
    def collect(request: Request) -> dict[str, str]:
        asked_elsewhere.append(request.headers.get("authorization"))
        return {"resourceType": "Bundle"}

    with serve_app(elsewhere) as other:
        record = FastAPI()

        @record.get("/fhir/Patient")
        def patients() -> dict[str, Any]:
            return {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}],
                    "link": [{"relation": "next", "url": f"{other}/fhir/Patient?page=2"}]}

        with serve_app(record) as base:
            reader = RestCareTeams(f"{base}/fhir", headers=lambda: {"Authorization": "Bearer x"})
            with pytest.raises(TargetUnavailable, match="next page elsewhere"):
                reader.patient_ids([(INS, PATIENT)])
    assert asked_elsewhere == []
