"""Pulling changes from the record's change feed (`GET /fhir/_history`), through real HTTP.

- throughput: a médecin traitant's first pull of everything of theirs (every letter names
  them), resources per second, following `next` links;
- lag: while letters arrive at a steady rate, a puller polls its feed again as soon as it has
  caught up; for each letter's CarePlan, the time from the commit of its transaction (the
  writer's answer) to the pull that brought it (p50 / p95), and letters missed or given twice.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import httpx

from benchmarks.databases import KINDS, database

PCP = "801984758437"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered) * 1000, p95 * 1000


def _pull(client: httpx.Client, cursor: str | None) -> tuple[list[dict[str, Any]], str]:
    """Follow the feed from `cursor` until caught up: the entries and the resume cursor."""
    entries: list[dict[str, Any]] = []
    params: dict[str, str] = {"_count": "500", **({"_cursor": cursor} if cursor else {})}
    while True:
        page = client.get("_history", params=params).json()
        entries += page["entry"]
        links = {link["relation"]: link["url"] for link in page["link"]}
        cursor = links["resume"].rpartition("_cursor=")[2]
        if "next" not in links:
            return entries, cursor
        params = {"_count": "500", "_cursor": cursor}


def _measure(letters: int, seconds: float, rate: float) -> list[tuple[str, str, str]]:
    from adapter.api.record_app import create_record_app
    from adapter.auth import issue_token
    from tests.record.bundles import letter_bundle
    from tests.support.servers import serve_app

    rows = []
    writer_token = {"Authorization": f"Bearer {issue_token('system')}"}
    reader_token = {"Authorization": f"Bearer {issue_token('professional', idnat=PCP)}"}
    with serve_app(create_record_app()) as root, \
            httpx.Client(base_url=f"{root}/fhir", timeout=30, headers=writer_token) as writer, \
            httpx.Client(base_url=f"{root}/fhir", timeout=30, headers=reader_token) as reader:
        for n in range(letters):
            writer.post("", json=letter_bundle(ins=f"8{n:014d}", set_id=f"pull-{n}"))
        started = time.perf_counter()
        entries, cursor = _pull(reader, None)
        elapsed = time.perf_counter() - started
        rows.append((f"pull: first pull of a professional named by {letters:,} letters "
                     f"({len(entries):,} resources)", "resources/s",
                     f"{len(entries) / elapsed:,.0f}"))
        committed: dict[str, float] = {}  # setId → when its transaction was answered
        stop = threading.Event()

        def write() -> None:
            n, due = 0, time.perf_counter()
            while not stop.is_set():
                set_id = f"live-{n}"
                writer.post("", json=letter_bundle(ins=f"7{n:014d}", set_id=set_id))
                committed[set_id] = time.perf_counter()
                n += 1
                due += 1 / rate
                time.sleep(max(0.0, due - time.perf_counter()))

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        pulled: dict[str, list[float]] = {}
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or thread.is_alive():
            if time.perf_counter() >= deadline:
                stop.set()
                thread.join()
            entries, cursor = _pull(reader, cursor)
            now = time.perf_counter()
            for entry in entries:
                resource = entry.get("resource") or {}
                if resource.get("resourceType") == "CarePlan":
                    set_id = resource["identifier"][0]["value"]
                    pulled.setdefault(set_id, []).append(now)
        entries, cursor = _pull(reader, cursor)  # after the last letter
        lags = [pulled[s][0] - committed[s] for s in committed if s in pulled]
        missed = len([s for s in committed if s not in pulled])
        twice = len([s for s, times in pulled.items() if len(times) > 1])
        p50, p95 = _percentiles(lags)
        label = f"{rate:.0f} letters/s for {seconds:.0f} s, puller polling when caught up"
        rows.append((f"pull lag, commit to pulled ({label})", "p50 / p95 ms",
                     f"{p50:.1f} / {p95:.1f}"))
        rows.append((f"pull while letters arrive ({label}): letters missed / given twice",
                     "letters", f"{missed} / {twice} of {len(committed)}"))
    return rows


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    """In a record of its own on each database (a grown record is `growth`'s measure)."""
    letters, seconds, rate = (200, 3.0, 20.0) if quick else (1_000, 10.0, 40.0)
    rows: list[tuple[str, str, str]] = []
    for kind in KINDS:
        with database(kind):
            rows += [(f"{kind}: {name}", unit, value)
                     for name, unit, value in _measure(letters, seconds, rate)]
    return rows
