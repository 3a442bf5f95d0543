"""What enrichment reads for every accepted letter is cheap, and never stale: a coordinator just
imported, a withdrawn opposition, a carer just added to the record are seen by the next letter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, func, select

from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import get_settings
from adapter.coordination import consent, coordinate
from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.careteam_merge import known_carers
from adapter.coordination.coordinators import DirectoryCoordinators
from adapter.coordination.enrichment import enrich
from adapter.coordination.record_reader import RecordCareTeams
from adapter.coordination.rest_record import RestCareTeams
from adapter.directory.importer import import_path
from adapter.mapping import convert_letter
from adapter.record.repository import Repository
from adapter.store.coordination_tables import ConsentDecision, SharingAudit
from adapter.store.db import get_engine, session_scope
from tests.coordination.letters import INS, addressed, synthetic_conversion
from tests.support.letter_variants import INS_SYSTEM, ins_of, letter_variant
from tests.support.paths import FIXTURES
from tests.support.servers import serve_app

DIRECTORY_CSV = FIXTURES / "coordination" / "local_directory.csv"
COORDINATOR = "810000000017"  # CPTS-PARIS-CENTRE, covers 75005-75015
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
PATIENT = "279035121518989"


def _team(bundle: dict[str, Any]) -> set[str]:
    view = BundleView(bundle)
    care_team = view.first("CareTeam") or {}
    return {
        idnat
        for participant in care_team.get("participant") or []
        for idnat in view.idnats_of(participant["member"]["reference"])
    }


def _directory_without_coordinators(tmp_path: Path) -> Path:
    lines = DIRECTORY_CSV.read_text(encoding="utf-8").splitlines()
    kept = [lines[0], *(line for line in lines[1:] if ",coordinator," not in line)]
    path = tmp_path / "local_directory.csv"  # same source name: a full re-import of it
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def test_a_coordinator_imported_into_the_directory_is_added_by_the_next_letter(
    tmp_path: Path,
) -> None:
    engine = get_engine()
    before = enrich(synthetic_conversion(), DirectoryCoordinators(engine), engine=engine)
    assert COORDINATOR not in addressed(before.bundle)  # the directory is empty

    import_path(engine, DIRECTORY_CSV)
    after = enrich(synthetic_conversion(), DirectoryCoordinators(engine), engine=engine)
    assert COORDINATOR in addressed(after.bundle) and COORDINATOR in _team(after.bundle)

    # a full re-import without the coordinator rows leaves them inactive: no longer added
    import_path(engine, _directory_without_coordinators(tmp_path))
    gone = enrich(synthetic_conversion(), DirectoryCoordinators(engine), engine=engine)
    assert COORDINATOR not in addressed(gone.bundle)


def test_coordinators_are_read_from_the_directory_once_until_it_changes() -> None:
    engine = get_engine()
    import_path(engine, DIRECTORY_CSV)
    first = DirectoryCoordinators(engine).coordinators()
    assert COORDINATOR in {c.identifier[1] for c in first}
    assert DirectoryCoordinators(engine).coordinators() is first  # kept, not rebuilt
    import_path(engine, DIRECTORY_CSV)  # an import run, even one changing nothing
    again = DirectoryCoordinators(engine).coordinators()
    assert again is not first and again == first


def _record(session: Session, decision: str) -> None:
    consent.record_decision(session, (INS_NIR, PATIENT), decision, source="cli")


def test_a_withdrawn_opposition_is_seen_by_the_next_letter() -> None:
    engine = get_engine()
    import_path(engine, DIRECTORY_CSV)
    with session_scope(engine) as session:
        _record(session, "oppose")  # under the INS-NIR; the letter carries the test INS
    opposed = coordinate(synthetic_conversion(), engine)
    assert COORDINATOR not in addressed(opposed.bundle)
    with session_scope(engine) as session:
        _record(session, "withdraw")
    withdrawn = coordinate(synthetic_conversion(), engine)
    assert COORDINATOR in addressed(withdrawn.bundle)
    with session_scope(engine) as session:
        _record(session, "oppose")
    assert COORDINATOR not in addressed(coordinate(synthetic_conversion(), engine).bundle)


@pytest.mark.parametrize("history", [[], ["oppose"], ["oppose", "withdraw"],
                                     ["withdraw", "oppose"], ["oppose", "withdraw", "oppose"]])
def test_is_opposed_agrees_with_the_decision_in_force(history: list[str]) -> None:
    engine = get_engine()
    for decision in history:
        with session_scope(engine) as session:
            _record(session, decision)
    letter_ids = [(INS, PATIENT), ("urn:oid:1.2.250.1.213.1.4.8.1", "IPP1")]
    with Session(engine) as session:
        in_force = consent.current_decision(session, letter_ids)
        assert consent.is_opposed(session, letter_ids) == (
            in_force is not None and in_force.decision == "oppose")
        assert consent.is_opposed(session, letter_ids) == (history[-1:] == ["oppose"])


class CountingRepository(Repository):
    """The real record, counting what the care-team merge asks of it."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.searches = 0
        self.reads = 0

    def search(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.searches += 1
        return super().search(*args, **kwargs)

    def read(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.reads += 1
        return super().read(*args, **kwargs)


def test_a_letter_about_a_patient_the_record_does_not_know_searches_nothing() -> None:
    engine = get_engine()
    repository = CountingRepository(engine)
    repository.transaction(enrich(synthetic_conversion(), record=repository).bundle)
    assert repository.searches == 0  # the record had no such patient yet: one token look-up

    enrich(synthetic_conversion(set_id="1.2.250.1.999.2"), record=repository)
    assert (repository.searches, repository.reads) == (1, 0)  # teams and members at once


def _carers(record: Any, ins: str) -> list[tuple[Any, ...]]:
    found = known_carers(record, [(INS_SYSTEM, ins), ("urn:oid:1.2.250.1.213.1.4.9", "x")])
    return [(c.idnat, c.practitioner, c.roles, c.period, c.extensions, c.care_team_identifier)
            for c in found]


def test_the_embedded_records_reader_finds_the_carers_a_fhir_search_over_rest_finds() -> None:
    """The two implementations of the record port agree: the embedded record's own reader and
    `RestCareTeams` searching the same record through its FHIR API (`_include`)."""
    engine = get_engine()
    repository = Repository(engine)
    # two stays of one patient (members are PractitionerRoles of Practitioners), one of another
    for variant, patient in ((1, 1), (2, 1), (3, 3)):
        letter = convert_letter(letter_variant(variant, patient=patient))
        repository.transaction(coordinate(letter, engine).bundle)
    with serve_app(create_app(get_settings()), probe_path="/healthz") as base:
        token = issue_token("system")
        rest = RestCareTeams(f"{base}/fhir",
                             headers=lambda: {"Authorization": f"Bearer {token}"})
        embedded = RecordCareTeams(repository)
        fast = _carers(embedded, ins_of(1))
        assert len(fast) >= 3 and all(idnat for idnat, *_ in fast)
        assert fast == _carers(rest, ins_of(1))
        assert _carers(embedded, ins_of(2)) == _carers(rest, ins_of(2)) == []

        # a member deleted from the record since is skipped by both alike
        team = repository.search("CareTeam", [("subject:Patient.identifier", f"{INS_SYSTEM}|"
                                               f"{ins_of(1)}")])["entry"][0]["resource"]
        role = next(p["member"]["reference"] for p in team["participant"]
                    if p["member"]["reference"].startswith("PractitionerRole/"))
        repository.delete(*role.split("/"))
        after = _carers(embedded, ins_of(1))
        assert after != fast  # that participation no longer gives its person
        assert after == _carers(rest, ins_of(1))


def test_a_professional_added_to_the_care_team_in_the_record_is_kept_by_the_next_letter() -> None:
    repository = Repository(get_engine())
    repository.transaction(enrich(synthetic_conversion(), record=repository).bundle)
    newcomer = "801111111111"
    second = enrich(
        synthetic_conversion(set_id="1.2.250.1.888.1", hospital="1690000001",
                             recipients=((newcomer, "ROCHE", "Paul", None),)),
        record=repository,
    )
    repository.transaction(second.bundle)  # the record's care team now has Paul ROCHE too
    third = enrich(
        synthetic_conversion(set_id="1.2.250.1.777.1", hospital="1330000001", recipients=()),
        record=repository,
    )
    assert {newcomer, "801234567896"} <= _team(third.bundle)
    assert newcomer in addressed(third.bundle)


def _audit_rows(engine: Any) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(SharingAudit)).one()


def test_sharing_decisions_are_written_with_the_commit_and_dropped_by_a_rollback() -> None:
    engine = get_engine()
    noted = dict(letter_id="L1", patient_value=PATIENT, action="care-team",
                 target="801234567896", outcome="shared", reason="named recipient")
    with session_scope(engine) as session:
        consent.audit(session, **noted)
        consent.audit(session, **{**noted, "target": "801984758437"})
    assert _audit_rows(engine) == 2
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        consent.audit(session, **noted)
        raise RuntimeError("the letter is refused after all")
    with Session(engine) as session:  # a session rolled back, then used for other work
        consent.audit(session, **noted)
        session.rollback()
        session.add(ConsentDecision(patient_system=INS_NIR, patient_value="1", decision="oppose"))
        session.commit()
    assert _audit_rows(engine) == 2
    with Session(engine) as session:
        targets = session.exec(select(SharingAudit.target).order_by(SharingAudit.id)).all()
    assert targets == ["801234567896", "801984758437"]
