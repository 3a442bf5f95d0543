"""Nothing audited is lost on `kill -9`: a read is answered only once its audit row is
committed, and the rows of a write are committed with the write."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from adapter.auth import issue_token
from adapter.record import audit
from tests.support.letter_variants import letter_variant
from tests.support.servers import ServerProcess, free_port

HOSPITAL = "1750803447"
PCP = "801984758437"


def read_all(client: httpx.Client, headers: dict[str, str], count: int) -> int:
    """Search as many times at once; how many were answered (within a second each)."""
    def search(_: int) -> bool:
        try:
            return client.get("/fhir/CarePlan", headers=headers, timeout=1.0).status_code == 200
        except httpx.TimeoutException:
            return False

    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(search, range(count)))


@contextmanager
def served_with_a_delivered_letter(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    """`liaison serve` on a fresh data dir, one letter delivered to its record; (client,
    data dir)."""
    data_dir = Path(os.environ["LIAISON_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {"LIAISON_DATA_DIR": str(data_dir), "LIAISON_VALIDATION_MODE": "off"}
    server = ServerProcess([sys.executable, "-m", "adapter.cli", "serve", "--port", str(port)],
                           f"http://127.0.0.1:{port}/healthz", env, tmp_path / "serve.log")
    hospital = {"Authorization": f"Bearer {issue_token('hospital', organization=HOSPITAL)}"}
    with server, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        posted = client.post("/discharge-letters", content=letter_variant(301),
                             headers={**hospital, "Content-Type": "application/xml"})
        assert posted.status_code == 202
        deadline = time.monotonic() + 60
        while client.get(posted.headers["Location"], headers=hospital).json()["status"] \
                != "pushed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client.server = server  # type: ignore[attr-defined]
        yield client, data_dir


@contextmanager
def write_lock_held(database: Path) -> Iterator[None]:
    """Another process's transaction holding SQLite's writer lock on `database`."""
    blocker = sqlite3.connect(database, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


def test_reads_and_writes_answered_are_on_the_trail_after_a_kill(tmp_path: Path) -> None:
    reader = {"Authorization": f"Bearer {issue_token('professional', idnat=PCP)}"}
    with served_with_a_delivered_letter(tmp_path) as (client, data_dir):
        answered = read_all(client, reader, 100)
        assert answered == 100
        # Another process holds the lock of the file the reads' audit rows go to: the
        # searches themselves could run, but none may be answered unaudited.
        with write_lock_held(data_dir / "liaison.record.audit.db"):
            answered += read_all(client, reader, 30)
            client.server.kill()  # type: ignore[attr-defined]  # no clean shutdown
    record = create_engine(f"sqlite:///{data_dir / 'liaison.record.db'}")
    reads = create_engine(f"sqlite:///{data_dir / 'liaison.record.audit.db'}")
    with reads.connect() as connection:
        audited_reads = connection.execute(text(
            "SELECT COUNT(*) FROM record_audit WHERE actor = :pcp AND action = 'search'"),
            {"pcp": PCP}).scalar()
    with record.connect() as connection:
        written = connection.execute(text("SELECT COUNT(*) FROM record_resource")).scalar()
        audited_writes = connection.execute(text(
            "SELECT COUNT(DISTINCT resource_type || '/' || resource_id) FROM record_audit "
            "WHERE actor_kind = 'internal' AND outcome IN (200, 201)")).scalar()
    record.dispose()
    reads.dispose()
    assert audited_reads == answered
    assert written and audited_writes == written  # all the delivery wrote is on the trail


def test_reads_are_answered_and_audited_while_a_record_transaction_holds_its_lock(
        tmp_path: Path) -> None:
    """A long record transaction (a care team change refreshing thousands of patients'
    grants, a batch of letters) must not hold every reader up: a read's audit row is not
    committed in the record's file."""
    reader = {"Authorization": f"Bearer {issue_token('professional', idnat=PCP)}"}
    with served_with_a_delivered_letter(tmp_path) as (client, data_dir):
        with write_lock_held(data_dir / "liaison.record.db"):
            assert read_all(client, reader, 30) == 30
        answered = client.get("/fhir/CarePlan", headers=reader)
        assert answered.status_code == 200 and answered.json()["entry"]
    record = create_engine(f"sqlite:///{data_dir / 'liaison.record.db'}")
    try:
        kinds = [(found.actor_kind, found.action) for found in audit.trail(record)]
    finally:
        record.dispose()
    # one trail, oldest first: the delivery's writes, then the 31 searches
    assert kinds.count(("professional", "search")) == 31
    assert kinds[0][0] == "internal" and kinds[-31:] == [("professional", "search")] * 31
