"""Engines and units of work: SQLite tuned for one writer and concurrent readers, or PostgreSQL.

Nothing here knows the schema (`adapter.store.db` creates it), so the modules that declare
tables can use these helpers.
"""

from __future__ import annotations

import select
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlmodel import Session, SQLModel, create_engine

# Pages of a new database file. A letter writes ~100 KB bodies (the letter, its bundle, its
# DocumentReference) and index rows spread over a dozen B-trees; SQLite writes each page of a
# commit to the WAL with two system calls, then copies it at the checkpoint: with 4 KB pages a
# delivered letter cost ~900 such calls. Larger pages cost more where a commit touches one row
# of a page: each touched page is written whole, and read whole when it is not cached. 8 KB
# delivered fastest into a grown record (docs/benchmarks.md, "pages and ids").
# A file that exists keeps the page size it has.
PAGE_SIZE = 8192
CACHE_KIB = 16384  # page cache per connection (SQLite's default is 2 MB)
_BACKSTOP_BYTES = 32 * 1024 * 1024  # WAL size at which a commit checkpoints by itself
SQLITE_POOL = 40  # connections of a database file's pool (see `engine_for`)
BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for another's lock


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the pusher writes; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL: only a new file takes it
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    # Checkpoints are run by `_checkpoint_in_background`; the automatic one (in whichever
    # commit crosses the threshold, holding the write lock) only as a backstop.
    page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
    cursor.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_BYTES // page_size}")
    cursor.close()

_CHECKPOINT_SECONDS = 0.5


def _checkpoint_in_background(engine: Engine) -> None:
    """Copy the WAL back into the database file from a thread of its own (PASSIVE: never blocks
    readers or writers), so a commit does not pay a checkpoint — several ms, with its fsyncs —
    while every other writer waits for it. Ends when the engine is disposed of or dropped
    (a disposed engine may wait for the garbage collector a long time: a checkpoint then would
    reopen a file its owner is deleting). Disposing of the engine waits for a checkpoint in
    flight: one that began just before could otherwise open the file again while its owner
    deletes it (a new `-wal` in a folder being removed)."""
    reference = weakref.ref(engine)
    disposed = threading.Event()
    running = threading.Lock()

    def stop(disposed_of: Engine) -> None:
        with running:
            disposed.set()
            # a checkpoint begun as the pool was being replaced left its connection in the new one
            disposed_of.pool.dispose()

    event.listen(engine, "engine_disposed", stop)

    def run() -> None:
        while not disposed.wait(_CHECKPOINT_SECONDS):
            current = reference()
            if current is None:
                return
            with running:
                if disposed.is_set():
                    return
                try:
                    with current.connect() as connection:
                        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:  # the file is gone (tests) or busy: the backstop remains
                    pass
            del current

    threading.Thread(target=run, name=f"sqlite-checkpoint {engine.url.database}",
                     daemon=True).start()


def _closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled PostgreSQL connection the server has closed (restarted, or the backend
    terminated), so the pool opens a new one. An idle connection has nothing to read: the
    server only writes to it to say it is closing it (liaison never LISTENs), so a poll of its
    socket tells, without the round trip that SQLAlchemy's pre-ping sends at every checkout
    (a letter's preparation checks out several connections, each ping a wait for the server on
    a busy machine)."""
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise DisconnectionError("the database closed this connection")


def _compress_with_lz4(dbapi_connection: Any, _record: Any) -> None:
    """Large values (a letter's CDA, its bundle in the outbox, the bodies of the record's
    resources) compressed with lz4 rather than PostgreSQL's default pglz, which took most of
    the time of the inserts that store a letter, in its acceptance's transaction too; lz4's
    values came out no larger. A server without lz4 (before PostgreSQL 14, or built without
    it) refuses the setting: its values stay with pglz."""
    import psycopg

    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET default_toast_compression = lz4")
        dbapi_connection.commit()
    except psycopg.Error:
        dbapi_connection.rollback()


def engine_for(url: str) -> Engine:
    """A new engine for `url`, with SQLite tuned for concurrent readers and one writer."""
    if url.startswith("sqlite"):
        in_file = ":memory:" not in url and url.rstrip("/") not in ("sqlite:", "sqlite+pysqlite:")
        # A file's pool holds as many connections as the server has threads for requests
        # (anyio's 40): with SQLAlchemy's 5, many readers at once queued for one, and each
        # request beyond opened a connection (its pragmas, a cold page cache) to close it after.
        pool = {"pool_size": SQLITE_POOL, "max_overflow": 10} if in_file else {}
        connect = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(url, connect_args=connect, **pool)
        event.listen(engine, "connect", _tune_sqlite)
        if in_file:
            _checkpoint_in_background(engine)
    else:
        engine = create_engine(url, pool_size=10, max_overflow=20)
        event.listen(engine, "checkout", _closed_by_server)
        event.listen(engine, "connect", _compress_with_lz4)
    return engine


_READING = "_liaison_reading"  # where `reading` keeps an engine's read-only form


def reading(engine: Engine) -> Engine:
    """`engine` for work that only reads. On PostgreSQL its statements run without a
    transaction around them (autocommit): under READ COMMITTED each statement sees its own
    snapshot anyway, and the transaction cost two round trips a checkout (BEGIN, then the
    ROLLBACK that ends every use of a pooled connection), and the ROLLBACK made psycopg forget
    its prepared statements, so every statement was planned again. Never for writes: each
    statement would commit alone. Made once per engine and kept on it: making it costs as much
    as a short statement, on every read's path."""
    if engine.dialect.name != "postgresql":
        return engine
    made: Engine | None = engine.__dict__.get(_READING)
    if made is None:
        made = engine.__dict__[_READING] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return made


def can_share(engine: Engine) -> bool:
    """Whether another process can open this database (not an in-memory SQLite one)."""
    return not (
        engine.url.get_backend_name() == "sqlite"
        and engine.url.database in (None, "", ":memory:")
    )


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy table of a SQLModel class (for core statements: bulk inserts, joins)."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table
