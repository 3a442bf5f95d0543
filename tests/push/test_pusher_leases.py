"""The pusher's leases: entries claimed together but sent one after the other."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from adapter.config import Settings
from adapter.push.targets import EmbeddedTarget
from adapter.push.worker import Pusher
from adapter.store import outbox
from adapter.store.db import session_scope

SLOW = "slow-test"


def test_an_entry_is_never_sent_by_two_workers_when_earlier_sends_outlast_the_lease(
    outbox_engine: Engine,
) -> None:
    with session_scope(outbox_engine) as session:
        ids = [outbox.enqueue(session, SLOW, {"n": n}, f"key-{n}").id for n in range(3)]
    sent: list[int] = []
    taken_over: list[int] = []
    now = [outbox.utcnow()]  # the workers' clock, moved by the sends instead of waited for

    def slow_send(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["n"] == 0:
            now[0] += timedelta(seconds=1.3)  # the first send outlasts the shared lease
        else:  # meanwhile another worker looks for entries whose lease expired
            taken = outbox.claim(outbox_engine, lease_seconds=60, limit=10, now=now[0])
            taken_over.extend(claim.entry_id for claim in taken)
        sent.append(payload["n"])
        return {}

    settings = Settings(push_lease_seconds=1.0, push_timeout_seconds=0.1)
    pusher = Pusher(outbox_engine, EmbeddedTarget(outbox_engine), settings=settings,
                    handlers={SLOW: slow_send}, clock=lambda: now[0])
    assert pusher.run_once(limit=3) == 3
    # The entry being sent is never handed to the other worker: the second got a fresh lease
    # before its send, the third (expired meanwhile) was left to the worker that took it.
    assert ids[1] not in taken_over
    assert ids[2] in taken_over
    assert sent == [0, 1]
