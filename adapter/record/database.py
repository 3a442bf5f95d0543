"""Which database holds the embedded record.

On SQLite the record gets a file of its own beside liaison's (`liaison.db` → `liaison.record.db`):
SQLite has one writer per file, and a record transaction (a letter's 30 resources, their
history, index rows and read grants) holds it ten times longer than accepting a letter does.
In one file, hospitals waiting for their 202 queued behind deliveries; in two, acceptance and
delivery write side by side. Nothing spans the two: the record is a FHIR server of its own, fed
by the outbox like any external one (a delivery is committed in the record, then marked
delivered in liaison's file; a crash between the two only resends an idempotent transaction).

On PostgreSQL (row locks, many writers) the record shares liaison's database, unless
`LIAISON_RECORD_DATABASE_URL` names another one.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from adapter.config import get_settings

RECORD_SUFFIX = ".record.db"


def _sqlite_file(engine: Engine) -> Path | None:
    if engine.dialect.name != "sqlite":
        return None
    name = engine.url.database
    return Path(name) if name and name != ":memory:" else None


def _holds_record(engine: Engine) -> bool:
    """A database from before the split, whose record must stay where it is."""
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT 1 FROM record_resource LIMIT 1")).first() \
                is not None
    except SQLAlchemyError:  # no record table there
        return False


def record_engine(engine: Engine) -> Engine:
    """The engine of the record's database, for liaison's database `engine`."""
    from adapter.store.db import get_engine

    configured = get_settings().record_database_url
    if configured:
        return get_engine(configured)
    main_file = _sqlite_file(engine)
    if main_file is None or main_file.name.endswith(RECORD_SUFFIX):
        return engine
    record_file = main_file.with_name(main_file.stem + RECORD_SUFFIX)
    if not record_file.exists() and _holds_record(engine):
        return engine
    return get_engine(f"sqlite:///{record_file}")
