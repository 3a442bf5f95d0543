"""How the embedded record's costs grow with what it holds, on SQLite and on PostgreSQL.

One record per database is grown through the sizes (quick: 10,000 and 100,000 resources;
full: 100,000 and 1,000,000, and on PostgreSQL, the production store, 5,000,000 — a region's
year), bulk-loaded with patients shaped as `record_search` makes them (Patient, CareTeam,
CarePlan, Encounter, Communication; 500 practitioners), and measured at each size in the
process (no HTTP: the database's share of each cost): the bulk load rate (of that step), a
letter's transaction (9 entries, conditional creates and updates, grants, change feed),
`CarePlan?patient.identifier=` as the system and as a care-team member (access-filtered),
and a professional's pull (a professional of that size's own: their 50 letters' resources,
then one incremental page after 20 more letters). The last rows say how each grew from the
smallest size, so a regression in growth shows. PostgreSQL is the test server of
`tests/support/postgres.py` (fsync off: index and query costs, not the disk's).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.databases import KINDS, database
from benchmarks.record_search import _PRACTITIONERS, INS, _patient_resources, _practitioner


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


def _grow(repository: Any, start: int, total: int) -> float:
    """Bulk-load the record from `start` to `total` resources: resources/s."""
    rng = random.Random(start)
    first_patient = max(0, start - _PRACTITIONERS) // 5
    started = time.perf_counter()
    for first in range(first_patient, (total - _PRACTITIONERS) // 5, 20_000):  # bounded memory
        batch = [_practitioner(n) for n in range(_PRACTITIONERS)] if first == 0 else []
        for n in range(first, min(first + 20_000, (total - _PRACTITIONERS) // 5)):
            batch += _patient_resources(n, rng)
        repository.import_resources(batch)
    return (total - start) / (time.perf_counter() - started)


def _measure(repository: Any, loaded: int, total: int) -> dict[str, tuple[float, float]]:
    from sqlmodel import Session

    from adapter.auth.principal import DEFAULT_SCOPES, Principal
    from adapter.record import feed
    from tests.record.bundles import letter_bundle

    found: dict[str, tuple[float, float]] = {}
    found["bulk load, resources/s"] = (_grow(repository, loaded, total), 0.0)
    rng = random.Random(total)
    letters = iter(range(total, total + 10**6))

    # a professional of this size's own: their 50 letters whatever was measured before
    reader = f"80{total:010d}"

    def letter() -> None:
        n = next(letters)
        repository.transaction(letter_bundle(ins=f"8{n:014d}", set_id=f"growth-{n}",
                                             team=(reader,), recipients=(reader,)))

    found["letter transaction, p50 / p95 ms"] = _timed(letter, 50)
    patients = (total - _PRACTITIONERS) // 5
    picks = iter([rng.randrange(patients) for _ in range(200)])
    member = Principal(kind="professional", idnat=reader, scopes=DEFAULT_SCOPES["professional"])

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


def _curve(kind: str, sizes: tuple[int, ...], rows: list[tuple[str, str, str]]
           ) -> dict[int, dict[str, tuple[float, float]]]:
    """One record grown through `sizes`, measured at each."""
    from adapter.record.repository import Repository
    from adapter.store.db import get_engine

    curve: dict[int, dict[str, tuple[float, float]]] = {}
    try:
        with database(kind):
            repository = Repository(get_engine())
            loaded = 0
            for size in sizes:
                curve[size] = _measure(repository, loaded, size)
                loaded = size
    except BaseException as error:  # e.g. pytest's Skipped: no PostgreSQL here
        if isinstance(error, KeyboardInterrupt):
            raise
        rows.append((f"growth ({kind}, after {max(curve, default=0):,})", "-",
                     f"not measured: {type(error).__name__}: {error}"[:120]))
    return curve


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for kind in KINDS:
        sizes = (10_000, 100_000) if quick else (100_000, 1_000_000)
        if kind == "postgresql" and not quick:
            sizes += (5_000_000,)  # the production store, at a region's year
        curve = _curve(kind, sizes, rows)
        for size, found in curve.items():
            for name, (first, second) in found.items():
                metric, _, unit = name.rpartition(", ")
                value = f"{first:,.0f}" if "resources/s" in unit else \
                    f"{first:.1f} / {second:.1f}"
                rows.append((f"growth ({kind}, {size:,} stored): {metric}", unit, value))
        small = curve.get(sizes[0], {})
        for size in sizes[1:]:
            large = curve.get(size, {})
            for name in small:
                if "p50" in name and name in large:
                    metric = name.rpartition(", ")[0]
                    rows.append((f"growth ({kind}): {metric}, p95 at {size:,} / at "
                                 f"{sizes[0]:,}", "ratio",
                                 f"{large[name][1] / max(small[name][1], 1e-9):.2f}"))
    return rows


if __name__ == "__main__":
    import sys

    quick = "--quick" in sys.argv
    for row in run(quick=quick):
        print(" | ".join(row))
