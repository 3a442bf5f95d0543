"""Nothing audited is lost on `kill -9`: a read is answered only once its audit row is
committed, and the rows of a write are committed with the write."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from adapter.auth import issue_token
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


def test_reads_and_writes_answered_are_on_the_trail_after_a_kill(tmp_path: Path) -> None:
    data_dir = Path(os.environ["LIAISON_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {"LIAISON_DATA_DIR": str(data_dir), "LIAISON_VALIDATION_MODE": "off"}
    server = ServerProcess([sys.executable, "-m", "adapter.cli", "serve", "--port", str(port)],
                           f"http://127.0.0.1:{port}/healthz", env, tmp_path / "serve.log")
    hospital = {"Authorization": f"Bearer {issue_token('hospital', organization=HOSPITAL)}"}
    reader = {"Authorization": f"Bearer {issue_token('professional', idnat=PCP)}"}
    record_file = data_dir / "liaison.record.db"
    with server, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        posted = client.post("/discharge-letters", content=letter_variant(301),
                             headers={**hospital, "Content-Type": "application/xml"})
        assert posted.status_code == 202
        deadline = time.monotonic() + 60
        while client.get(posted.headers["Location"], headers=hospital).json()["status"] \
                != "pushed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        answered = read_all(client, reader, 100)
        assert answered == 100
        # Another process holds the record's write lock (a long maintenance transaction):
        # the searches themselves could run, but none may be answered unaudited.
        blocker = sqlite3.connect(record_file, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        answered += read_all(client, reader, 30)
        server.kill()  # no clean shutdown: nothing waiting gets a chance to be written
        blocker.rollback()
        blocker.close()
    engine = create_engine(f"sqlite:///{record_file}")
    with engine.connect() as connection:
        audited_reads = connection.execute(text(
            "SELECT COUNT(*) FROM record_audit WHERE actor = :pcp AND action = 'search'"),
            {"pcp": PCP}).scalar()
        written = connection.execute(text("SELECT COUNT(*) FROM record_resource")).scalar()
        audited_writes = connection.execute(text(
            "SELECT COUNT(DISTINCT resource_type || '/' || resource_id) FROM record_audit "
            "WHERE actor_kind = 'internal' AND outcome IN (200, 201)")).scalar()
    engine.dispose()
    assert audited_reads == answered
    assert written and audited_writes == written  # all the delivery wrote is on the trail
