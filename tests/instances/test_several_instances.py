"""Two `liaison serve` and two `liaison worker` on one PostgreSQL database, hospitals posting to
both servers, one worker and one server killed (SIGKILL) mid-burst: every letter answered is in
the record exactly once, each patient's versions land in order, and a letter the dead server
never answered is all there or not at all, and gets its receipt when posted again.

All four are real processes started together with the project's CLI, each with its own data
dir but the same database (the embedded record in it too) and the same signing key, so one
hospital token works on both servers. The servers run `--no-pusher`: delivery is then the two
workers' alone, so the letters the killed worker held can only reach the record if the other
worker takes them over once their lease expires; with a pusher in each server, any of three
pushers could, and the test would not show that the worker tier survives a crash by itself.

The workers differ in their lease (6 s and 2 s): a claim ending more than 2 s ahead is the first
worker's, so the test kills it while it holds entries (seen in the outbox), and later finds those
entries delivered by the other, claimed a second time. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import threading
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from adapter.auth import issue_token
from adapter.auth.keys import key_path
from tests.support.letter_variants import letter_variant
from tests.support.servers import ServerProcess, free_port
from tests.support.waiting import wait_for

HOSPITALS = ("1750803447", "1120456789")  # the example's hospital, and another of its orgs
CDA = {"Content-Type": "application/hl7-cda+xml"}
REASON = "Episode psychotique – cachexie/anorexie".encode()  # becomes CarePlan.description
SINGLES = range(7000, 7060)  # one letter each; 7050… are second stays of 7000…'s patients
CHAINS = range(7100, 7110)  # versions 1, 2, 3 of one letter, posted one after the other
LONG_LEASE, SHORT_LEASE = 6.0, 2.0  # worker A's, worker B's
WORKER_KILL, SERVER_KILL = 15, 0.4  # outbox entries; share of the letters received
ENV = {"LIAISON_VALIDATION_MODE": "off", "LIAISON_CONVERT_PROCESSES": "0",
       "LIAISON_PUSH_TIMEOUT_SECONDS": "0.5", "LIAISON_PUSH_BACKOFF_BASE_SECONDS": "0.05",
       "LIAISON_PUSH_BACKOFF_MAX_SECONDS": "0.5", "LIAISON_PUSH_MAX_ATTEMPTS": "1000"}


@dataclass(frozen=True)
class Letter:
    n: int
    version: int
    hospital: str
    xml: bytes

    @property
    def extension(self) -> str:  # the ClinicalDocument/id extension, in every resource of it
        return f"liaison-test-{self.n}-v{self.version}"


def letter(n: int, version: int = 1, patient: int | None = None) -> Letter:
    hospital = HOSPITALS[n % 2]
    xml = letter_variant(n, version=version, patient=patient)
    xml = xml.replace(REASON, f"Motif, version {version}".encode())
    xml = xml.replace(f'extension="{HOSPITALS[0]}"'.encode(), f'extension="{hospital}"'.encode())
    return Letter(n, version, hospital, xml)


def jobs() -> list[list[Letter]]:
    """What the hospitals post: single letters, and chains of versions posted in order."""
    singles = [[letter(n, patient=n - 50 if n >= 7050 else None)] for n in SINGLES]
    chains = [[letter(n, version) for version in (1, 2, 3)] for n in CHAINS]
    mixed = [job for pair in itertools.zip_longest(singles, chains) for job in pair if job]
    return mixed


# the processes ------------------------------------------------------------------------------

def instance(name: str, argv: list[str], root: Path, database_url: str,
             probe_url: str | None = None, **env: str) -> ServerProcess:
    data_dir = root / name
    (data_dir / "auth").mkdir(parents=True)
    shutil.copy(key_path(), data_dir / "auth" / "signing-key.pem")  # one key: one token for all
    process = ServerProcess([sys.executable, "-m", "adapter.cli", *argv], probe_url,
                            {**ENV, **env, "LIAISON_DATA_DIR": str(data_dir),
                             "LIAISON_DATABASE_URL": database_url}, root / f"{name}.log")
    for inherited in ("LIAISON_RECORD_DATABASE_URL", "LIAISON_TARGET_URL"):
        process.env.pop(inherited, None)  # the embedded record, in the same database
    return process


def server(name: str, root: Path, database_url: str) -> tuple[ServerProcess, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    return instance(name, ["serve", "--port", str(port), "--no-pusher"], root, database_url,
                    f"{base}/healthz", LIAISON_PUBLIC_BASE_URL=base), base


def worker(name: str, root: Path, database_url: str, lease: float) -> ServerProcess:
    return instance(name, ["worker"], root, database_url,
                    LIAISON_PUSH_LEASE_SECONDS=str(lease))


# the hospitals ------------------------------------------------------------------------------

class Hospitals:
    """Client threads posting jobs to the live servers in turn; a letter whose post got no
    answer (connection refused or cut) is kept aside."""

    def __init__(self, bases: list[str]) -> None:
        self.bases = bases
        self.alive = set(bases)
        self.in_flight: Counter[str] = Counter()
        self.answered: list[tuple[Letter, int]] = []
        self.unanswered: list[tuple[Letter, str]] = []
        self.refused: list[str] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._local = threading.local()
        self.tokens = {h: issue_token("hospital", organization=h) for h in HOSPITALS}
        self._pool: ThreadPoolExecutor | None = None
        self._posting: list[Future[list[None]]] = []

    def _client(self, base: str) -> httpx.Client:
        clients = self._local.__dict__.setdefault("clients", {})
        if base not in clients:
            clients[base] = httpx.Client(base_url=base, timeout=60)
        return clients[base]

    def _pick(self) -> str:
        with self._lock:
            live = [base for base in self.bases if base in self.alive]
            base = live[next(self._turn) % len(live)]
            self.in_flight[base] += 1
            return base

    def post(self, item: Letter) -> None:
        base = self._pick()
        headers = {"Authorization": f"Bearer {self.tokens[item.hospital]}", **CDA}
        try:
            answer = self._client(base).post("/discharge-letters", content=item.xml,
                                             headers=headers)
        except httpx.TransportError:
            with self._lock:
                self.unanswered.append((item, base))
            return
        finally:
            with self._lock:
                self.in_flight[base] -= 1
        with self._lock:
            if answer.status_code in (200, 202):
                self.answered.append((item, answer.status_code))
            else:
                self.refused.append(f"{item.extension}: {answer.status_code} {answer.text[:300]}")

    def start(self, work: list[list[Letter]], clients: int = 4) -> None:
        """Post every job from `clients` threads, the letters of a job one after the other."""
        self._pool = ThreadPoolExecutor(clients)
        self._posting = [self._pool.submit(lambda job=job: [self.post(item) for item in job])
                         for job in work]

    def finish(self, *, cancel: bool = False) -> None:
        """Wait for the last answers (`cancel`: the jobs not begun are dropped)."""
        for posting in self._posting:
            if cancel:
                posting.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if not cancel:
            for posting in self._posting:
                posting.result()


# the database -------------------------------------------------------------------------------

def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def held_beyond(engine: Engine, seconds: float) -> set[int]:
    """Unfinished entries whose lease ends more than `seconds` from now."""
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, claimed_until FROM outbox_entry WHERE claim_token IS NOT NULL "
            "AND status IN ('pending', 'retrying')")).all()
    now = datetime.now(UTC)
    return {entry for entry, until in rows if (aware(until) - now).total_seconds() > seconds}


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(sql)).scalar_one())


def drained(engine: Engine) -> bool:
    return scalar(engine, "SELECT COUNT(*) FROM outbox_entry "
                          "WHERE status IN ('pending', 'retrying')") == 0


def record(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """The current resources of the embedded record, by type."""
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT resource_type, body FROM record_resource WHERE NOT deleted")).all()
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource_type, body in rows:
        found[resource_type].append(orjson.loads(body))
    return found


def letters_received(engine: Engine) -> dict[str, list[tuple[str, int]]]:
    """Per document id extension: (its outbox entry's status, attempts) of each row."""
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT l.document_id, o.status, o.attempts FROM received_letter l "
            "JOIN outbox_entry o ON o.id = l.outbox_id")).all()
    found: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for document_id, status, attempts in rows:
        found[document_id.rpartition("|")[2]].append((status, attempts))
    return found


def documents(resources: dict[str, list[dict[str, Any]]]) -> Counter[str]:
    """DocumentReferences and Provenances per document id extension."""
    found: Counter[str] = Counter()
    for document in resources["DocumentReference"]:
        found[f"DocumentReference {document['masterIdentifier']['value']}"] += 1
    for provenance in resources["Provenance"]:
        for tag in provenance.get("meta", {}).get("tag", []):
            if tag.get("system") == "urn:liaison:provenance":
                found[f"Provenance {tag['code'].rpartition('^')[2]}"] += 1
    return found


# Identifiers several resources carry by design: every version of a letter its setId; every
# stay's Device (one per letter, keyed by its entry) the device's own id, the same in each variant.
SHARED_BY_DESIGN = {"urn:liaison:document-set", "urn:oid:1.2.250.1.213.1.1.9.9"}


def shared_identifiers(resources: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Identifiers carried by more than one resource of a type (a duplicated write)."""
    seen: Counter[str] = Counter()
    for resource_type, found in resources.items():
        for resource in found:
            for identifier in resource.get("identifier", []):
                if identifier.get("system") in SHARED_BY_DESIGN:
                    continue
                seen[f"{resource_type} {identifier.get('system')}|{identifier.get('value')}"] += 1
    return {identifier: count for identifier, count in seen.items() if count > 1}


# the test -----------------------------------------------------------------------------------

@pytest.mark.postgres
def test_two_servers_and_two_workers_lose_nothing_when_one_of_each_is_killed(
        postgres_url: str, tmp_path: Path) -> None:
    issue_token("system")  # creates the signing key every instance is given
    root = tmp_path / "instances"
    engine = create_engine(postgres_url, pool_size=2)
    (first, first_base), (second, second_base) = (server(name, root, postgres_url)
                                                  for name in ("serve-1", "serve-2"))
    holder = worker("worker-a", root, postgres_url, LONG_LEASE)
    taker = worker("worker-b", root, postgres_url, SHORT_LEASE)
    everyone = [first, second, holder, taker]
    hospitals = Hospitals([first_base, second_base])
    work = jobs()
    posted = [item for job in work for item in job]
    orphans: set[int] = set()
    late: set[str] = set()
    try:
        for process in everyone:  # together: one fresh database, four schema creators
            process.launch()
        for process in everyone:
            process.wait_until_up()
        hospitals.start(work)
        # Worker A killed while it holds entries (a lease longer than B's can be), once the
        # outbox has some: if it finished them in the instant before the kill, it is started
        # again and killed again.
        for _ in range(5):
            wait_for(lambda: scalar(engine, "SELECT COUNT(*) FROM outbox_entry") >= WORKER_KILL
                     and held_beyond(engine, SHORT_LEASE + 0.5), "worker A holding entries",
                     timeout=120)
            holder.kill()
            orphans = held_beyond(engine, SHORT_LEASE + 0.5)
            if orphans:
                break
            holder.launch()
        assert orphans, "worker A was never killed while holding entries"
        # Server 1 killed with letters on their way to it, half-way through the burst.
        wait_for(lambda: hospitals.in_flight[first_base] and scalar(
            engine, "SELECT COUNT(*) FROM received_letter") >= len(posted) * SERVER_KILL,
            "server 1 mid-burst", timeout=120)
        with hospitals._lock:
            hospitals.alive.discard(first_base)
        first.kill()
        hospitals.finish()  # the rest of the burst, on server 2
        wait_for(lambda: drained(engine), "the outbox drained by worker B", timeout=180)

        assert hospitals.refused == []
        assert hospitals.unanswered, "no letter was on its way to server 1 when it died"
        resources = record(engine)
        found, received = documents(resources), letters_received(engine)
        # A letter server 1 never answered is all there (received, delivered, in the record
        # once) or not at all.
        for item, _ in hospitals.unanswered:
            there = [found[f"{kind} {item.extension}"] for kind in ("DocumentReference",
                                                                      "Provenance")]
            statuses = [status for status, _ in received.get(item.extension, [])]
            assert (there, statuses) in (([0, 0], []), ([1, 1], ["delivered"])), item.extension
        # …and posted again, it gets a receipt: the one it had, or a new one. (A version older
        # than one received meanwhile comes late: its bundle records its document alone,
        # superseded, without a Provenance: `adapter.ingest.versions.record_late`.)
        late = {item.extension for item, _ in hospitals.unanswered
                if item.extension not in received and any(
                    f"liaison-test-{item.n}-v{newer}" in received
                    for newer in range(item.version + 1, 4))}
        again = httpx.Client(base_url=second_base, timeout=60)
        for item, _ in hospitals.unanswered:
            answer = again.post("/discharge-letters", content=item.xml, headers={
                "Authorization": f"Bearer {hospitals.tokens[item.hospital]}", **CDA})
            expected = 200 if item.extension in received else 202
            assert answer.status_code == expected, answer.text
            assert answer.json()["document"]["id"].endswith(item.extension)
        wait_for(lambda: drained(engine), "the letters posted again delivered",
                 timeout=120)
    finally:
        hospitals.finish(cancel=True)
        for process in everyone:
            process.stop()

    resources = record(engine)
    found, received = documents(resources), letters_received(engine)
    # Every letter once: received once, delivered, one DocumentReference, one Provenance.
    assert {item.extension: (received.get(item.extension, [("", 0)])[0][0],
                             len(received.get(item.extension, [])),
                             found[f"DocumentReference {item.extension}"],
                             found[f"Provenance {item.extension}"]) for item in posted} \
        == {item.extension: ("delivered", 1, 1, 0 if item.extension in late else 1)
            for item in posted}
    assert len(received) == len(posted)
    # Nothing written twice: no two resources of a type share an identifier (one CarePlan,
    # Encounter, CareTeam per stay; one Patient per INS; one Communication per message…).
    assert shared_identifiers(resources) == {}
    stays = {*SINGLES, *CHAINS}
    for resource_type in ("CarePlan", "Encounter", "CareTeam"):
        assert len(resources[resource_type]) == len(stays), resource_type
    # Each patient's versions in order: version 3 is current, 1 and 2 superseded.
    plans = {plan["identifier"][0]["value"].rpartition("^")[2]: plan
             for plan in resources["CarePlan"]}
    states = {document["masterIdentifier"]["value"]: document["status"]
              for document in resources["DocumentReference"]}
    for n in CHAINS:
        assert plans[f"liaison-test-{n}"]["description"] == "Motif, version 3"
        assert [states[f"liaison-test-{n}-v{v}"] for v in (1, 2, 3)] \
            == ["superseded", "superseded", "current"]
    # Worker A's entries at its death were delivered by worker B, claimed a second time.
    with engine.connect() as connection:
        taken_over = connection.execute(text(
            "SELECT id, status, attempts FROM outbox_entry WHERE id = ANY(:ids)"),
            {"ids": sorted(orphans)}).all()
    assert {(status, attempts >= 2) for _, status, attempts in taken_over} \
        == {("delivered", True)}
    engine.dispose()
