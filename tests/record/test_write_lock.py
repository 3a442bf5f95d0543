"""The SQLite writers' lock lets a hospital waiting for its 202 go before the pusher's
background writes, without starving them."""

from __future__ import annotations

import threading
import time

from adapter.store.locking import WriterLock


def _waiting(lock: WriterLock, order: list[str], name: str, urgent: bool) -> threading.Thread:
    def take() -> None:
        lock.acquire(urgent)
        order.append(name)
        lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    return thread


def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.005)


def test_an_urgent_writer_overtakes_a_background_writer_that_queued_first() -> None:
    lock = WriterLock(max_yield_seconds=60)
    order: list[str] = []
    lock.acquire()
    background = _waiting(lock, order, "background", urgent=False)
    time.sleep(0.05)  # the background writer is waiting first
    urgent = _waiting(lock, order, "urgent", urgent=True)
    _until(lambda: lock._urgent_waiting == 1)
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
