"""The AuditEvent-like trail of the record: one row per interaction, identifiers only.

Nothing clinical is written: the caller's kind and identifier, the action, the resource type and
id, the HTTP outcome and, for searches, how many resources were returned (never the criteria).

Rows are queued and written by one background thread in batches, so a request never waits for
the audit write (on SQLite it would queue behind the single writer); `flush()` waits until
everything queued is stored (tests, shutdown — it also runs at interpreter exit).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapter.auth.principal import Principal
from adapter.record.locking import write_session
from adapter.record.models import RecordAudit
from adapter.record.storage import insert_rows, utcnow

_AUDIT = RecordAudit.__table__
_BATCH = 500
_COLUMNS = ("at", "actor_kind", "actor", "action", "resource_type", "resource_id", "outcome",
            "result_count")
log = logging.getLogger(__name__)


class _AuditWriter:
    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Engine, dict[str, Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, engine: Engine, row: dict[str, Any]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="record-audit",
                                                daemon=True)
                self._thread.start()
        self._queue.put((engine, row))

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
    def _write(batch: list[tuple[Engine, dict[str, Any]]]) -> None:
        by_engine: dict[int, tuple[Engine, list[dict[str, Any]]]] = {}
        for engine, row in batch:
            by_engine.setdefault(id(engine), (engine, []))[1].append(row)
        for engine, rows in by_engine.values():
            try:
                with write_session(engine) as session:
                    write(session, rows)
            except Exception as error:  # the trail must not take the API down; say so loudly
                log.error("could not write %d audit rows: %s", len(rows),
                          error.__class__.__name__)

    def flush(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()


_writer = _AuditWriter()
atexit.register(_writer.flush)


def record(engine: Engine, principal: Principal | None, action: str, **details: Any) -> None:
    """Queue one audit row (`row(principal, action, **details)`), written within milliseconds
    by the audit thread."""
    queue_row(engine, row(principal, action, **details))


def queue_row(engine: Engine, audit_row: dict[str, Any]) -> None:
    """Queue a row built by `row` for the audit thread."""
    _writer.put(engine, audit_row)


def write(session: Session, rows: list[dict[str, Any]]) -> None:
    """Audit rows (`row(...)`) written in the caller's write transaction, stored by its commit
    with the changes they record: for a writer that already holds the record's write lock (the
    pusher's grouped transactions), where a queued row would cost the audit thread another
    lock, transaction and commit."""
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


def flush() -> None:
    """Wait until every queued audit row is stored."""
    _writer.flush()
