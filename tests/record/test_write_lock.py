"""The SQLite writers' lock lets a hospital waiting for its 202 go before the pusher's
background writes, without starving them."""

from __future__ import annotations

import threading
from pathlib import Path

from adapter.store.locking import WriterLock
from tests.support.waiting import wait_for


def _waiting(lock: WriterLock, order: list[str], name: str, urgent: bool) -> threading.Thread:
    def take() -> None:
        lock.acquire(urgent)
        order.append(name)
        lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    return thread


def test_an_urgent_writer_overtakes_a_background_writer_that_queued_first() -> None:
    lock = WriterLock(max_yield_seconds=60)
    order: list[str] = []
    lock.acquire()
    background = _waiting(lock, order, "background", urgent=False)
    wait_for(lambda: len(lock._condition._waiters) == 1,  # type: ignore[attr-defined]
             "the background writer waiting", timeout=10)  # it waits first
    urgent = _waiting(lock, order, "urgent", urgent=True)
    wait_for(lambda: lock._urgent_waiting == 1, "the waiter never queued", timeout=10)
    lock.release()
    for thread in (urgent, background):
        thread.join(timeout=10)
    assert order == ["urgent", "background"]


def test_a_background_writer_stops_giving_way_after_its_bound() -> None:
    lock = WriterLock(max_yield_seconds=0.0)
    order: list[str] = []
    lock.acquire()
    lock._urgent_waiting = 1  # an urgent writer that never comes to take its turn
    background = _waiting(lock, order, "background", urgent=False)
    lock.release()
    background.join(timeout=10)
    assert order == ["background"]


def test_an_urgent_writer_waits_for_another_processs_lock_and_leaves_the_connection_as_it_was(
        tmp_path: Path) -> None:
    """Another process (here: another connection, which the process lock does not see) holds
    the database's write lock: the urgent writer asks again until it is free, writes, and its
    pooled connection keeps waiting on a busy database as every connection does."""
    import sqlite3

    from sqlalchemy import text

    from adapter.store.engine import engine_for
    from adapter.store.locking import write_session

    path = tmp_path / "locked.db"
    engine = engine_for(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    other = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    with write_session(engine, urgent=True) as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
    release.join()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM t")).scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    other.close()
    engine.dispose()
