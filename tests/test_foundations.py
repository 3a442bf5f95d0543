"""The foundations every part relies on: settings from the environment, the CLI entry point."""

from pathlib import Path

from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from adapter import __version__
from adapter.cli import app
from adapter.config import get_settings
from adapter.errors import LetterTooLarge, RefusedLetter


def test_settings_follow_the_data_dir_environment(liaison_env: Path) -> None:
    settings = get_settings()
    assert settings.data_dir == liaison_env
    assert settings.resolved_database_url == f"sqlite:///{liaison_env / 'liaison.db'}"
    assert settings.mappings_dir.is_dir()


def test_cli_prints_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_errors_carry_http_status_and_operation_outcome() -> None:
    error = LetterTooLarge("the letter is 30 MiB, over the 20 MiB limit")
    assert isinstance(error, RefusedLetter)
    assert error.http_status == 413
    outcome = error.operation_outcome()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"].startswith("the letter is 30 MiB")


def test_a_new_sqlite_file_gets_large_pages_and_an_existing_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    import sqlite3

    from adapter.store import db
    from adapter.store import engine as tuning

    old = tmp_path / "old.db"  # created by the version before, with its 16 KB pages
    with sqlite3.connect(old) as connection:
        connection.execute("PRAGMA page_size=16384")
        connection.execute("CREATE TABLE kept (value TEXT)")
        connection.execute("INSERT INTO kept VALUES ('still here')")
    assert tuning.PAGE_SIZE != 16384
    for path, page_size in ((tmp_path / "new.db", tuning.PAGE_SIZE), (old, 16384)):
        engine = db.engine_for(f"sqlite:///{path}")
        try:
            db.init_db(engine)
            with engine.connect() as connection:
                def pragma(name: str) -> int:
                    return int(connection.exec_driver_sql(f"PRAGMA {name}").scalar_one())

                assert pragma("page_size") == page_size
                assert pragma("cache_size") == -tuning.CACHE_KIB
                # the automatic checkpoint stays at the same WAL size whatever the page size
                assert pragma("wal_autocheckpoint") * page_size == 32 * 1024 * 1024
        finally:
            engine.dispose()
    with sqlite3.connect(old) as connection:
        assert connection.execute("SELECT value FROM kept").fetchall() == [("still here",)]


def test_conversion_processes_default_to_the_cores_left_by_the_server_and_the_pusher() -> None:
    import os

    from adapter.config import Settings

    cores = len(os.sched_getaffinity(0))
    assert Settings(convert_processes=None).resolved_convert_processes == max(1, cores - 2)
    assert Settings(convert_processes=0).resolved_convert_processes == 0  # in the server
    assert Settings(convert_processes=3).resolved_convert_processes == 3


def test_a_disposed_engine_stops_checkpointing_its_file(tmp_path: Path) -> None:
    import threading

    from adapter.store import db
    from adapter.store import engine as tuning

    path = tmp_path / "liaison.db"
    engine = db.engine_for(f"sqlite:///{path}")
    db.init_db(engine)
    checkpointer = next(t for t in threading.enumerate()
                        if t.name == f"sqlite-checkpoint {path}")
    engine.dispose()  # the engine object itself stays alive (referenced here)
    checkpointer.join(timeout=5)
    assert not checkpointer.is_alive()
    for name in ("liaison.db", "liaison.db-wal", "liaison.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    threading.Event().wait(tuning._CHECKPOINT_SECONDS * 2)
    assert list(tmp_path.iterdir()) == []  # nothing reopened the file


def test_disposing_of_an_engine_waits_for_its_checkpoint_in_flight(tmp_path: Path) -> None:
    """A checkpoint that began just before the engine was disposed of must be over when
    `dispose` returns: its owner deletes the file next, and the checkpoint would open it again
    (a benchmark's scratch folder failed to go, "Directory not empty")."""
    import threading

    from sqlalchemy import event

    from adapter.store import db

    path = tmp_path / "liaison.db"
    engine = db.engine_for(f"sqlite:///{path}")
    db.init_db(engine)
    in_flight, release = threading.Event(), threading.Event()

    def hold_the_checkpoint(*_: object) -> None:
        if threading.current_thread().name.startswith("sqlite-checkpoint"):
            in_flight.set()
            release.wait(30)

    event.listen(engine, "checkout", hold_the_checkpoint)
    assert in_flight.wait(30)
    returned = threading.Event()
    disposer = threading.Thread(target=lambda: (engine.dispose(), returned.set()))
    disposer.start()
    returned_while_in_flight = returned.wait(1.0)  # with the rule it cannot return: no race
    release.set()
    disposer.join(30)
    assert not returned_while_in_flight
    checkpointer = next((t for t in threading.enumerate()
                         if t.name == f"sqlite-checkpoint {path}"), None)
    if checkpointer is not None:
        checkpointer.join(30)
        assert not checkpointer.is_alive()
    assert engine.pool.checkedin() == 0  # no connection of the checkpoint left open


def test_a_postgresql_connection_the_server_closed_is_not_handed_out_again(
        postgres_url: str) -> None:
    """The server restarted or ended the pool's connections while they were idle: the next
    unit of work gets a new one, not an error (the pool does not ping at every checkout)."""
    from sqlalchemy import create_engine, text

    from adapter.store.engine import engine_for

    engine = engine_for(postgres_url)
    admin = create_engine(postgres_url, poolclass=NullPool)
    try:
        with engine.connect() as first, engine.connect() as second:  # two idle in the pool
            pids = {c.execute(text("SELECT pg_backend_pid()")).scalar() for c in (first, second)}
        with admin.connect() as connection:
            ended = connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE pid = ANY(:pids)"), {"pids": list(pids)}).scalars().all()
        assert ended == [True, True]
        alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)")
        while True:  # until the backends have exited (a new transaction sees the activity anew)
            with admin.connect() as connection:
                if not connection.execute(alive, {"pids": list(pids)}).scalar():
                    break
        for _ in range(2):
            with engine.connect() as connection:
                pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
                assert pid not in pids
    finally:
        engine.dispose()
        admin.dispose()


def test_reads_on_postgresql_keep_their_prepared_statements(postgres_url: str) -> None:
    """A statement a process reads with again and again is planned once per connection: the
    transaction's ROLLBACK that ended each use made psycopg drop its prepared statements."""
    from sqlalchemy import text

    from adapter.store.engine import engine_for, reading

    engine = engine_for(postgres_url)
    try:
        for n in range(8):  # psycopg prepares a statement at its fifth run on a connection
            with reading(engine).connect() as connection:
                connection.execute(text("SELECT CAST(:n AS integer) + 41"), {"n": n})
        with reading(engine).connect() as connection:
            prepared = connection.execute(
                text("SELECT statement FROM pg_prepared_statements")).scalars().all()
        assert any("+ 41" in statement for statement in prepared), prepared
        assert reading(engine) is reading(engine)  # made once, not at every read
    finally:
        engine.dispose()
