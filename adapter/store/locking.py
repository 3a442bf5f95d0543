"""Serialising the writes that must not race: two transactions creating "the same" Patient.

SQLite: one writer at a time (a process lock, then `BEGIN IMMEDIATE` across processes). The
process lock lets *urgent* writers (a hospital waiting for its 202) go before background ones
(the pusher's record transactions, the audit trail): a letter's acceptance is a 2 ms write, a
record transaction ten times that, and making the hospital queue behind a burst of deliveries
is what made accept latency high. A background writer waits at most `_MAX_YIELD_SECONDS` for
urgent ones, so delivery never starves.
PostgreSQL: transaction-level advisory locks on the conditional keys of the bundle (taken in
sorted order, so two transactions never wait on each other in a cycle), in two levels so that a
transaction touching thousands of patients holds a bounded number of them (`lock_keys`).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapter.store.engine import BUSY_TIMEOUT_MS

_MAX_YIELD_SECONDS = 0.25


class WriterLock:
    """A mutex where urgent acquirers overtake background ones (bounded, see module doc)."""

    def __init__(self, max_yield_seconds: float = _MAX_YIELD_SECONDS) -> None:
        self._condition = threading.Condition()
        self._held = False
        self._urgent_waiting = 0
        self.max_yield_seconds = max_yield_seconds

    def acquire(self, urgent: bool = False) -> None:
        with self._condition:
            if urgent:
                self._urgent_waiting += 1
                try:
                    while self._held:
                        self._condition.wait()
                finally:
                    self._urgent_waiting -= 1
            else:
                give_way_until = time.monotonic() + self.max_yield_seconds
                while self._held or (self._urgent_waiting
                                     and time.monotonic() < give_way_until):
                    self._condition.wait(max(0.0, give_way_until - time.monotonic()) or None)
            self._held = True

    def release(self) -> None:
        with self._condition:
            self._held = False
            self._condition.notify_all()


_sqlite_writers: dict[str, WriterLock] = {}
_registry_lock = threading.Lock()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _process_lock(engine: Engine) -> WriterLock:
    with _registry_lock:
        return _sqlite_writers.setdefault(str(engine.url), WriterLock())


@contextmanager
def write_session(engine: Engine, keys: Iterable[str] = (), *, urgent: bool = False
                  ) -> Iterator[Session]:
    """A session for one atomic write: commits on success, rolls back on any error.

    `urgent`: someone is waiting for this write (see the module doc)."""
    lock = _process_lock(engine) if is_sqlite(engine) else None
    if lock is not None:
        lock.acquire(urgent)
    try:
        with Session(engine, expire_on_commit=False) as session:
            try:
                if lock is not None:
                    _begin_immediate(session, urgent)
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


_URGENT_POLL_SECONDS = 0.001


def _begin_immediate(session: Session, urgent: bool) -> None:
    """Take SQLite's write lock. The lock between processes (the pusher's record transactions,
    the conversion processes) has no queue: a waiter is woken by SQLite's busy handler, which
    sleeps longer and longer (up to 100 ms a time) — an urgent writer asks again every
    millisecond instead. (With the pusher delivering 20 letters/s, the audit row a read waits
    for took seconds to get the record's lock: every pull did.)"""
    connection = session.connection()
    if not urgent:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    raw = connection.connection.dbapi_connection
    assert raw is not None
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
            time.sleep(_URGENT_POLL_SECONDS)
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


# PostgreSQL's lock table is shared and bounded (max_locks_per_transaction × connections,
# 6,400 by default): a transaction that locked one key per patient of a GP in 8,000 care teams
# failed with "out of shared memory", and the letter that changed the GP was never delivered.
# So keys are locked in two levels: each key's slot among _SLOTS (shared), then the key itself
# (exclusive); a call with more than MAX_KEYS keys takes its slots exclusively instead.
# Either way at most MAX_KEYS + _SLOTS locks a call, whatever it touches (a record transaction
# makes two: its writes' keys at its start, its grants' before the feed's position). Slots
# first, then keys, each in order, so two calls never wait on each other in a cycle; a lock
# taken later must not be awaited while holding what others wait for (the feed's row). Two
# calls that lock slots exclusively nearly always share one, so they run one after the other:
# writers that batch keep under MAX_KEYS (a pusher's group of 8 letters names ~180 keys).
_SLOTS = 256
MAX_KEYS = 192
_SLOT_CLASS = 1  # the two-integer advisory key space (slot locks); keys use the bigint one
# Each level in one statement, its locks taken in the array's order (a function scan yields
# the array's elements in order): a lock a round trip made a letter's delivery wait ~16 times
# for PostgreSQL, each a wait for a scheduler slot on a busy machine.
_SLOT_LOCKS = {
    False: text("SELECT count(pg_advisory_xact_lock_shared(:class, slot)) "
                "FROM unnest(CAST(:slots AS integer[])) AS slot"),
    True: text("SELECT count(pg_advisory_xact_lock(:class, slot)) "
               "FROM unnest(CAST(:slots AS integer[])) AS slot")}
_KEY_LOCKS = text("SELECT count(pg_advisory_xact_lock(key)) "
                  "FROM unnest(CAST(:keys AS bigint[])) AS key")


def _key_hash(key: str) -> int:
    """A 64-bit signed hash of `key`, the same in every process."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big",
                          signed=True)


def lock_keys(session: Session, keys: Iterable[str]) -> None:
    """Advisory locks (PostgreSQL) on `keys`, held until the end of the transaction."""
    if session.get_bind().dialect.name != "postgresql":
        return
    hashes = sorted({_key_hash(key) for key in keys})
    if not hashes:
        return
    connection = session.connection()
    bulk = len(hashes) > MAX_KEYS
    connection.execute(_SLOT_LOCKS[bulk], {
        "class": _SLOT_CLASS, "slots": sorted({value % _SLOTS for value in hashes})})
    if not bulk:
        connection.execute(_KEY_LOCKS, {"keys": hashes})
