"""The AuditEvent-like trail of the record: one row per interaction, identifiers only.

Nothing clinical is written: the caller's kind and identifier, the action, the resource type and
id, the HTTP outcome and, for searches, how many resources were returned (never the criteria).

Nothing audited may be lost, not even on `kill -9`: the rows of a write are written in the
write's own transaction (`write`), and a read is answered only once its row is committed (the
route awaits `record`). Read rows are written by one thread that commits whatever rows are
waiting together (group commit, as urgent writes: a reader waits for one commit, not for a
queue; each batch wakes a waiting event loop once, not once per row), on SQLite into a file of
their own (`database.reads_audit_engine`), so that a read never waits for a record transaction.
`trail` reads both.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from adapter.auth.principal import Principal
from adapter.record.database import reads_audit_engine
from adapter.record.storage import insert_rows, utcnow
from adapter.store.engine import reading, table_of
from adapter.store.locking import is_sqlite, write_session
from adapter.store.record_tables import RecordAudit

_AUDIT = table_of(RecordAudit)
_BATCH = 500
_COLUMNS = ("at", "actor_kind", "actor", "action", "resource_type", "resource_id", "outcome",
            "result_count")
log = logging.getLogger(__name__)


_Waiting = tuple[Engine, dict[str, Any], "asyncio.Future[None]"]


class _AuditWriter:
    def __init__(self) -> None:
        self._queue: queue.Queue[_Waiting] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, engine: Engine, row: dict[str, Any], done: asyncio.Future[None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="record-audit",
                                                daemon=True)
                self._thread.start()
        self._queue.put((engine, row, done))

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)
            for _ in batch:
                self._queue.task_done()

    @staticmethod
    def _write(batch: list[_Waiting]) -> None:
        by_engine: dict[int, tuple[Engine, list[tuple[dict[str, Any], asyncio.Future[None]]]]] = {}
        for engine, row, done in batch:
            by_engine.setdefault(id(engine), (engine, []))[1].append((row, done))
        outcomes: dict[asyncio.AbstractEventLoop,
                       list[tuple[asyncio.Future[None], Exception | None]]] = {}
        for engine, waiting in by_engine.values():
            failure: Exception | None = None
            try:
                with _transaction(engine) as connection:
                    write(connection, [row for row, _ in waiting])
            except Exception as error:
                log.error("could not write %d audit rows: %s", len(waiting),
                          error.__class__.__name__)
                failure = error
            for _, done in waiting:
                outcomes.setdefault(done.get_loop(), []).append((done, failure))
        for loop, settled in outcomes.items():
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, settled)

    def flush(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()


_writer = _AuditWriter()
atexit.register(_writer.flush)


@contextlib.contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """SQLite: the writers' lock, taken as urgent writes do (`write_session`). PostgreSQL: the
    rows go in one statement (`write`: one COPY), which commits by itself in autocommit — no
    BEGIN and COMMIT round trips, nor an ORM session, around a read's row."""
    if is_sqlite(engine):
        with write_session(engine, urgent=True) as session:
            yield session.connection()
    else:
        with reading(engine).connect() as connection:
            yield connection


def _settle(settled: list[tuple[asyncio.Future[None], Exception | None]]) -> None:
    for done, failure in settled:
        if done.done():  # cancelled: its caller went away
            continue
        if failure is None:
            done.set_result(None)
        else:
            done.set_exception(failure)


async def record(engine: Engine, principal: Principal | None, action: str,
                 **details: Any) -> None:
    """Have one audit row (`row(principal, action, **details)`) committed: returns once it
    is, or raises the database's error."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    _writer.put(reads_audit_engine(engine), row(principal, action, **details), done)
    await done


def write(session: Session | Connection, rows: list[dict[str, Any]]) -> None:
    """Audit rows (`row(...)`) written in the caller's write transaction, stored by its commit
    with the changes they record (never one without the other)."""
    if rows:
        insert_rows(session, _AUDIT, _COLUMNS, [tuple(r[name] for name in _COLUMNS) for r in rows])


def row(
    principal: Principal | None,
    action: str,
    *,
    resource_type: str | None = None,
    resource_id: str | None = None,
    outcome: int = 200,
    result_count: int | None = None,
) -> dict[str, Any]:
    """One audit row: who, what, on which resource, with which outcome (nothing clinical)."""
    return {
        "at": utcnow(),
        # no principal: liaison itself (the pusher writing to its embedded record, the CLI)
        "actor_kind": principal.kind if principal else "internal",
        "actor": principal.actor if principal else None,
        "action": action[:16],
        "resource_type": (resource_type or "")[:64] or None,
        "resource_id": (resource_id or "")[:64] or None,
        "outcome": outcome,
        "result_count": result_count,
    }


def trail(engine: Engine) -> list[Row[Any]]:
    """Every audit row of the record whose engine is `engine` (writes' and reads'), oldest
    first; columns `_COLUMNS`."""
    query = select(*[_AUDIT.c[name] for name in _COLUMNS]).order_by(_AUDIT.c.id)
    rows: list[Row[Any]] = []
    for holder in dict.fromkeys((engine, reads_audit_engine(engine))):
        with holder.connect() as connection:
            rows += connection.execute(query).all()
    return sorted(rows, key=lambda found: found.at)  # stable: each file's order kept at ties


def flush() -> None:
    """Wait until every queued audit row is stored."""
    _writer.flush()
