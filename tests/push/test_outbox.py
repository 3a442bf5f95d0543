"""The durable outbox on SQLite and PostgreSQL: claims, leases, per-key order, replay."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from adapter.errors import operation_outcome
from adapter.store import outbox
from adapter.store.db import session_scope


def _enqueue(engine: Engine, key: str, n: int) -> int:
    with session_scope(engine) as session:
        entry = outbox.enqueue(session, "test", {"n": n}, key)
        return entry.id or 0


def test_an_entry_is_claimed_by_one_worker_at_a_time(outbox_engine: Engine) -> None:
    entry_id = _enqueue(outbox_engine, "k", 1)
    first = outbox.claim(outbox_engine, lease_seconds=60)
    second = outbox.claim(outbox_engine, lease_seconds=60)
    assert [held.entry_id for held in first] == [entry_id]
    assert first[0].payload_json() == {"n": 1}
    assert second == []


def test_only_the_oldest_unfinished_entry_of_a_key_can_be_claimed(outbox_engine: Engine) -> None:
    v1 = _enqueue(outbox_engine, "patient-a", 1)
    v2 = _enqueue(outbox_engine, "patient-a", 2)
    other = _enqueue(outbox_engine, "patient-b", 3)
    held = outbox.claim(outbox_engine, lease_seconds=60, limit=10)
    assert [claim.entry_id for claim in held] == [v1, other]
    for claim in held:
        outbox.mark_delivered(outbox_engine, claim, {"ok": True})
    assert [claim.entry_id for claim in outbox.claim(outbox_engine, lease_seconds=60)] == [v2]


def test_a_retrying_entry_keeps_later_entries_of_its_key_waiting(outbox_engine: Engine) -> None:
    v1 = _enqueue(outbox_engine, "patient-a", 1)
    _enqueue(outbox_engine, "patient-a", 2)
    (held,) = outbox.claim(outbox_engine, lease_seconds=60)
    outbox.mark_retrying(
        outbox_engine, held, delay=0, status=503, outcome=operation_outcome("down")
    )
    again = outbox.claim(outbox_engine, lease_seconds=60, limit=10)
    assert [claim.entry_id for claim in again] == [v1]
    assert again[0].attempts == 2


def test_an_expired_lease_is_taken_over_and_the_late_result_ignored(outbox_engine: Engine) -> None:
    entry_id = _enqueue(outbox_engine, "k", 1)
    (crashed,) = outbox.claim(outbox_engine, lease_seconds=0.05)
    later = outbox.utcnow() + timedelta(seconds=0.1)  # another worker, after that lease
    (taken_over,) = outbox.claim(outbox_engine, lease_seconds=60, now=later)
    assert taken_over.entry_id == entry_id
    assert not outbox.mark_failed(
        outbox_engine, crashed, status=500, outcome=operation_outcome("x")
    )
    assert outbox.mark_delivered(outbox_engine, taken_over, {"locations": []})
    assert outbox.get_entry(outbox_engine, entry_id).status == outbox.DELIVERED  # type: ignore[union-attr]


def test_an_entry_enqueued_in_a_failed_transaction_does_not_exist(outbox_engine: Engine) -> None:
    with pytest.raises(RuntimeError), session_scope(outbox_engine) as session:
        outbox.enqueue(session, "test", {"n": 1}, "k")
        raise RuntimeError("the letter could not be stored")
    assert outbox.counts(outbox_engine)[outbox.PENDING] == 0
    assert outbox.claim(outbox_engine, lease_seconds=60) == []


def test_failed_entries_wait_for_retry_or_replay(outbox_engine: Engine) -> None:
    first = _enqueue(outbox_engine, "a", 1)
    _enqueue(outbox_engine, "b", 2)
    for held in outbox.claim(outbox_engine, lease_seconds=60, limit=10):
        outbox.mark_failed(outbox_engine, held, status=422, outcome=operation_outcome("rejected"))
    assert outbox.counts(outbox_engine)[outbox.FAILED] == 2
    assert outbox.claim(outbox_engine, lease_seconds=60) == []
    assert outbox.retry(outbox_engine, first)
    assert [held.entry_id for held in outbox.claim(outbox_engine, lease_seconds=60)] == [first]
    assert outbox.replay_failed(outbox_engine) == 1
    assert outbox.counts(outbox_engine) == {
        "pending": 2,
        "retrying": 0,
        "delivered": 0,
        "failed": 0,
    }
    assert not outbox.retry(outbox_engine, 999_999)


def test_concurrent_workers_never_claim_an_entry_twice(outbox_engine: Engine) -> None:
    expected = {_enqueue(outbox_engine, f"patient-{n % 40}", n) for n in range(200)}
    claimed: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        while True:
            held = outbox.claim(outbox_engine, lease_seconds=60, limit=3)
            if not held:
                if outbox.next_due_in(outbox_engine) is None:
                    return
                time.sleep(0.005)
                continue
            with lock:
                claimed.extend(claim.entry_id for claim in held)
            for claim in held:
                outbox.mark_delivered(outbox_engine, claim)

    workers = [threading.Thread(target=work) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert len(claimed) == len(set(claimed)) == 200
    assert set(claimed) == expected
