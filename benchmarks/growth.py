"""How the embedded record's costs grow with what it holds, on SQLite and on PostgreSQL.

For each size (quick: 10,000 and 100,000 resources; full: 100,000 and 1,000,000), a record of
its own is bulk-loaded with patients shaped as `record_search` makes them (Patient, CareTeam,
CarePlan, Encounter, Communication; 500 practitioners), then measured in the process (no
HTTP: the database's share of each cost): the bulk load rate, a letter's transaction (9
entries, conditional creates and updates, grants, change feed), `CarePlan?patient.identifier=`
as the system and as a care-team member (access-filtered), and a professional's pull (their
50 letters' resources, then one incremental page after 20 more letters). The last rows say
how each grew from the smallest size to the largest, so a regression in growth shows.
PostgreSQL is the test server of `tests/support/postgres.py` (fsync off: index and query
costs, not the disk's).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.record_search import _PRACTITIONERS, INS, _patient_resources, _practitioner

PCP = "801984758437"  # the médecin traitant of `tests.record.bundles.letter_bundle`


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1000,
            ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)] * 1000)


def _timed(action: Callable[[], Any], times: int) -> tuple[float, float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


@contextmanager
def _database(kind: str) -> Iterator[str | None]:
    """A fresh data dir, and on PostgreSQL a fresh server and database: its URL."""
    from adapter.config import get_settings
    from adapter.store.db import get_engine

    with tempfile.TemporaryDirectory(prefix="liaison-growth-") as scratch:
        saved = {k: os.environ.get(k) for k in ("LIAISON_DATA_DIR", "LIAISON_DATABASE_URL")}
        os.environ["LIAISON_DATA_DIR"] = scratch
        server = None
        try:
            if kind == "postgresql":
                from tests.support.postgres import PostgresServer

                server = PostgresServer().start()
                os.environ["LIAISON_DATABASE_URL"] = server.create_database("growth")
            else:
                os.environ.pop("LIAISON_DATABASE_URL", None)
            get_settings.cache_clear()
            get_engine.cache_clear()
            yield os.environ.get("LIAISON_DATABASE_URL")
        finally:
            get_engine.cache_clear()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()
            if server is not None:
                server.stop()


def _measure(total: int) -> dict[str, tuple[float, float]]:
    from sqlmodel import Session

    from adapter.auth.principal import DEFAULT_SCOPES, Principal
    from adapter.record import feed
    from adapter.record.repository import Repository
    from adapter.store.db import get_engine
    from tests.record.bundles import letter_bundle

    rng = random.Random(7)
    repository = Repository(get_engine())
    found: dict[str, tuple[float, float]] = {}
    started = time.perf_counter()
    for first in range(0, (total - _PRACTITIONERS) // 5, 20_000):  # in slices: bounded memory
        batch = [_practitioner(n) for n in range(_PRACTITIONERS)] if first == 0 else []
        for n in range(first, min(first + 20_000, (total - _PRACTITIONERS) // 5)):
            batch += _patient_resources(n, rng)
        repository.import_resources(batch)
    found["bulk load, resources/s"] = (total / (time.perf_counter() - started), 0.0)
    letters = iter(range(10**6))

    def letter() -> None:
        n = next(letters)
        repository.transaction(letter_bundle(ins=f"8{n:014d}", set_id=f"growth-{n}"))

    found["letter transaction, p50 / p95 ms"] = _timed(letter, 50)
    patients = (total - _PRACTITIONERS) // 5
    picks = iter([rng.randrange(patients) for _ in range(200)])
    member = Principal(kind="professional", idnat=PCP, scopes=DEFAULT_SCOPES["professional"])

    def by_ins(principal: Principal | None) -> Callable[[], Any]:
        return lambda: repository.search(
            "CarePlan", [("patient.identifier", f"{INS}|{next(picks):015d}")], principal)

    found["CarePlan?patient.identifier= (system), p50 / p95 ms"] = _timed(by_ins(None), 100)
    found["CarePlan?patient.identifier= (care-team member), p50 / p95 ms"] = _timed(
        by_ins(member), 100)

    def first_pull() -> None:
        cursor = feed.Cursor()
        with Session(repository.engine) as session:
            while True:
                page = feed.read_page(session, member, cursor, (), 500)
                cursor = page.cursor
                if page.caught_up and len(page.rows) < 500:
                    return

    found["pull of a professional's 50 letters, p50 / p95 ms"] = _timed(first_pull, 5)
    with Session(repository.engine) as session:
        after = feed.head(session)
    for _ in range(20):
        letter()

    def incremental() -> None:
        with Session(repository.engine) as session:
            feed.read_page(session, member, feed.Cursor(after=after), (), 500)

    found["pull, one page after 20 letters, p50 / p95 ms"] = _timed(incremental, 10)
    return found


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    sizes = (10_000, 100_000) if quick else (100_000, 1_000_000)
    rows: list[tuple[str, str, str]] = []
    for kind in ("sqlite", "postgresql"):
        curve: dict[int, dict[str, tuple[float, float]]] = {}
        for size in sizes:
            try:
                with _database(kind):
                    curve[size] = _measure(size)
            except BaseException as error:  # e.g. pytest's Skipped: no PostgreSQL here
                if isinstance(error, KeyboardInterrupt):
                    raise
                rows.append((f"growth ({kind}, {size:,})", "-",
                             f"not measured: {type(error).__name__}: {error}"[:120]))
                break
        for size, found in curve.items():
            for name, (first, second) in found.items():
                metric, _, unit = name.rpartition(", ")
                value = f"{first:,.0f}" if "resources/s" in unit else \
                    f"{first:.1f} / {second:.1f}"
                rows.append((f"growth ({kind}, {size:,} stored): {metric}", unit, value))
        if len(curve) == len(sizes):
            small, large = (curve[size] for size in sizes)
            for name in small:
                if "p50" in name:
                    metric = name.rpartition(", ")[0]
                    rows.append((f"growth ({kind}): {metric}, p95 at {sizes[1]:,} / at "
                                 f"{sizes[0]:,}", "ratio",
                                 f"{large[name][1] / max(small[name][1], 1e-9):.2f}"))
    return rows


if __name__ == "__main__":
    import sys

    quick = "--quick" in sys.argv
    for row in run(quick=quick):
        print(" | ".join(row))
