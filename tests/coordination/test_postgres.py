"""The coordination tables work the same on PostgreSQL (opposition, subscriptions, availability)."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from adapter.coordination import consent, living_directory, subscriptions
from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.coordinators import CsvCoordinators
from adapter.coordination.enrichment import enrich
from adapter.store import outbox
from adapter.store.db import get_engine, session_scope
from tests.coordination.letters import INS, synthetic_conversion
from tests.support.paths import FIXTURES

pytestmark = pytest.mark.postgres
DIRECTORY = CsvCoordinators(FIXTURES / "coordination" / "local_directory.csv")


def test_opposition_subscriptions_and_availability_on_postgresql(postgres_url: str) -> None:
    engine = get_engine(postgres_url)
    with session_scope(engine) as session:
        consent.record_decision(session, (INS, "279035121518989"), "oppose", source="cli")
    opposed = enrich(synthetic_conversion(), DIRECTORY, engine=engine)
    view = BundleView(opposed.bundle)
    recipients = {
        idnat
        for c in view.resources("Communication")
        for r in c["recipient"]
        for idnat in view.idnats_of(r["reference"])
    }
    assert recipients == {"801234567896"}
    with session_scope(engine) as session:
        subscriptions.create(
            session,
            {
                "resourceType": "Subscription",
                "criteria": "CommunicationRequest?event-type=SOR",
                "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/"},
            },
            None,
        )
    other = synthetic_conversion(ins="180000000000001")
    bundle = enrich(other, DIRECTORY, engine=engine).bundle
    locations = [f"X/{n}" for n in range(len(bundle["entry"]))]
    with Session(engine) as session:
        assert subscriptions.after_push(session, bundle, locations) == 1
        session.commit()
    assert outbox.counts(engine)["pending"] == 1
    with session_scope(engine) as session:
        update = living_directory.AvailabilityUpdate.from_json(
            {"idnat": "810000000041", "available_within": "1d", "skills": "wound-care"}
        )
        living_directory.save(session, update, "test")
    found = living_directory.search(engine, available_within_hours=24, skills=("wound-care",))
    assert [r["practitioner"]["identifier"]["value"] for r in found] == ["810000000041"]


def test_accept_path_reads_on_postgresql(postgres_url: str) -> None:
    """The coordinator cache's generation, the lean consent look-up, the audit insert and the
    record's care-team reader, on PostgreSQL (where the record shares liaison's database)."""
    from adapter.coordination.coordinators import DirectoryCoordinators
    from adapter.directory.importer import import_path
    from adapter.record.repository import Repository
    from adapter.store.coordination_tables import SharingAudit

    def team_of(bundle: dict) -> set[str]:
        view = BundleView(bundle)
        return {idnat for p in (view.first("CareTeam") or {}).get("participant", [])
                for idnat in view.idnats_of(p["member"]["reference"])}

    engine = get_engine(postgres_url)
    before = enrich(synthetic_conversion(), DirectoryCoordinators(engine), engine=engine)
    assert "810000000017" not in team_of(before.bundle)  # the directory is empty
    import_path(engine, FIXTURES / "coordination" / "local_directory.csv")
    repository = Repository(engine)
    first = enrich(synthetic_conversion(), DirectoryCoordinators(engine), repository,
                   engine=engine)
    repository.transaction(first.bundle)
    second = enrich(
        synthetic_conversion(set_id="1.2.250.1.888.1", recipients=()),
        DirectoryCoordinators(engine), repository, engine=engine,
    )
    # the coordinator just imported, and the nurse carried over from the record's care team
    assert {"810000000017", "801234567896"} <= team_of(second.bundle)
    with session_scope(engine) as session:
        consent.record_decision(session, (INS, "279035121518989"), "oppose", source="cli")
        assert consent.is_opposed(session, [(INS, "279035121518989")])
    with Session(engine) as session:
        shared = session.exec(select(SharingAudit).where(SharingAudit.outcome == "shared")).all()
    assert shared  # the letters' decisions, written by the multi-row insert
