"""Ingestion under load: concurrent hospital clients posting distinct discharge letters to a
real `liaison serve` process with its defaults (SQLite, the embedded record in its own file,
its conversion processes (one per core beyond two, at least one), a pusher process; schematron
validation off — in `report` mode it is deferred work, not on the accept path).

Two ways to load it:
- *capacity* (closed loop): each of 16 clients posts its next letter as soon as it has its
  answer. Reports accepted letters/s with the p50/p95/p99 of the accept latency, the letters/s
  delivered to the embedded record (first post → outbox drained, every receipt `pushed`), and
  the CPU each process spent per letter. At saturation, latency is set by the number of clients
  (Little's law: 16 clients at 160 letters/s wait 100 ms on average), not by the server.
- *paced* (open loop, `PACED_RATE` letters/s for `PACED_SECONDS`): letter i is due at
  i / rate whatever the answers, as hospitals do not wait for each other; latency counts from
  the moment a letter was due. This is the latency hospitals see at that rate, and whether
  delivery keeps up with it: the delivery rate once the pipeline is full (sampled while letters
  arrive), and the outbox backlog when the last letter is accepted. Then the same at
  `HEADROOM_RATE`, above the target, for the room left.
And for 50 clients × 1,000 letters (pusher paused, to measure acceptance alone): errors, and
letters lost (a 202 whose receipt cannot be read back).

The load generator runs on the same two cores: its clients use `http.client` keep-alive
connections (a quarter of httpx's CPU per request), and its CPU is reported too.

Each server first takes `WARM_UP` letters of its own, delivered before the clock starts: the
figures are those of a running server, not of its first seconds (imports, FHIR model classes
built, validation shape caches filled — a one-off ~1 s per process).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.support.letter_variants import letter_variant
from tests.support.servers import ServerProcess, free_port

CDA = {"Content-Type": "application/hl7-cda+xml"}
WARM_UP = 16


def _server(data_dir: Path, port: int, pusher: bool) -> ServerProcess:
    env = {
        "LIAISON_DATA_DIR": str(data_dir),
        "LIAISON_VALIDATION_MODE": "off",
        "LIAISON_PUSH_WORKERS": "2",
        "LIAISON_PUSH_PROCESS": "true",  # the defaults, whatever the caller's environment says
        "LIAISON_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LIAISON_DATABASE_URL": "",  # the SQLite file of the scratch data dir
        "LIAISON_TARGET_URL": "",  # the embedded record
    }
    argv = [sys.executable, "-m", "adapter.cli", "serve", "--port", str(port)]
    argv.append("--pusher" if pusher else "--no-pusher")
    server = ServerProcess(argv, f"http://127.0.0.1:{port}/healthz", env=env)
    server.env.pop("LIAISON_CONVERT_PROCESSES", None)  # the default for this machine's cores
    return server


def _token(data_dir: Path) -> str:
    previous = os.environ.get("LIAISON_DATA_DIR")
    os.environ["LIAISON_DATA_DIR"] = str(data_dir)
    from adapter.auth import issue_token
    from adapter.config import get_settings

    get_settings.cache_clear()
    try:
        return issue_token("hospital", organization="1750803447")
    finally:
        if previous is not None:
            os.environ["LIAISON_DATA_DIR"] = previous
        get_settings.cache_clear()


def _burst(
    base: str, token: str, letters: range, clients: int, rate: float | None = None
) -> tuple[list[float], list[str], int, float]:
    """Post every letter from `clients` threads; (latencies, receipt locations, errors, seconds).

    Without `rate`, each client posts its next letter as soon as it has its answer (closed
    loop: the server's capacity). With `rate`, letter i is due at start + i / rate (open loop:
    hospitals do not wait for each other) and its latency counts from that moment, so a client
    that falls behind adds its wait to the figures instead of hiding it.

    Each client thread keeps one HTTP/1.1 connection (stdlib `http.client`): the load
    generator shares the server's two cores, and httpx cost four times more CPU per request."""
    latencies: list[float] = []
    locations: list[str] = []
    errors = 0
    lock = threading.Lock()
    local = threading.local()
    bodies = {n: letter_variant(n) for n in letters}  # built before the clock starts
    address = urlsplit(base)
    headers = {"Authorization": f"Bearer {token}", **CDA}

    def post(n: int) -> None:
        nonlocal errors
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = HTTPConnection(
                address.hostname, address.port, timeout=60
            )
        started = time.perf_counter()
        if rate is not None:
            due = begun + (n - letters.start) / rate
            if due > started:
                time.sleep(due - started)
            started = due
        try:
            connection.request("POST", "/discharge-letters", body=bodies[n], headers=headers)
            answer = connection.getresponse()
            answer.read()
        except OSError:
            connection.close()
            local.connection = None
            with lock:
                errors += 1
            return
        elapsed = time.perf_counter() - started
        with lock:
            if answer.status == 202:
                latencies.append(elapsed)
                locations.append(answer.headers["Location"])
            else:
                errors += 1

    with ThreadPoolExecutor(max_workers=clients) as pool:
        begun = time.perf_counter()
        list(pool.map(post, letters))
    return latencies, locations, errors, time.perf_counter() - begun


def _outbox(base: str, connection: HTTPConnection | None = None) -> tuple[float, float]:
    """(entries still to deliver, entries delivered), from the server's `/metrics`."""
    address = urlsplit(base)
    connection = connection or HTTPConnection(address.hostname, address.port, timeout=30)
    connection.request("GET", "/metrics")
    gauges = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in connection.getresponse().read().decode().splitlines()
        if line.startswith("liaison_outbox_entries{")
    }
    return gauges.get("pending", 0.0) + gauges.get("retrying", 0.0), gauges.get("delivered", 0.0)


class _DeliveryWatch:
    """Samples the delivered count twice a second while letters arrive: the steady delivery rate
    is its slope once the pipeline is full. (Counting what is still queued when the last letter
    is accepted mixes that rate with the few letters always on their way — accepted, not yet
    claimed or in a record transaction — which any run of any length ends with.)"""

    def __init__(self, base: str) -> None:
        self._base = base
        address = urlsplit(base)
        self._connection = HTTPConnection(address.hostname, address.port, timeout=30)
        self._stop = threading.Event()
        self.samples: list[tuple[float, float]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter(), _outbox(self._base, self._connection)[1]))
            if self._stop.wait(0.5):
                return

    def __enter__(self) -> _DeliveryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def steady_rate(self, skip_seconds: float) -> float:
        """Letters/s delivered from `skip_seconds` after the first sample to the last."""
        start = self.samples[0][0] + skip_seconds
        steady = [(t, n) for t, n in self.samples if t >= start]
        if len(steady) < 2:
            return float("nan")
        (first_time, first_count), (last_time, last_count) = steady[0], steady[-1]
        return (last_count - first_count) / (last_time - first_time)


def _wait_delivered(base: str, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    address = urlsplit(base)
    connection = HTTPConnection(address.hostname, address.port, timeout=30)  # polled 20 × /s
    while time.monotonic() < deadline:
        pending, delivered = _outbox(base, connection)
        if pending == 0 and delivered >= expected:
            return True
        time.sleep(0.05)
    return False


def _receipts(
    base: str, token: str, locations: list[str], *, check_pushed: bool
) -> tuple[int, int]:
    """(receipts not found, receipts not pushed) among the accepted letters."""
    missing = not_pushed = 0
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        for location in locations:
            answer = client.get(location)
            if answer.status_code != 200:
                missing += 1
            elif check_pushed and answer.json().get("status") != "pushed":
                not_pushed += 1
    return missing, not_pushed


def _cpu_by_role(server: int) -> dict[str, float]:
    """CPU seconds so far of the server process and of the processes it spawned, by role: the
    pusher runs at a lower priority than the server, conversion processes at the same."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_and_nice(pid: int) -> tuple[float, int]:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick, int(fields[16])

    roles = {"server": 0.0, "converters": 0.0, "pusher": 0.0}
    seconds, own_nice = cpu_and_nice(server)
    roles["server"] = seconds
    for task in Path(f"/proc/{server}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                if b"spawn_main" not in Path(f"/proc/{child}/cmdline").read_bytes():
                    continue
                seconds, nice = cpu_and_nice(int(child))
            except FileNotFoundError:
                continue
            roles["pusher" if nice > own_nice else "converters"] += seconds
    return roles


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ms(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000
    )


def _measure(clients: int, letters: range, deliver: bool, rate: float | None = None
             ) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="liaison-bench-ingest-") as scratch:
        data_dir = Path(scratch)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        token = _token(data_dir)
        server = _server(data_dir, port, pusher=deliver).start()
        try:
            warm_up = range(letters.start + 900_000, letters.start + 900_000 + WARM_UP)
            warmed = len(_burst(base, token, warm_up, 4)[1])
            if deliver:
                _wait_delivered(base, warmed, timeout=60)
            assert server.process is not None
            cpu_before, client_before = _cpu_by_role(server.process.pid), _client_cpu()
            started = time.perf_counter()
            with _DeliveryWatch(base) as watch:
                latencies, locations, errors, seconds = _burst(base, token, letters, clients,
                                                               rate)
            backlog = _outbox(base)[0]  # still to deliver when the last letter is accepted
            drained = deliver and _wait_delivered(base, warmed + len(locations), timeout=120)
            delivered_seconds = time.perf_counter() - started
            cpu_after, client_after = _cpu_by_role(server.process.pid), _client_cpu()
            missing, not_pushed = _receipts(base, token, locations, check_pushed=deliver)
        finally:
            server.stop()
    return {
        "accepted": len(latencies) / seconds,
        "p50": _ms(latencies, 50),
        "p95": _ms(latencies, 95),
        "p99": _ms(latencies, 99),
        "delivered": len(locations) / delivered_seconds if drained else 0.0,
        "backlog": backlog,
        # while letters were arriving (the paced run: does delivery keep up with them?)
        "delivered_meanwhile": (len(locations) - backlog) / seconds if deliver else float("nan"),
        # the same, once the pipeline is full (the first third of the run left out)
        "delivered_steady": watch.steady_rate(seconds / 3) if deliver else float("nan"),
        "drain": delivered_seconds - seconds if drained else float("nan"),
        "errors": errors,
        "missing": missing,
        "not_pushed": not_pushed,
        **{f"cpu_{role}": (cpu_after[role] - cpu_before[role]) * 1000 / len(letters)
           for role in cpu_after},
        "cpu_client": (client_after - client_before) * 1000 / len(letters),
    }


RUNS = 3  # a 200-letter burst lasts about a second: one run alone varies by ±25 % here
PACED_RATE = 100.0  # letters/s: issue 7's target
PACED_SECONDS = 30  # long enough for the record's growth to show (3,000 letters)
HEADROOM_RATE, HEADROOM_SECONDS = 120.0, 20


def _median_of(runs: int, clients: int, first: int, count: int, deliver: bool
               ) -> dict[str, float]:
    """Each figure's median over `runs` runs (each on a fresh server and data dir); errors,
    missing and not pushed receipts are summed."""
    measured = [_measure(clients, range(first + n * count, first + (n + 1) * count), deliver)
                for n in range(runs)]
    summed = ("errors", "missing", "not_pushed")
    return {key: (sum if key in summed else statistics.median)([m[key] for m in measured])
            for key in measured[0]}


def _paced_rows(rate: float, seconds: int, paced: dict[str, float]
                ) -> list[tuple[str, str, str]]:
    label = f"ingest paced at {rate:.0f} letters/s, 16 clients, {seconds} s"
    latency = f"{paced['p50']:.0f} / {paced['p95']:.0f} / {paced['p99']:.0f}"
    cpu = " / ".join(
        f"{paced[f'cpu_{role}']:.1f}" for role in ("server", "converters", "pusher", "client")
    )
    return [
        (f"{label}: accepted", "letters/s", f"{paced['accepted']:.0f}"),
        (f"{label}: accept latency p50 / p95 / p99 (from when due)", "ms", latency),
        (f"{label}: delivered to the embedded record while letters arrive, steady (after the "
         "first third) / overall", "letters/s",
         f"{paced['delivered_steady']:.1f} / {paced['delivered_meanwhile']:.1f}"),
        (f"{label}: still to deliver when the last letter is accepted / delivered after",
         "letters / s", f"{paced['backlog']:.0f} / {paced['drain']:.1f}"),
        (f"{label}: CPU per letter, server / converters / pusher / load generator", "ms", cpu),
        (f"{label}: errors / receipts missing / not pushed", "letters",
         f"{paced['errors']:.0f} / {paced['missing']:.0f} / {paced['not_pushed']:.0f}"),
    ]


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    count, runs = (60, 1) if quick else (200, RUNS)
    first = _median_of(runs, 16, 100_000, count, deliver=True)
    label = f"ingest: {count} letters, 16 clients" + (f" (median of {runs} runs)" if runs > 1
                                                      else "")
    rows.append((f"{label}: accepted", "letters/s", f"{first['accepted']:.0f}"))
    latency = f"{first['p50']:.0f} / {first['p95']:.0f} / {first['p99']:.0f}"
    rows.append((f"{label}: accept latency p50 / p95 / p99", "ms", latency))
    rows.append(
        (f"{label}: delivered to the embedded record", "letters/s", f"{first['delivered']:.1f}")
    )
    cpu = " / ".join(
        f"{first[f'cpu_{role}']:.1f}" for role in ("server", "converters", "pusher", "client")
    )
    rows.append(
        (f"{label}: CPU per letter, server / converters / pusher / load generator", "ms", cpu)
    )
    rows.append(
        (
            f"{label}: errors / receipts missing / not pushed",
            "letters",
            f"{first['errors']:.0f} / {first['missing']:.0f} / {first['not_pushed']:.0f}",
        )
    )
    paced_runs = [(PACED_RATE, 2 if quick else PACED_SECONDS, 300_000)]
    if not quick:  # above the target: how much room is left
        paced_runs.append((HEADROOM_RATE, HEADROOM_SECONDS, 400_000))
    for rate, seconds, first_letter in paced_runs:
        rows += _paced_rows(rate, seconds, _measure(
            16, range(first_letter, first_letter + int(rate * seconds)), deliver=True, rate=rate))
    if not quick:
        alone = _median_of(runs, 16, 150_000, count, deliver=False)
        label = f"ingest: {count} letters, 16 clients, pusher paused (median of {runs} runs)"
        rows.append((f"{label}: accepted", "letters/s", f"{alone['accepted']:.0f}"))
        latency = f"{alone['p50']:.0f} / {alone['p95']:.0f} / {alone['p99']:.0f}"
        rows.append((f"{label}: accept latency p50 / p95 / p99", "ms", latency))
        burst = _measure(50, range(200_000, 201_000), deliver=False)
        label = "ingest: 1,000 letters, 50 clients, pusher paused"
        rows.append((f"{label}: accepted", "letters/s", f"{burst['accepted']:.0f}"))
        rows.append(
            (f"{label}: accept latency p50 / p95", "ms", f"{burst['p50']:.0f} / {burst['p95']:.0f}")
        )
        rows.append(
            (
                f"{label}: errors / accepted letters lost",
                "letters",
                f"{burst['errors']:.0f} / {burst['missing']:.0f}",
            )
        )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(" | ".join(row))
