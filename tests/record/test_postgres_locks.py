"""PostgreSQL's lock table is small and shared: a transaction touching thousands of patients
(a practitioner in many care teams changes; a bulk import) must not need one lock each, or it
fails with "out of shared memory" — and the letter that caused it is never delivered."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from adapter.auth.principal import DEFAULT_SCOPES, Principal
from adapter.config import get_settings
from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
PATIENTS = 1_500


@pytest.fixture
def small_lock_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Repository]:
    """A server whose lock table holds ~200 locks (10 per connection, 20 connections)."""
    server = PostgresServer().start("-c max_locks_per_transaction=10 -c max_connections=20")
    try:
        monkeypatch.setenv("LIAISON_DATABASE_URL", server.create_database("locks"))
        get_settings.cache_clear()
        get_engine.cache_clear()
        yield Repository(get_engine())
        get_engine().dispose()
    finally:
        get_engine.cache_clear()
        get_settings.cache_clear()
        server.stop()


def _patients(count: int) -> list[dict]:
    gp = {"reference": "Practitioner/gp"}
    resources: list[dict] = [{"resourceType": "Practitioner", "id": "gp", "identifier": [
        {"system": IDNAT_PS, "value": "810000000999"}]}]
    for n in range(count):
        patient = {"reference": f"Patient/p{n}"}
        resources += [{"resourceType": "Patient", "id": f"p{n}"},
                      {"resourceType": "CareTeam", "id": f"ct{n}", "status": "active",
                       "subject": patient, "participant": [{"member": gp}]}]
    return resources


def test_a_gp_in_thousands_of_care_teams_can_change(small_lock_table: Repository) -> None:
    repository = small_lock_table
    repository.import_resources(_patients(PATIENTS))  # grants of 1,500 patients at once
    with repository.engine.connect() as connection:  # and the planner's statistics made
        analysed = connection.exec_driver_sql(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'record_resource'"
        ).scalar()
    assert analysed is not None
    # the GP's identifier changes: every care team's grants are recomputed, in one transaction
    repository.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Practitioner", "id": "gp", "identifier": [
            {"system": IDNAT_PS, "value": "810000000998"}]},
        "request": {"method": "PUT", "url": "Practitioner/gp"}}]})
    reader = Principal(kind="professional", idnat="810000000998",
                       scopes=DEFAULT_SCOPES["professional"])
    found = repository.search("Patient", [("_summary", "count")], reader)
    assert found["total"] == PATIENTS
    assert os.environ["LIAISON_DATABASE_URL"].startswith("postgresql")


def test_a_write_takes_its_key_locks_in_two_statements(postgres_url: str) -> None:
    """A delivery's locks were one round trip each (~16 a letter, each a wait for the server
    on a busy machine): now one statement per level, the keys in their sorted order, held to
    the end of the transaction."""
    from sqlalchemy import text

    from adapter.store.engine import engine_for
    from adapter.store.locking import _SLOTS, _key_hash, write_session
    from tests.support.statements import caught

    engine = engine_for(postgres_url)
    keys = [f"patient-{n}" for n in range(12)]
    try:
        with caught(engine) as ran, write_session(engine, keys) as session:
            held = session.execute(text(
                "SELECT mode, count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid() GROUP BY mode ORDER BY mode")).all()
        locking = [statement for statement, _ in ran if "advisory" in statement
                   and "pg_locks" not in statement]
        assert len(locking) == 2, locking
        slots = len({_key_hash(key) % _SLOTS for key in keys})
        assert held == [("ExclusiveLock", len(keys)), ("ShareLock", slots)]
    finally:
        engine.dispose()
