"""The database of liaison: the process-wide engine of a URL, with the whole schema created.

Every table is declared in this package (`letters`, `outbox`, `record_tables`,
`directory_tables`, `coordination_tables`, `mssante_tables`, `notice_tables`,
`session_tables`): one `create_all` builds the schema, whatever part is started first, and the
parts above use the tables without creating them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from adapter.config import get_settings
from adapter.store import (  # noqa: F401  (their tables join SQLModel.metadata)
    coordination_tables,
    directory_tables,
    letters,
    mssante_tables,
    notice_tables,
    outbox,
    record_tables,
    session_tables,
)
from adapter.store.engine import can_share, engine_for, session_scope

__all__ = ["can_share", "engine_for", "get_engine", "init_db", "session_scope"]

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
    with _schema_lock(engine):
        existing = set(inspect(engine).get_table_names())
        SQLModel.metadata.create_all(engine)
        add_missing_columns(engine)
        add_missing_indexes(engine, existing)
        fill_new_tables(engine, existing)


# PostgreSQL advisory lock key of the schema (any constant: liaison takes no other of this value)
_SCHEMA_LOCK = "liaison-schema"


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """Processes creating the schema of one PostgreSQL database one after the other: several
    instances (`liaison serve`, `liaison worker`) started together on a fresh database each ran
    `create_all`, and all but one died of a duplicate key in `pg_type` ("already exists").
    A session-level advisory lock on a connection of its own; the one waiting then finds the
    tables there. (SQLite is one host's file, not shared by instances: left as it was.)"""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"),
                           {"key": _SCHEMA_LOCK})
        connection.commit()  # the lock is the session's: no transaction left open meanwhile
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"),
                               {"key": _SCHEMA_LOCK})
            connection.commit()


def fill_new_tables(engine: Engine, existing: set[str]) -> None:
    """A table added to a database that already had tables: `info={"backfill": SQL}` on it
    fills it from what was there (a fresh database has nothing to fill)."""
    if not existing:
        return
    for table in SQLModel.metadata.sorted_tables:
        if table.name not in existing and table.info.get("backfill"):
            with engine.begin() as connection:
                connection.exec_driver_sql(table.info["backfill"])


def add_missing_indexes(engine: Engine, existing: set[str]) -> None:
    """Indexes added to a table after databases were created (`info={"upgrade": True}`):
    `create_all` makes missing tables only. Built once, at the first start of the version
    that added them: writes to that table wait meanwhile, reads go on."""
    inspector = inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        added = [index for index in table.indexes if index.info.get("upgrade")]
        if not added or table.name not in existing:
            continue
        present = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in added:
            if index.name not in present:
                with engine.begin() as connection:
                    index.create(connection)


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


