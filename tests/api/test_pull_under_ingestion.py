"""A médecin traitant's software pulls its changes while 300 letters arrive, and liaison is
restarted half way: every discharge it may see reaches it, exactly once (SQLite, PostgreSQL).

`liaison serve` runs as a real process (conversion and pusher processes, grouped record
transactions); hospitals post from several threads; the puller follows the change feed with
the cursor it was given, as community software would, across the restart."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.auth import issue_token
from tests.support.letter_variants import letter_variant
from tests.support.servers import ServerProcess, free_port

HOSPITAL = "1750803447"
PCP = "801984758437"  # the médecin traitant of every variant of the official example
LETTERS = 300
CDA = {"Content-Type": "application/hl7-cda+xml"}
ENV = {"LIAISON_PUSH_BACKOFF_BASE_SECONDS": "0.05", "LIAISON_PUSH_BACKOFF_MAX_SECONDS": "0.5",
       "LIAISON_PUSH_LEASE_SECONDS": "3", "LIAISON_PUSH_TIMEOUT_SECONDS": "1.5",
       "LIAISON_PUSH_MAX_ATTEMPTS": "1000", "LIAISON_VALIDATION_MODE": "off"}


class Puller(threading.Thread):
    """Pulls CarePlan changes in a loop, keeping its cursor as community software would."""

    def __init__(self, base: str, token: str) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base, timeout=10,
                                   headers={"Authorization": f"Bearer {token}"})
        self.cursor: str | None = None
        self.entries: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.failures: list[str] = []

    def pull_once(self) -> bool:
        """Follow the feed until caught up; False when the server did not answer."""
        params = {"_type": "CarePlan", "_count": "37"}
        while True:
            try:
                answer = self.client.get("/fhir/_history",
                                         params={**params, **({"_cursor": self.cursor}
                                                              if self.cursor else {})})
            except httpx.HTTPError:
                return False  # restarting: the cursor is kept, the next pull resumes
            if answer.status_code != 200:
                self.failures.append(f"{answer.status_code}: {answer.text[:200]}")
                return False
            page = answer.json()
            self.entries += page["entry"]
            links = {link["relation"]: link["url"] for link in page["link"]}
            self.cursor = links["resume"].rpartition("_cursor=")[2]
            if "next" not in links:
                return True

    def run(self) -> None:
        while not self.stopping.is_set():
            self.pull_once()
            self.stopping.wait(0.02)


def serve(port: int, data_dir: Path, database_url: str | None) -> ServerProcess:
    env = {**ENV, "LIAISON_DATA_DIR": str(data_dir)}
    if database_url:
        env["LIAISON_DATABASE_URL"] = database_url
    argv = [sys.executable, "-m", "adapter.cli", "serve", "--port", str(port)]
    return ServerProcess(argv, f"http://127.0.0.1:{port}/healthz", env,
                         data_dir.parent / f"serve-{port}.log")


def post_all(base: str, numbers: range) -> list[str]:
    headers = {"Authorization": f"Bearer {issue_token('hospital', organization=HOSPITAL)}",
               **CDA}

    def post(n: int) -> str:
        with httpx.Client(base_url=base, timeout=60) as client:
            answer = client.post("/discharge-letters", content=letter_variant(n),
                                 headers=headers)
            assert answer.status_code == 202, answer.text
            return str(answer.headers["Location"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, numbers))


def wait_pushed(base: str, locations: list[str], timeout: float = 240) -> None:
    headers = {"Authorization": f"Bearer {issue_token('hospital', organization=HOSPITAL)}"}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for location in locations:
            while (status := client.get(location).json()["status"]) != "pushed":
                assert status != "failed" and time.monotonic() < deadline, status
                time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres",
                                                             marks=pytest.mark.postgres)])
def test_every_discharge_reaches_the_puller_once_across_a_restart(
        database: str, request: pytest.FixtureRequest) -> None:
    database_url = request.getfixturevalue("postgres_url") if database == "postgres" else None
    data_dir = Path(os.environ["LIAISON_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    puller = Puller(base, issue_token("professional", idnat=PCP))
    server = serve(port, data_dir, database_url).start()
    try:
        puller.start()
        first = post_all(base, range(2000, 2000 + LETTERS // 2))
        server.stop()  # a restart while letters are on their way to the record
        server = serve(port, data_dir, database_url).start()
        second = post_all(base, range(2000 + LETTERS // 2, 2000 + LETTERS))
        wait_pushed(base, first + second)
        puller.stopping.set()
        puller.join(timeout=30)
        assert puller.pull_once()  # caught up after the last delivery
    finally:
        puller.stopping.set()
        server.stop()
    assert puller.failures == []
    plans = Counter(entry["resource"]["id"] for entry in puller.entries)
    assert len(plans) == LETTERS  # every discharge…
    assert set(plans.values()) == {1}  # …once
