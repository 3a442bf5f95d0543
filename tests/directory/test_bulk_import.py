"""What the fast paths of the national import must not change: absent values stored as NULL,
connection settings put back, an interrupted import resumed by running it again."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from adapter.directory.importer import import_path
from adapter.directory.national import NATIONAL_ROLE_COLUMNS, NationalImporter, RowWriter
from adapter.directory.sources import open_source
from adapter.directory.synthetic import write_national_extract
from adapter.directory.writer import ImportSummary, table_of
from adapter.directory.writer_process import WriterFailed
from adapter.store.db import engine_for, init_db
from adapter.store.directory_tables import DirectoryPractitioner, DirectoryRole
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


def _import_in_chunks(
    engine: Engine, path: Path, *, fork_writer: bool = True, row_writer: Any = None
) -> ImportSummary:
    """Import with small chunks, so a file of a few thousand lines goes through the writer
    process as a national-size file does."""
    importer = NationalImporter(
        engine, chunk_lines=400, fork_writer=fork_writer, row_writer=row_writer
    )
    with open_source(path, "national") as source:
        return importer.run(source.stream, source.name)


def _check_chunked_imports(engine: Engine, tmp_path: Path) -> None:
    lines = 3_000
    extract, changed = tmp_path / "extract.txt", tmp_path / "changed.txt"
    stats = write_national_extract(extract, lines, seed=4, change_every=10, changed_copy=changed)
    shorter = tmp_path / "shorter.txt"
    dropped = write_national_extract(shorter, lines, seed=4, drop_professionals_every=10)

    first = _import_in_chunks(engine, extract)
    assert (first.inserted, first.updated, first.rejected) == (lines, 0, 0)
    assert first.entities["practitioners"]["inserted"] == stats.professionals
    again = _import_in_chunks(engine, extract)
    assert (again.inserted, again.updated, again.unchanged, again.deactivated) == (0, 0, lines, 0)
    update = _import_in_chunks(engine, changed)
    assert (update.inserted, update.updated) == (0, lines // 10)
    assert update.entities["practitioners"]["updated"] == 0
    gone = _import_in_chunks(engine, shorter)  # ids seen by the writer process count as seen
    assert gone.deactivated == dropped.dropped_professionals > 0
    with engine.connect() as connection:
        active = connection.execute(
            select(practitioners.c.id).where(practitioners.c.active.is_(True))
        ).all()
        phones = connection.execute(select(roles.c.phone).where(roles.c.active.is_(True))).all()
    assert len(active) == stats.professionals - dropped.dropped_professionals
    assert all(phone is not None for (phone,) in phones)


def test_a_file_of_many_chunks_written_by_the_writer_process_imports_the_same(
    engine: Engine, tmp_path: Path
) -> None:
    _check_chunked_imports(engine, tmp_path)


def test_the_same_file_written_in_process_gives_the_same_counts(
    engine: Engine, tmp_path: Path
) -> None:
    extract = tmp_path / "extract.txt"
    write_national_extract(extract, 2_000, seed=6)
    forked = _import_in_chunks(engine, extract)
    other = engine_for(f"sqlite:///{tmp_path / 'other.db'}")
    init_db(other)
    try:
        alone = _import_in_chunks(other, extract, fork_writer=False)
        assert forked.as_dict() | {"source": ""} == alone.as_dict() | {"source": ""}
        query = select(roles.c.role_key, roles.c.line_hash, roles.c.postcode).order_by(roles.c.id)
        with engine.connect() as one, other.connect() as two:
            assert one.execute(query).all() == two.execute(query).all()
    finally:
        other.dispose()


@pytest.mark.postgres
def test_the_writer_process_works_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    engine = engine_for(postgres_url)
    init_db(engine)
    try:
        _check_chunked_imports(engine, tmp_path)
    finally:
        engine.dispose()


class _FailingInTheWriterProcess(RowWriter):
    """A RowWriter whose writes fail in any process but the importer's (named by pid in the
    environment, which the spawned writer process inherits)."""

    def write(self, connection: Any, chunk: Any) -> Any:
        if os.getpid() != int(os.environ["LIAISON_TEST_IMPORTER_PID"]):
            raise OSError("disk full")
        return super().write(connection, chunk)


def test_a_failure_in_the_writer_process_stops_the_import_with_its_reason(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database failing half-way cannot be produced on demand: the writer process's write fails.
    extract = tmp_path / "extract.txt"
    write_national_extract(extract, 2_000, seed=8)
    monkeypatch.setenv("LIAISON_TEST_IMPORTER_PID", str(os.getpid()))
    with pytest.raises(WriterFailed, match="OSError: disk full"):
        _import_in_chunks(engine, extract, row_writer=_FailingInTheWriterProcess)
    assert gc.isenabled()
    with engine.connect() as connection:
        written = connection.execute(select(roles.c.id)).all()
    assert len(written) == 400  # the first chunk, written by the importer itself
    resumed = _import_in_chunks(engine, extract)
    assert (resumed.inserted, resumed.unchanged) == (1_600, 400)


def test_a_field_holding_the_pipe_separator_character_reaches_the_writer_process_intact(
    engine: Engine, tmp_path: Path
) -> None:
    # Rows cross to the writer process joined by U+001F; a line holding it must survive.
    extract = tmp_path / "extract.txt"
    plain = tmp_path / "plain.txt"
    write_national_extract(plain, 1_000, seed=3)
    lines = plain.read_text(encoding="utf-8").splitlines()
    fields = lines[-1].split("|")
    fields[7] = "MARTIN\x1fDUPONT"  # Nom d'exercice
    extract.write_text("\n".join([*lines[:-1], "|".join(fields)]) + "\n", encoding="utf-8")
    summary = _import_in_chunks(engine, extract)
    assert (summary.inserted, summary.rejected) == (1_000, 0)
    with engine.connect() as connection:
        family = connection.execute(
            select(practitioners.c.family).where(practitioners.c.idnat == fields[2])
        ).scalar_one()
    assert family == "MARTIN\x1fDUPONT"
