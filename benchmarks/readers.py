"""Many readers: professionals pulling their changes and searching care plans while letters
arrive, against a real `liaison serve` process, on SQLite and on PostgreSQL.

The record is first bulk-loaded (before the server starts, `Repository.import_resources`)
with patients shaped as `record_search` makes them (Patient, CareTeam, CarePlan, Encounter,
Communication), each in the care team of two of `PROFESSIONALS` professionals (idNat_PS
`8` + 11 digits): every professional has patients of their own (full: 1,000 professionals,
10,000 patients, ~20 each). The server runs with its defaults (conversion processes, a
pusher delivering to the embedded record; schematron validation off, as in `ingest`).

Then, per database:
1. *letters alone*: a hospital client posts real CDA letters (`letter_variant`, the médecin
   traitant replaced by one of the professionals, a new patient each) at `RATE` letters/s,
   open loop (letter i due at i / rate; its accept latency counts from then);
2. *readers*: `READER_PROCESSES` load processes (separate from the server and from the
   hospital client) each drive their share of the professionals on one asyncio loop, with
   one keep-alive connection each and a minimal HTTP/1.1 client on raw streams (httpx costs
   several times the CPU per request, and the load generator shares the two cores). Each
   professional first pulls everything of theirs (`GET /fhir/_history`, `_count=500`,
   following `next`: the catch-up, timed apart), then, open loop, pulls its changes from its
   `resume` cursor every `INTERVAL` seconds (phase chosen at random) and, every
   `SEARCH_EVERY`-th cycle, half-way between two pulls, searches
   `CarePlan?patient.identifier=` for one of its patients. A pull is the pages up to caught
   up; latencies count from the moment the request was due, so a server falling behind shows
   (a professional never has two requests in flight: a late one starts as soon as the
   previous one is answered). A read told 503 + Retry-After is asked again after that
   delay, as real software does (counted apart; its latency still counts from when it was
   due). Offered: 1,000 / 3 s = 333 pulls/s and 67 searches/s.
3. meanwhile the same hospital client posts letters at `RATE`/s again; for each, the delay
   from its 202 to the end of the pull of its médecin traitant that brought its CarePlan
   (the clock is the machine's monotonic one, shared by the processes), and the letters no
   pull brought by the end (the readers go on `INTERVAL` + 5 s after the last letter).
   The accept latency is compared with step 1's ("ingestion unaffected"), and the outbox's
   backlog is read when the last letter is accepted.

The full run measures `liaison serve --workers 1` and `--workers 2` (two server processes,
each with its conversion and pusher processes) on each database and, on PostgreSQL, letters
and readers on instances of their own: the hospital posts to one `serve`, the professionals
pull from another (`--no-pusher`, no conversion process), as docs/deploy.md lays out a
region; `--quick` (100 professionals, 1,000 patients, 10 s) only the first.

CPU per second of the measure, by process: the server's (server, conversion and pusher
processes: every process of its tree), PostgreSQL's (its postmaster's tree), the readers'
and the hospital client's.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from benchmarks.ingest import _outbox, _wait_delivered
from benchmarks.record_search import IDNAT_PS, INS, patient_resources
from tests.support.letter_variants import letter_variant
from tests.support.servers import ServerProcess, free_port

PCP = b'extension="801984758437"'  # the médecin traitant of the example letter
CDA = {"Content-Type": "application/hl7-cda+xml"}
CAREPLAN_SYSTEM = "urn:liaison:careplan"
INTERVAL = 3.0  # seconds between two pulls of a professional
SEARCH_EVERY = 5  # cycles
RATE = 20.0  # letters/s
READER_PROCESSES = 2
WARM_UP = 16  # letters delivered before anything is measured


def idnat(professional: int) -> str:
    return f"8{professional:011d}"


def _members(patient: int, professionals: int) -> tuple[int, int]:
    """The two professionals in the care team of background patient `patient`."""
    first = patient % professionals
    return first, (first + 1 + (patient // professionals) % (professionals - 1)) % professionals


def _seed(professionals: int, patients: int) -> None:
    """Bulk-load the background record into the configured database (run in a process of its
    own, with the server's environment)."""
    from adapter.record.repository import Repository

    resources: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": f"pr{k}",
         "identifier": [{"system": IDNAT_PS, "value": idnat(k)}], "name": [{"family": f"Doc{k}"}]}
        for k in range(professionals)]
    repository = Repository()
    for n in range(patients):
        resources += patient_resources(n, _members(n, professionals))
        if len(resources) >= 20_000:  # in slices: bounded memory
            repository.import_resources(resources)
            resources = []
    repository.import_resources(resources)


def _letter(n: int, professional: int) -> bytes:
    letter = letter_variant(n)
    assert PCP in letter
    return letter.replace(PCP, f'extension="{idnat(professional)}"'.encode())


# --- the readers' process ---------------------------------------------------------------------


class _Connection:
    """One keep-alive HTTP/1.1 connection: GET only, answers with a Content-Length (uvicorn's)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.address = (host, port)
        self.head = f"Host: {host}\r\nAuthorization: Bearer {token}\r\n" \
                    "Accept: application/fhir+json\r\n\r\n"
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, target: str) -> tuple[int, float | None, bytes]:
        """(status, its Retry-After in seconds if any, body)."""
        reused = self.streams is not None
        if self.streams is None:
            self.streams = await asyncio.open_connection(*self.address)
        reader, writer = self.streams
        writer.write(f"GET {target} HTTP/1.1\r\n{self.head}".encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            # the server closed an idle connection (uvicorn: after 5 s), as HTTP clients do:
            # once more on a new one
            if not reused or (isinstance(error, asyncio.IncompleteReadError) and error.partial):
                raise
            writer.close()
            self.streams = None
            return await self.get(target)
        status = int(head[9:12])
        length, retry_after = 0, None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"retry-after":
                retry_after = float(value)
        return status, retry_after, await reader.readexactly(length)


class Throttled(Exception):
    """The server asked to come back in `retry_after` seconds (503 + Retry-After)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry in {retry_after} s")
        self.retry_after = retry_after


async def _pull(connection: _Connection, cursor: str | None, seen: dict[str, float]
                ) -> tuple[str, int]:
    """Pages until caught up from `cursor`: (the resume cursor, resources). The letters whose
    CarePlan came are noted in `seen` with the time the pull ended."""
    import orjson

    carried: list[str] = []
    resources = 0
    while True:
        target = "/fhir/_history?_count=500" + (f"&_cursor={cursor}" if cursor else "")
        status, retry_after, body = await connection.get(target)
        if status == 503 and retry_after is not None:
            raise Throttled(retry_after)
        if status != 200:
            raise RuntimeError(f"pull answered {status}")
        page = orjson.loads(body)
        for entry in page.get("entry") or []:
            found = entry.get("resource") or {}
            resources += 1
            if found.get("resourceType") == "CarePlan":
                carried += [i["value"].rpartition("liaison-test-")[2]
                            for i in found.get("identifier") or []
                            if i.get("system") == CAREPLAN_SYSTEM]
        links = {link["relation"]: link["url"] for link in page["link"]}
        cursor = links["resume"].rpartition("_cursor=")[2]
        if "next" not in links:
            break
    now = time.monotonic()
    for letter in carried:
        seen.setdefault(letter, now)
    return cursor, resources


async def _readers(config: dict[str, Any]) -> dict[str, Any]:
    address = urlsplit(config["base"])
    host, port = address.hostname or "127.0.0.1", address.port or 80
    professionals = config["professionals"]  # [(token, [INS of its patients])]
    connections = [_Connection(host, port, token) for token, _ in professionals]
    cursors: list[str | None] = [None] * len(professionals)
    seen: dict[str, float] = {}
    caught_up = asyncio.Semaphore(32)  # the catch-up: not all first pulls at once

    async def catch_up(k: int) -> int:
        async with caught_up:
            cursors[k], resources = await _pull(connections[k], None, seen)
            return resources

    started = time.monotonic()
    resources = sum(await asyncio.gather(*(catch_up(k) for k in range(len(professionals)))))
    catch_up_seconds = time.monotonic() - started
    seen.clear()
    print("ready", flush=True)
    begin = float(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
    cpu_before = _own_cpu()
    end, stop = begin + config["seconds"], begin + config["seconds"] + config["grace"]
    pulls: list[tuple[float, float]] = []  # (due, answered)
    searches: list[tuple[float, float]] = []
    errors: dict[str, int] = {}
    rng = random.Random(config["seed"])
    interval = config["interval"]

    throttled = {"pull": 0, "search": 0}

    async def answered(kind: str, request: Any) -> Any:
        """`request()` until answered, waiting as long as each 503 asks (Retry-After), as
        software pulling every few minutes does; None if the measure ends first."""
        while True:
            try:
                return await request()
            except Throttled as busy:
                throttled[kind] += 1
                if time.monotonic() + busy.retry_after >= stop:
                    return None
                await asyncio.sleep(busy.retry_after)

    async def search(connection: _Connection, patient: str) -> bool:
        target = f"/fhir/CarePlan?patient.identifier={quote(f'{INS}|{patient}')}"
        status, retry_after, _ = await connection.get(target)
        if status == 503 and retry_after is not None:
            raise Throttled(retry_after)
        if status != 200:
            raise RuntimeError(f"search answered {status}")
        return True

    async def professional(k: int) -> None:
        due = begin + rng.random() * interval
        cycle = rng.randrange(SEARCH_EVERY)
        patients = professionals[k][1]
        connection = connections[k]
        while due < stop:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                pulled = await answered("pull", lambda: _pull(connection, cursors[k], seen))
                if pulled is None:
                    break
                cursors[k] = pulled[0]
                pulls.append((due, time.monotonic()))
                cycle += 1
                if cycle % SEARCH_EVERY == 0 and patients:
                    searched = due + interval / 2
                    await asyncio.sleep(max(0.0, searched - time.monotonic()))
                    asked = functools.partial(search, connection, rng.choice(patients))
                    if await answered("search", asked) is None:
                        break
                    searches.append((searched, time.monotonic()))
            except (OSError, RuntimeError, asyncio.IncompleteReadError, ValueError) as error:
                kind = str(error) if isinstance(error, RuntimeError) else type(error).__name__
                errors[kind] = errors.get(kind, 0) + 1
                connection.streams = None
            due += interval

    await asyncio.gather(*(professional(k) for k in range(len(professionals))))
    return {"catch_up_seconds": catch_up_seconds, "catch_up_resources": resources,
            "pulls": pulls, "searches": searches, "seen": seen, "errors": errors,
            "throttled": throttled, "cpu": _own_cpu() - cpu_before, "end": end}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reader_main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_readers(config))
    Path(config["output"]).write_text(json.dumps(result))


# --- the benchmark's process ------------------------------------------------------------------


def _servers_cpu(servers: list[ServerProcess]) -> float:
    total = 0.0
    for server in servers:
        assert server.process is not None
        total += _tree_cpu(server.process.pid)
    return total


def _tree_cpu(pid: int) -> float:
    """CPU seconds so far of a process and of every process below it (those alive)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(") ", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _post_letters(base: str, token: str, letters: list[tuple[int, int]], begin: float
                  ) -> dict[int, tuple[float, float]]:
    """Post letters (n, professional) at `RATE`/s from `begin` (monotonic), open loop, from a
    few threads with one keep-alive connection each: {n: (due, answered 202)}."""
    bodies = {n: _letter(n, k) for n, k in letters}  # built before the clock starts
    address = urlsplit(base)
    headers = {"Authorization": f"Bearer {token}", **CDA}
    answered: dict[int, tuple[float, float]] = {}
    local = threading.local()

    def post(index: int) -> None:
        n = letters[index][0]
        due = begin + index / RATE
        time.sleep(max(0.0, due - time.monotonic()))
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = HTTPConnection(address.hostname, address.port,
                                                           timeout=60)
        try:
            connection.request("POST", "/discharge-letters", body=bodies[n], headers=headers)
            answer = connection.getresponse()
            answer.read()
        except OSError:
            connection.close()
            local.connection = None
            return
        if answer.status == 202:
            answered[n] = (due, time.monotonic())

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, range(len(letters))))
    return answered


def _ms(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def _start_server(data_dir: Path, port: int, database_url: str, workers: int,
                  readers_only: bool = False) -> ServerProcess:
    """`liaison serve` with its defaults; `readers_only`: an instance for community software
    (no pusher, no conversion process), beside another that hospitals post to."""
    env = {"LIAISON_DATA_DIR": str(data_dir), "LIAISON_VALIDATION_MODE": "off",
           "LIAISON_PUSH_WORKERS": "2", "LIAISON_PUSH_PROCESS": "true",
           "LIAISON_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
           "LIAISON_DATABASE_URL": database_url, "LIAISON_TARGET_URL": ""}
    argv = [sys.executable, "-m", "adapter.cli", "serve", "--port", str(port),
            "--no-pusher" if readers_only else "--pusher", "--workers", str(workers)]
    server = ServerProcess(argv, f"http://127.0.0.1:{port}/healthz", env=env,
                           log=data_dir / f"server-{port}.log")
    for inherited in ("LIAISON_CONVERT_PROCESSES", "LIAISON_RECORD_DATABASE_URL"):
        server.env.pop(inherited, None)  # the defaults, whatever the caller's environment
    if readers_only:
        server.env["LIAISON_CONVERT_PROCESSES"] = "0"
    return server.start()


def _tokens(data_dir: Path, professionals: int) -> tuple[str, list[str]]:
    """The hospital's token and one per professional, signed with the server's key."""
    previous = os.environ.get("LIAISON_DATA_DIR")
    os.environ["LIAISON_DATA_DIR"] = str(data_dir)
    from adapter.auth import issue_token
    from adapter.config import get_settings

    get_settings.cache_clear()
    try:
        return (issue_token("hospital", organization="1750803447"),
                [issue_token("professional", idnat=idnat(k)) for k in range(professionals)])
    finally:
        if previous is None:
            os.environ.pop("LIAISON_DATA_DIR", None)
        else:
            os.environ["LIAISON_DATA_DIR"] = previous
        get_settings.cache_clear()


def _measure(database_url: str, professionals: int, patients: int, seconds: float,
             alone_seconds: float, workers: int, postgres_pid: int | None,
             split: bool = False) -> dict[str, Any]:
    """One setup measured; `split`: the readers pull from an instance of their own (`serve
    --no-pusher`, no conversion process) while the hospital posts to the other."""
    with tempfile.TemporaryDirectory(prefix="liaison-bench-readers-") as scratch:
        data_dir = Path(scratch)
        hospital, tokens = _tokens(data_dir, professionals)
        env = {**os.environ, "LIAISON_DATA_DIR": str(data_dir),
               "LIAISON_DATABASE_URL": database_url}
        env.pop("LIAISON_RECORD_DATABASE_URL", None)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"from benchmarks.readers import _seed; "
                        f"_seed({professionals}, {patients})"], env=env, check=True)
        found: dict[str, Any] = {"seed_seconds": time.perf_counter() - started}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = _start_server(data_dir, port, database_url, workers)
        servers = [server]
        readers: list[subprocess.Popen[str]] = []
        try:
            read_base = base
            if split:
                read_port = free_port()
                servers.append(_start_server(data_dir, read_port, database_url, 1,
                                             readers_only=True))
                read_base = f"http://127.0.0.1:{read_port}"
            rng = random.Random(11)
            numbers = iter(range(10**6))
            warm = [(next(numbers), rng.randrange(professionals)) for _ in range(WARM_UP)]
            _post_letters(base, hospital, warm, time.monotonic())
            _wait_delivered(base, len(warm), timeout=120)
            alone = [(next(numbers), rng.randrange(professionals))
                     for _ in range(int(RATE * alone_seconds))]
            answered = _post_letters(base, hospital, alone, time.monotonic() + 0.5)
            found["alone"] = [done - due for due, done in answered.values()]
            found["alone_backlog"] = _outbox(base)[0]
            _wait_delivered(base, len(warm) + len(answered), timeout=120)
            live = [(next(numbers), rng.randrange(professionals))
                    for _ in range(int(RATE * seconds))]
            patients_of: dict[int, list[str]] = {k: [] for k in range(professionals)}
            for n in range(patients):
                for k in _members(n, professionals):
                    patients_of[k].append(f"{n:015d}")
            share = -(-professionals // READER_PROCESSES)
            for r in range(READER_PROCESSES):
                config = {"base": read_base, "seconds": seconds, "grace": INTERVAL + 5,
                          "interval": INTERVAL, "seed": r, "output": str(data_dir / f"r{r}.json"),
                          "professionals": [(tokens[k], patients_of[k][:20])
                                            for k in range(r * share,
                                                           min(professionals, (r + 1) * share))]}
                (data_dir / f"r{r}.config").write_text(json.dumps(config))
                readers.append(subprocess.Popen(
                    [sys.executable, "-c", "import sys; from benchmarks.readers import "
                     "_reader_main; _reader_main(sys.argv[1])", str(data_dir / f"r{r}.config")],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            for reader in readers:
                assert reader.stdout is not None
                if reader.stdout.readline().strip() != "ready":
                    raise RuntimeError("a readers' process failed to catch up")
            begin = time.monotonic() + 0.5
            cpu = (_servers_cpu(servers),
                   _tree_cpu(postgres_pid) if postgres_pid else 0.0, _own_cpu())
            for reader in readers:
                assert reader.stdin is not None
                reader.stdin.write(f"{begin}\n")
                reader.stdin.flush()
            answered = _post_letters(base, hospital, live, begin)
            found["backlog"] = _outbox(base)[0]
            found["cpu"] = [_servers_cpu(servers) - cpu[0],
                            (_tree_cpu(postgres_pid) - cpu[1]) if postgres_pid else 0.0,
                            _own_cpu() - cpu[2]]
            found["cpu_seconds"] = time.monotonic() - begin
            results = []
            for r, reader in enumerate(readers):
                if reader.wait(timeout=seconds + 120) != 0:
                    raise RuntimeError("a readers' process failed")
                results.append(json.loads((data_dir / f"r{r}.json").read_text()))
        finally:
            for reader in readers:
                if reader.poll() is None:
                    reader.kill()
            for running in servers:
                running.stop()
    end = begin + seconds
    pulls = [pull for result in results for pull in result["pulls"]]
    seen = {letter: time for result in results for letter, time in result["seen"].items()}
    found.update({
        "live": [done - due for due, done in answered.values()],
        "accepted": len(answered), "letters": len(live),
        "pulls_per_second": len([1 for _, done in pulls if begin <= done <= end]) / seconds,
        "pull": [done - due for due, done in pulls if due <= end],
        "search": [done - due for result in results for due, done in result["searches"]
                   if due <= end],
        "delay": [seen[str(n)] - done for n, (_, done) in answered.items() if str(n) in seen],
        "missed": len([n for n in answered if str(n) not in seen]),
        "throttled": {kind: sum(result["throttled"][kind] for result in results)
                      for kind in ("pull", "search")},
        "errors": {kind: sum(result["errors"].get(kind, 0) for result in results)
                   for result in results for kind in result["errors"]},
        "catch_up": (sum(result["catch_up_resources"] for result in results),
                     max(result["catch_up_seconds"] for result in results)),
        "cpu_readers": sum(result["cpu"] for result in results),
    })
    return found


def _rows(label: str, m: dict[str, Any], seconds: float) -> list[tuple[str, str, str]]:
    def p(values: list[float], *qs: int) -> str:
        return " / ".join(f"{_ms(values, q):.0f}" for q in qs)

    per_second = m["cpu_seconds"]
    readers = m["cpu_readers"] / (seconds + INTERVAL + 5)  # they run on after the letters
    cpu = " / ".join(f"{c:.2f}" for c in (m["cpu"][0] / per_second, m["cpu"][1] / per_second,
                                           readers, m["cpu"][2] / per_second))
    resources, catch_up = m["catch_up"]
    return [
        (f"{label}: pulls achieved (offered {m['offered']:.0f}/s)", "pulls/s",
         f"{m['pulls_per_second']:.0f}"),
        (f"{label}: pull latency p50 / p95 / p99 (from when due)", "ms",
         p(m["pull"], 50, 95, 99)),
        (f"{label}: CarePlan?patient.identifier= p50 / p95 (from when due)", "ms",
         p(m["search"], 50, 95)),
        (f"{label}: letter 202 → in its médecin traitant's pull p50 / p95; missed", "ms; letters",
         f"{p(m['delay'], 50, 95)}; {m['missed']} of {m['accepted']}"),
        (f"{label}: accept latency p50 / p95 at {RATE:.0f} letters/s, with readers / alone",
         "ms", f"{p(m['live'], 50, 95)} / {p(m['alone'], 50, 95)}"),
        (f"{label}: outbox backlog when the last letter is accepted, with readers / alone",
         "entries", f"{m['backlog']:.0f} / {m['alone_backlog']:.0f}"),
        (f"{label}: CPU, server (all its processes) / PostgreSQL / readers / hospital client",
         "s per s", cpu),
        (f"{label}: catch-up, every professional's first pull ({resources:,} resources)",
         "s", f"{catch_up:.1f}"),
        (f"{label}: told to come back (503 + Retry-After, waited as asked): pulls / searches",
         "requests", f"{m['throttled']['pull']} / {m['throttled']['search']}"),
        (f"{label}: errors (readers) / letters refused", "requests",
         f"{sum(m['errors'].values())} / {m['letters'] - m['accepted']}"
         + "".join(f" ({kind}: {n})" for kind, n in m["errors"].items())),
    ]


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    from tests.support.postgres import PostgresServer

    professionals, patients, seconds, alone = (100, 1_000, 10.0, 5.0) if quick else (
        1_000, 10_000, 60.0, 20.0)
    rows: list[tuple[str, str, str]] = []
    for database in ("sqlite", "postgresql"):
        setups = [(1, False)] if quick else [(1, False), (2, False)]
        if database == "postgresql" and not quick:
            setups.append((1, True))
        for workers, split in setups:
            postgres = None
            try:
                if database == "postgresql":
                    try:
                        postgres = PostgresServer().start()
                    except BaseException as missing:  # pytest's Skip: no Debian binaries
                        rows.append((f"readers, {database}", "-", f"not available: {missing}"))
                        break
                    url = postgres.create_database("readers")
                    pid = int((Path(postgres.root) / "data" / "postmaster.pid").read_text()
                              .split()[0])
                else:
                    url, pid = "", None
                load = os.getloadavg()[0]
                measured = _measure(url, professionals, patients, seconds, alone, workers, pid,
                                    split)
                measured["offered"] = professionals / INTERVAL
                setup = ("serve for letters + serve --no-pusher for readers" if split
                         else f"serve --workers {workers}")
                label = (f"readers, {database}, {setup}: {professionals:,} "
                         f"professionals, {patients:,} patients, {seconds:.0f} s "
                         f"(load before {load:.1f})")
                rows += _rows(label, measured, seconds)
            finally:
                if postgres is not None:
                    postgres.stop()
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(" | ".join(row))
