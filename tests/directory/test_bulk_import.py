"""What the fast paths of the national import must not change: absent values stored as NULL,
connection settings put back, an interrupted import resumed by running it again."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from adapter.directory.importer import import_path
from adapter.directory.models import DirectoryPractitioner, DirectoryRole
from adapter.directory.national import NATIONAL_ROLE_COLUMNS
from adapter.directory.synthetic import write_national_extract
from adapter.directory.writer import table_of
from adapter.store.db import engine_for, init_db
from tests.directory.conftest import NATIONAL_SAMPLE

practitioners = table_of(DirectoryPractitioner)
roles = table_of(DirectoryRole)
TEXT_COLUMNS = {
    "directory_practitioner": [c.name for c in practitioners.columns if c.name != "id"],
    "directory_role": list(NATIONAL_ROLE_COLUMNS),
}


def _assert_absent_values_are_null(engine: Engine) -> None:
    with engine.connect() as connection:
        for table, columns in TEXT_COLUMNS.items():
            for column in columns:
                blank = connection.exec_driver_sql(
                    f"SELECT count(*) FROM {table} WHERE CAST({column} AS TEXT) = ''"
                ).scalar_one()
                assert blank == 0, f"{table}.{column} holds empty text"
        adeli = connection.execute(
            select(practitioners).where(practitioners.c.idnat == "0751234567")
        ).one()
        nurse_roles = connection.execute(
            select(roles).where(roles.c.practitioner_idnat == "0751234567")
        ).all()
    assert adeli.id_type == "ADELI" and adeli.rpps is None
    assert adeli.specialty_code is None and adeli.specialty_system is None
    assert nurse_roles and all(role.specialty_code is None for role in nurse_roles)


def test_absent_values_of_the_extract_are_stored_as_null_not_empty_text(engine: Engine) -> None:
    import_path(engine, NATIONAL_SAMPLE)
    _assert_absent_values_are_null(engine)
    import_path(engine, NATIONAL_SAMPLE)  # the re-import path writes nothing, changes nothing
    _assert_absent_values_are_null(engine)


@pytest.mark.postgres
def test_absent_values_are_stored_as_null_on_postgresql_too(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    init_db(engine)
    try:
        import_path(engine, NATIONAL_SAMPLE)
        _assert_absent_values_are_null(engine)
    finally:
        engine.dispose()


def test_an_import_puts_the_connection_settings_and_the_collector_back(engine: Engine) -> None:
    def settings() -> tuple[int, int, int, int]:
        with engine.connect() as connection:
            return tuple(  # type: ignore[return-value]
                connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                for name in ("cache_size", "temp_store", "wal_autocheckpoint", "synchronous")
            )

    before = settings()
    assert before[3] == 1  # NORMAL, the engine's setting
    import_path(engine, NATIONAL_SAMPLE)
    assert settings() == before
    assert gc.isenabled()


class Interrupted(Exception):
    pass


def test_an_interrupted_first_import_is_resumed_by_running_it_again(
    engine: Engine, tmp_path: Path
) -> None:
    extract = tmp_path / "PS_LibreAcces_Personne_activite_big.txt"
    write_national_extract(extract, 45_000, seed=13)  # three chunks of 20,000 lines

    def stop_after_first_chunk(consumed: int) -> None:
        raise Interrupted  # what Ctrl-C after the first commit does

    with pytest.raises(Interrupted):
        import_path(engine, extract, progress=stop_after_first_chunk)
    assert gc.isenabled()
    with engine.connect() as connection:
        written = connection.execute(select(roles.c.id)).all()
    assert len(written) == 20_000  # the first chunk is committed, the rest is not there

    resumed = import_path(engine, extract)
    assert (resumed.inserted, resumed.unchanged, resumed.rejected) == (25_000, 20_000, 0)
    again = import_path(engine, extract)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 45_000)


def test_the_changed_copy_differs_from_its_extract_in_exactly_the_changed_lines(
    tmp_path: Path,
) -> None:
    extract, changed = tmp_path / "a.txt", tmp_path / "b.txt"
    stats = write_national_extract(extract, 1_000, seed=2, change_every=10, changed_copy=changed)
    alone = tmp_path / "c.txt"
    write_national_extract(alone, 1_000, seed=2, change_every=10)
    original, modified = extract.read_text().splitlines(), changed.read_text().splitlines()
    assert len(original) == len(modified) == 1_001
    differing = [i for i, (a, b) in enumerate(zip(original, modified, strict=True)) if a != b]
    assert len(differing) == stats.changed_lines == 100
    assert alone.read_text() == changed.read_text()  # the same changes as a changed extract
