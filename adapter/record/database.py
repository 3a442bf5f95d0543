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

On SQLite the audit rows of *reads* go to a third file beside the record's
(`liaison.record.db` → `liaison.record.audit.db`, table `record_audit`): a read is answered only
once its row is committed, and in the record's file that commit waited for whatever record
transaction held the writer's lock (a batch of letters: tens to hundreds of ms; a care team
change touching thousands of patients: seconds) — every pull did. The rows of *writes* stay in
the record's file, committed with the changes they record (`audit.trail` reads both).
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from adapter.config import get_settings
from adapter.store.engine import engine_for, table_of
from adapter.store.record_tables import RecordAudit

RECORD_SUFFIX = ".record.db"
AUDIT_SUFFIX = ".audit.db"
_READS_AUDIT = "_liaison_reads_audit"  # where `reads_audit_engine` keeps its engine
_making = threading.Lock()


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


def reads_audit_engine(engine: Engine) -> Engine:
    """The engine the audit rows of reads go to, for the record's engine `engine` (see the
    module doc): on a SQLite file, the file beside it, made once and disposed of with
    `engine`; otherwise `engine` itself. Asked at every read: once made, found without a
    lock."""
    made: Engine | None = engine.__dict__.get(_READS_AUDIT)
    if made is not None:
        return made
    record_file = _sqlite_file(engine)
    if record_file is None:
        return engine
    with _making:
        made = engine.__dict__.get(_READS_AUDIT)
        if made is None:
            made = engine_for(f"sqlite:///{record_file.with_name(record_file.stem + AUDIT_SUFFIX)}")
            _create_audit_table(made)
            event.listen(engine, "engine_disposed", lambda _engine, made=made: made.dispose())
            engine.__dict__[_READS_AUDIT] = made
    return made


def _create_audit_table(engine: Engine) -> None:
    # IF NOT EXISTS: the server's processes may open a fresh data dir at the same moment
    table = table_of(RecordAudit)
    with engine.begin() as connection:
        connection.execute(CreateTable(table, if_not_exists=True))
        for index in table.indexes:
            connection.execute(CreateIndex(index, if_not_exists=True))
