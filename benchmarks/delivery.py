"""Delivery of accepted letters to the embedded record: CPU per letter, one by one vs batched.

Prepares N discharge letters as acceptance does (quick: 60; full: 400; plus 20 to warm up:
mapped, coordinated, checked against the FHIR models, queued with the outbox kind acceptance
gives them), queues them in the outbox of fresh databases (SQLite, then PostgreSQL: the CPU
is this process's, PostgreSQL's own is not counted), and lets a pusher deliver
them: one letter per record transaction, then up to `BATCH_SIZE` letters per record transaction
(`send_many`), then the same into a record that already holds `GROWN` letters (delivered
first, untimed). The figure is the CPU time of the process (every thread: pusher, audit trail)
per letter, with the wall-clock rate.
"""

from __future__ import annotations

import gc
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.databases import KINDS, databases


def _bundles(count: int, scratch: Path) -> list[tuple[str, bytes]]:
    """(outbox kind, payload) of `count` distinct letters, as acceptance queues them."""
    from adapter.ingest.letter_writer import outbox_kind
    from adapter.ingest.preparation import prepare
    from adapter.store.db import engine_for, init_db
    from tests.support.letter_variants import letter_variant

    engine = engine_for(f"sqlite:///{scratch / 'mapping.db'}")
    init_db(engine)
    try:
        prepared = [prepare(letter_variant(n), engine) for n in range(count)]
        return [(outbox_kind(letter), letter.payload) for letter in prepared]
    finally:
        engine.dispose()


_WARM_UP = 20
# A record that already holds this many letters: what a new letter's writes cost depends on how
# large the B-trees they land in have grown (pages no longer cached, pages touched for one row).
GROWN = 1_500


def _enqueue(engine: Any, bundles: list[tuple[str, bytes]]) -> None:
    from adapter.store import outbox
    from adapter.store.db import session_scope

    with session_scope(engine) as session:
        for kind, bundle in bundles:  # one key per letter: each its own patient
            outbox.enqueue(session, kind, bundle, f"letter-{uuid.uuid4()}")


def _deliver(bundles: list[tuple[str, bytes]], url: str, batch_size: int,
             before: int = _WARM_UP) -> tuple[float, float]:
    """(CPU ms per letter, letters per second) of delivering `bundles` from a fresh outbox in
    the empty database `url`, the first `before` ones delivered before the clock starts."""
    from adapter.push.targets import EmbeddedTarget
    from adapter.push.worker import Pusher
    from adapter.record import audit
    from adapter.store import outbox
    from adapter.store.db import engine_for, init_db

    engine = engine_for(url)
    init_db(engine)
    try:
        pusher = Pusher(engine, EmbeddedTarget(engine), threads=1, batch_size=batch_size)
        _enqueue(engine, bundles[:before])  # validation caches, connections: warm first
        pusher.drain(timeout=600)
        _enqueue(engine, bundles[before:])
        wall, cpu = time.perf_counter(), time.process_time()
        if not pusher.drain(timeout=600):
            raise RuntimeError("delivery did not finish")
        audit.flush()  # the audit rows of the writes are part of their cost
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        delivered = outbox.counts(engine)[outbox.DELIVERED]
        if delivered != len(bundles):
            raise RuntimeError(f"{delivered} of {len(bundles)} letters delivered")
        timed = len(bundles) - before
        return cpu / timed * 1000, timed / wall
    finally:
        engine.dispose()


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    from adapter.push.worker import BATCH_SIZE
    from adapter.runtime import settle_after_start

    count, grown = (60, 200) if quick else (400, GROWN)
    rows: list[tuple[str, str, str]] = []
    thresholds = gc.get_threshold()
    with tempfile.TemporaryDirectory(prefix="liaison-delivery-") as name:
        bundles = _bundles(grown + count, Path(name))
    settle_after_start()  # as the pusher process does once started
    try:
        for kind in KINDS:
            with databases(kind) as fresh:
                for batch_size, before, label in (
                        (1, _WARM_UP, "one letter per transaction"),
                        (BATCH_SIZE, _WARM_UP, f"batches of {BATCH_SIZE}"),
                        (BATCH_SIZE, grown, f"batches of {BATCH_SIZE}, the record holding "
                                            f"{grown:,} letters already")):
                    cpu, rate = _deliver(bundles[:before + count],
                                         fresh(f"delivery_{batch_size}_{before}"),
                                         batch_size, before)
                    what = f"{kind}: delivery to the embedded record, {label} ({count} letters)"
                    rows.append((what, "ms CPU / letter", f"{cpu:.1f}"))
                    rows.append((what, "letters / s", f"{rate:.0f}"))
    finally:  # the benchmarks that follow measure this process as it was
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    return rows


def main(argv: Any = None) -> None:  # `python -m benchmarks.delivery [--quick]`
    import sys

    for row in run(quick="--quick" in (argv or sys.argv[1:])):
        print(" | ".join(row))


if __name__ == "__main__":
    main()
