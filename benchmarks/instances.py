"""Several instances on one PostgreSQL database: letters/s accepted and delivered by one
`liaison serve` and one `liaison worker`, then by two of each.

Servers run `--no-pusher` (delivery is the workers' alone, as in
`tests/instances/test_several_instances.py`), with their default conversion processes; 16
hospital clients post distinct letters (quick: 100; full: 400) to the servers in turn, one
keep-alive connection per client and server; schematron validation off. *Accepted* is letters
over the seconds from the first post to the last answer; *delivered*, over the seconds from the
first post to the outbox drained (read in the database). Each server first takes `WARM_UP`
letters, delivered before the clock starts. CPU per letter: every process of the servers
(server and its conversion process) and the workers; PostgreSQL's own is not counted.

On a machine of two cores, two instances cannot be faster than one: one instance already
keeps both cores busy (server, conversion process, worker, PostgreSQL), and a second adds
processes that share the same cores. The figures say what several instances cost, not what
they gain; the point of running several is to survive the loss of one (what the test proves).
Delivered letters/s that falls with a second worker means their record transactions wait on
each other (as they did on a hospital's shared keys: `adapter/record/write_locks.py`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from benchmarks.ingest import _cpu_by_role, _token
from tests.support.letter_variants import letter_variant
from tests.support.servers import ServerProcess, free_port

CLIENTS = 16
WARM_UP = 8
CDA = {"Content-Type": "application/hl7-cda+xml"}
_ENV = {"LIAISON_VALIDATION_MODE": "off", "LIAISON_PUSH_WORKERS": "2"}


def _instance(argv: list[str], data_dir: Path, key: Path, database_url: str,
              probe_url: str | None, **env: str) -> ServerProcess:
    (data_dir / "auth").mkdir(parents=True)
    shutil.copy(key, data_dir / "auth" / "signing-key.pem")  # one token works on every server
    process = ServerProcess([sys.executable, "-m", "adapter.cli", *argv], probe_url, {
        **_ENV, **env, "LIAISON_DATA_DIR": str(data_dir), "LIAISON_DATABASE_URL": database_url})
    for inherited in ("LIAISON_CONVERT_PROCESSES", "LIAISON_RECORD_DATABASE_URL",
                      "LIAISON_TARGET_URL", "LIAISON_PUSH_LEASE_SECONDS"):
        process.env.pop(inherited, None)  # the defaults, whatever the caller's environment
    return process


def _post_all(bases: list[str], token: str, letters: range) -> tuple[int, Counter[str], float]:
    """Post every letter from `CLIENTS` threads to the servers in turn; (accepted, errors by
    kind, seconds)."""
    bodies = {n: letter_variant(n) for n in letters}  # built before the clock starts
    headers = {"Authorization": f"Bearer {token}", **CDA}
    turn = itertools.count()
    lock = threading.Lock()
    local = threading.local()
    counts: Counter[str] = Counter()

    def post(n: int) -> None:
        base = bases[next(turn) % len(bases)]
        connections = local.__dict__.setdefault("connections", {})
        if base not in connections:
            address = urlsplit(base)
            connections[base] = HTTPConnection(address.hostname, address.port, timeout=60)
        try:
            connections[base].request("POST", "/discharge-letters", body=bodies[n],
                                      headers=headers)
            answer = connections[base].getresponse()
            answer.read()
            outcome = "accepted" if answer.status == 202 else f"HTTP {answer.status}"
        except OSError as error:
            connections.pop(base).close()
            outcome = type(error).__name__
        with lock:
            counts[outcome] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(post, letters))
    accepted = counts.pop("accepted", 0)
    return accepted, counts, time.perf_counter() - started


def _wait_drained(engine: Engine, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            waiting, delivered = connection.execute(text(
                "SELECT COUNT(*) FILTER (WHERE status IN ('pending', 'retrying')), "
                "COUNT(*) FILTER (WHERE status = 'delivered') FROM outbox_entry")).one()
        if waiting == 0 and delivered >= expected:
            return True
        time.sleep(0.05)
    return False


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(database_url: str, instances: int, letters: range) -> dict[str, Any]:
    engine = create_engine(database_url, pool_size=1)
    with tempfile.TemporaryDirectory(prefix="liaison-bench-instances-") as scratch:
        root = Path(scratch)
        token = _token(root / "issuer")
        key = root / "issuer" / "auth" / "signing-key.pem"
        ports = [free_port() for _ in range(instances)]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        servers = [_instance(["serve", "--port", str(port), "--no-pusher"], root / f"serve-{i}",
                             key, database_url, f"{base}/healthz", LIAISON_PUBLIC_BASE_URL=base)
                   for i, (port, base) in enumerate(zip(ports, bases, strict=True))]
        workers = [_instance(["worker"], root / f"worker-{i}", key, database_url, None)
                   for i in range(instances)]
        try:
            for process in (*servers, *workers):
                process.launch()
            for process in (*servers, *workers):
                process.wait_until_up()
            warm_up = range(letters.start + 900_000,
                            letters.start + 900_000 + WARM_UP * instances)
            warmed = _post_all(bases, token, warm_up)[0]
            _wait_drained(engine, warmed, timeout=120)
            pids = [(p.process.pid, p in servers) for p in (*servers, *workers) if p.process]

            def cpu() -> tuple[float, float]:
                spent = {True: 0.0, False: 0.0}
                for pid, is_server in pids:
                    spent[is_server] += (sum(_cpu_by_role(pid).values()) if is_server
                                         else _cpu(pid))
                return spent[True], spent[False]

            before = cpu()
            started = time.perf_counter()
            accepted, errors, seconds = _post_all(bases, token, letters)
            drained = _wait_drained(engine, warmed + accepted, timeout=300)
            delivered_seconds = time.perf_counter() - started
            after = cpu()
        finally:
            for process in (*servers, *workers):
                process.stop()
            engine.dispose()
    return {"accepted": accepted / seconds,
            "delivered": accepted / delivered_seconds if drained else 0.0,
            "cpu_servers": (after[0] - before[0]) * 1000 / len(letters),
            "cpu_workers": (after[1] - before[1]) * 1000 / len(letters),
            "errors": errors, "not_delivered": 0 if drained else accepted}


def run(quick: bool) -> list[tuple[str, str, str]]:
    from tests.support.postgres import PostgresServer

    count = 100 if quick else 400
    try:
        postgres = PostgresServer().start()
    except BaseException as missing:  # pytest's Skip: the Debian binaries are not there
        return [("several instances on one PostgreSQL", "-", f"not available: {missing}")]
    rows: list[tuple[str, str, str]] = []
    try:
        for number, instances in enumerate((1, 2)):
            url = postgres.create_database(f"liaison_bench_instances_{number}")
            measured = _measure(url, instances, range(50_000 + number * count,
                                                      50_000 + (number + 1) * count))
            workers = "worker" if instances == 1 else "workers"
            label = (f"{instances} serve + {instances} {workers} on one PostgreSQL, {count} "
                     f"letters, {CLIENTS} clients")
            rows += [
                (f"{label}: accepted", "letters/s", f"{measured['accepted']:.0f}"),
                (f"{label}: delivered (first post → outbox drained)", "letters/s",
                 f"{measured['delivered']:.1f}"),
                (f"{label}: CPU per letter, servers / workers", "ms",
                 f"{measured['cpu_servers']:.1f} / {measured['cpu_workers']:.1f}"),
                (f"{label}: errors / not delivered", "letters",
                 f"{sum(measured['errors'].values())} / {measured['not_delivered']}"
                 + "".join(f" ({kind}: {n})" for kind, n in measured["errors"].items())),
            ]
    finally:
        postgres.stop()
    return rows
