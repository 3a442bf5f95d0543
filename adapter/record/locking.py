"""Serialising the writes that must not race: two transactions creating "the same" Patient.

SQLite: one writer at a time (a process lock, then `BEGIN IMMEDIATE` across processes).
PostgreSQL: transaction-level advisory locks on the conditional keys of the bundle (taken in
sorted order, so two transactions never wait on each other in a cycle).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

_sqlite_writers: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _process_lock(engine: Engine) -> threading.Lock:
    with _registry_lock:
        return _sqlite_writers.setdefault(str(engine.url), threading.Lock())


@contextmanager
def write_session(engine: Engine, keys: Iterable[str] = ()) -> Iterator[Session]:
    """A session for one atomic write: commits on success, rolls back on any error."""
    lock = _process_lock(engine) if is_sqlite(engine) else None
    if lock is not None:
        lock.acquire()
    try:
        with Session(engine, expire_on_commit=False) as session:
            try:
                if lock is not None:
                    session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    lock_keys(session, keys)
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        if lock is not None:
            lock.release()


def lock_keys(session: Session, keys: Iterable[str]) -> None:
    """Advisory locks (PostgreSQL) held until the end of the transaction."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        session.connection().execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
        )
