"""Engine creation and schema set-up shared by every part of liaison.

Each part defines its own tables in its own module; `init_db` imports the modules named in
`MODEL_MODULES` so one `create_all` builds the whole schema, whatever part is started first.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from adapter.config import get_settings
from adapter.parts import optional

# Modules that declare SQLModel tables; a missing one is skipped so parts can land independently.
MODEL_MODULES = (
    "adapter.store.letters",
    "adapter.store.outbox",
    "adapter.directory.models",
    "adapter.record.models",
    "adapter.coordination.models",
)


def _import_models() -> None:
    for name in MODEL_MODULES:
        optional(name)


# Pages of a new database file. A letter writes ~100 KB bodies (the letter, its bundle, its
# DocumentReference) and index rows spread over a dozen B-trees; SQLite writes each page of a
# commit to the WAL with two system calls, then copies it at the checkpoint: with 4 KB pages a
# delivered letter cost ~900 such calls. Larger pages cost more where a commit touches one row
# of a page: each touched page is written whole, and read whole when it is not cached. Measured
# with a record of 1,500 letters (delivery in batches of 8, CPU per letter): 4 KB 7.9 ms, 8 KB
# 7.2–7.5, 16 KB 8.3–8.9; with time-ordered ids (`adapter.ids`) 4 KB 6.5–7.0, 8 KB 5.4–6.5,
# 16 KB 6.3–6.7.
# A file that exists keeps the page size it has.
PAGE_SIZE = 8192
CACHE_KIB = 16384  # page cache per connection (SQLite's default is 2 MB)
_BACKSTOP_BYTES = 32 * 1024 * 1024  # WAL size at which a commit checkpoints by itself


def _tune_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the API read while the pusher writes; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL: only a new file takes it
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
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
    reopen a file its owner is deleting)."""
    reference = weakref.ref(engine)
    disposed = threading.Event()
    event.listen(engine, "engine_disposed", lambda _engine: disposed.set())

    def run() -> None:
        while not disposed.wait(_CHECKPOINT_SECONDS):
            current = reference()
            if current is None:
                return
            try:
                with current.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # the file is gone (tests) or busy: the backstop remains
                pass
            del current

    threading.Thread(target=run, name=f"sqlite-checkpoint {engine.url.database}",
                     daemon=True).start()


def engine_for(url: str) -> Engine:
    """A new engine for `url`, with SQLite tuned for concurrent readers and one writer."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _tune_sqlite)
        if ":memory:" not in url and url.rstrip("/") not in ("sqlite:", "sqlite+pysqlite:"):
            _checkpoint_in_background(engine)
    else:
        engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    return engine


def can_share(engine: Engine) -> bool:
    """Whether another process can open this database (not an in-memory SQLite one)."""
    return not (
        engine.url.get_backend_name() == "sqlite"
        and engine.url.database in (None, "", ":memory:")
    )


_creating = threading.Lock()


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for `url` (default: the configured database), schema created.

    Threads asking for a new database at once (the first letters of a fresh data dir) create
    its schema one after the other: two concurrent `create_all` fail with "already exists"."""
    with _creating:
        engine = engine_for(url or get_settings().resolved_database_url)
        init_db(engine)
        return engine


def init_db(engine: Engine) -> None:
    _import_models()
    existing = set(inspect(engine).get_table_names())
    SQLModel.metadata.create_all(engine)
    add_missing_columns(engine)
    fill_new_tables(engine, existing)


def fill_new_tables(engine: Engine, existing: set[str]) -> None:
    """A table added to a database that already had tables: `info={"backfill": SQL}` on it
    fills it from what was there (a fresh database has nothing to fill)."""
    if not existing:
        return
    for table in SQLModel.metadata.sorted_tables:
        if table.name not in existing and table.info.get("backfill"):
            with engine.begin() as connection:
                connection.exec_driver_sql(table.info["backfill"])


def add_missing_columns(engine: Engine) -> None:
    """Columns added to a table after a database was created: `create_all` makes missing
    tables only. A new column is nullable (or has a server default); `info={"backfill": SQL}`
    on it fills the rows that existed before, e.g. from another column."""
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    for table in SQLModel.metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
                if column.info.get("backfill"):
                    connection.exec_driver_sql(
                        f"UPDATE {table.name} SET {column.name} = {column.info['backfill']}")
                for index in table.indexes:
                    if column in index.columns.values():
                        index.create(connection, checkfirst=True)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
