"""Where the embedded record lives: its own SQLite file beside liaison's (so delivering a
letter does not hold the write lock hospitals wait on), liaison's database on PostgreSQL, and
a database from before the split keeps its record where it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from adapter.config import get_settings
from adapter.record.repository import Repository
from adapter.store import db
from adapter.store.db import engine_for, get_engine, init_db

PATIENT = {"resourceType": "Patient", "identifier": [{"system": "urn:example", "value": "1"}]}


def _count(engine, table: str) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() or 0)


def test_on_sqlite_the_record_is_written_to_a_file_of_its_own(liaison_env: Path) -> None:
    main = get_engine()
    repository = Repository(main)
    repository.create(PATIENT)
    assert Path(repository.engine.url.database or "") == (
        liaison_env / "liaison.record.db").resolve()
    assert _count(repository.engine, "record_resource") == 1
    assert _count(main, "record_resource") == 0
    # every Repository of liaison's database finds the same record
    assert Repository(main).search("Patient", [])["total"] == 1


def test_a_database_from_before_the_split_keeps_its_record(
    liaison_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    main_url = get_settings().resolved_database_url
    monkeypatch.setenv("LIAISON_RECORD_DATABASE_URL", main_url)  # written as before the split
    get_settings.cache_clear()
    Repository(get_engine()).create(PATIENT)
    monkeypatch.delenv("LIAISON_RECORD_DATABASE_URL")
    get_settings.cache_clear()
    main = get_engine()
    assert Repository(main).engine is main
    assert Repository(main).search("Patient", [])["total"] == 1
    assert not (liaison_env / "liaison.record.db").exists()


def test_the_record_database_can_be_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "shared-record.db"
    monkeypatch.setenv("LIAISON_RECORD_DATABASE_URL", f"sqlite:///{elsewhere}")
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    Repository(get_engine()).create(PATIENT)
    assert _count(get_engine(f"sqlite:///{elsewhere}"), "record_resource") == 1


def test_on_postgresql_the_record_shares_liaisons_database(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    init_db(engine)
    try:
        repository = Repository(engine)
        assert repository.engine is engine
        repository.create(PATIENT)
        assert _count(engine, "record_resource") == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_database_from_before_an_index_was_added_gets_it_when_opened(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """An index added by a later version (`info={"upgrade": True}`) is built where it is
    missing when the database is opened; the rows already there are kept."""
    from sqlalchemy import inspect

    url = (request.getfixturevalue("postgres_url") if kind == "postgres"
           else f"sqlite:///{tmp_path / 'record.db'}")
    base = engine_for(url)
    init_db(base)
    repository = Repository(base)
    engine = repository.engine  # on SQLite, the record's file of its own
    try:
        repository.create(PATIENT)
        with engine.begin() as connection:  # as the previous version left it
            connection.execute(text("DROP INDEX ix_record_patient_grant_window"))
        init_db(engine)
        names = {index["name"] for index in inspect(engine).get_indexes("record_patient_grant")}
        assert "ix_record_patient_grant_window" in names
        assert _count(engine, "record_resource") == 1
    finally:
        engine.dispose()
        base.dispose()
