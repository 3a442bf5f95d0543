"""Faults with real processes on loopback: the target down when letters arrive, the target
killed in the middle of a burst, liaison itself SIGKILLed in the middle of a burst."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from adapter.auth import issue_token
from tests.api.conftest import HOSPITAL, bearer
from tests.push.medplum_queries import count_by_identifier
from tests.support.letter_variants import DOCUMENT_ROOT, document_id, letter_variant
from tests.support.medplum import MedplumPeer
from tests.support.servers import ServerProcess, free_port
from tests.support.waiting import wait_for

CDA = {"Content-Type": "application/hl7-cda+xml"}
DOCUMENTS = "urn:liaison:document-version"
PROCESS_ENV = {
    "LIAISON_PUSH_BACKOFF_BASE_SECONDS": "0.05",
    "LIAISON_PUSH_BACKOFF_MAX_SECONDS": "0.5",
    "LIAISON_PUSH_LEASE_SECONDS": "3",
    "LIAISON_PUSH_MAX_ATTEMPTS": "1000",
    "LIAISON_PUSH_TIMEOUT_SECONDS": "2.5",  # the lease is at least two timeouts
    "LIAISON_VALIDATION_MODE": "off",
}


def liaison_process(port: int, *extra: str, **env: str) -> ServerProcess:
    argv = [sys.executable, "-m", "adapter.cli", "serve", "--port", str(port), *extra]
    log = (
        Path(env.get("LIAISON_DATA_DIR") or os.environ["LIAISON_DATA_DIR"]).parent
        / f"liaison-{port}.log"
    )
    return ServerProcess(argv, f"http://127.0.0.1:{port}/healthz", {**PROCESS_ENV, **env}, log)


def document_key(n: int) -> str:
    return f"{DOCUMENT_ROOT}^{document_id(n)[1]}"


@contextmanager
def running(process: ServerProcess) -> Iterator[ServerProcess]:
    process.start()
    try:
        yield process
    finally:
        process.stop()


def wait_all_pushed(
    base: str, locations: list[str], headers: dict[str, str], timeout: float = 150
) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(locations)
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while waiting:
            receipt = client.get(waiting[0]).json()
            if receipt["status"] == "pushed":
                waiting.pop(0)
                continue
            assert receipt["status"] != "failed", receipt
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} letters still not pushed")
            time.sleep(0.1)


@pytest.mark.medplum
def test_letters_arriving_while_the_target_is_down_are_accepted_then_delivered(
    tmp_path: Path,
) -> None:
    hospital = bearer(issue_token("hospital", organization=HOSPITAL))
    port, target_port = free_port(), free_port()
    peer = MedplumPeer(port=target_port)
    with running(
        liaison_process(port, LIAISON_TARGET_URL=peer.base_url, LIAISON_TARGET_MAX_ENTRIES="8")
    ):
        base = f"http://127.0.0.1:{port}"
        letters = range(60, 66)
        answers = [
            httpx.post(
                f"{base}/discharge-letters", content=letter_variant(n), headers={**hospital, **CDA}
            )
            for n in letters
        ]
        assert [answer.status_code for answer in answers] == [202] * len(letters)
        receipt = httpx.get(base + answers[0].headers["Location"], headers=hospital).json()
        assert receipt["status"] in ("accepted", "retrying")
        peer.start()
        try:
            wait_all_pushed(base, [answer.headers["Location"] for answer in answers], hospital)
            for n in letters:
                assert (
                    count_by_identifier(
                        peer.base_url, "DocumentReference", DOCUMENTS, document_key(n)
                    )
                    == 1
                )
        finally:
            peer.stop()


def _count_in_record(base: str, headers: dict[str, str], n: int) -> int:
    answer = httpx.get(
        f"{base}/fhir/DocumentReference",
        params={"identifier": f"{DOCUMENTS}|{document_key(n)}"},
        headers=headers,
        timeout=30,
    )
    answer.raise_for_status()
    return len(answer.json().get("entry", []))


@pytest.mark.slow
def test_target_killed_in_the_middle_of_a_burst_ends_with_every_letter_once(tmp_path: Path) -> None:
    hospital = bearer(issue_token("hospital", organization=HOSPITAL))
    port, target_port = free_port(), free_port()
    target_env = {"LIAISON_DATA_DIR": str(tmp_path / "target"), "LIAISON_AUTH_REQUIRED": "false"}
    target = liaison_process(target_port, "--no-pusher", **target_env)
    target_fhir = f"http://127.0.0.1:{target_port}/fhir"
    letters = list(range(1000, 1200))
    with running(target), running(liaison_process(port, LIAISON_TARGET_URL=target_fhir)):
        base = f"http://127.0.0.1:{port}"
        locations: list[str] = []
        with httpx.Client(base_url=base, headers={**hospital, **CDA}, timeout=30) as client:
            for n in letters:
                answer = client.post("/discharge-letters", content=letter_variant(n))
                assert answer.status_code == 202
                locations.append(answer.headers["Location"])
                if n == letters[60]:
                    target.kill()  # in the middle of the burst: some sent, some in flight
        target.start()
        wait_all_pushed(base, locations, hospital)
        for n in letters:
            assert _count_in_record(target_fhir.removesuffix("/fhir"), {}, n) == 1, n


@pytest.mark.slow
def test_liaison_killed_in_the_middle_of_a_burst_loses_nothing_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    hospital = bearer(issue_token("hospital", organization=HOSPITAL))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    letters = list(range(2000, 2200))
    accepted: dict[int, str] = {}
    lock = threading.Lock()
    server = liaison_process(port)

    def post(n: int) -> None:
        try:
            answer = httpx.post(
                f"{base}/discharge-letters",
                content=letter_variant(n),
                headers={**hospital, **CDA},
                timeout=30,
            )
        except httpx.HTTPError:
            return  # killed before answering: the EHR will send it again
        if answer.status_code in (200, 202):
            with lock:
                accepted[n] = answer.headers["Location"]

    server.start()
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(post, n) for n in letters]
            wait_for(lambda: len(accepted) >= 80, "80 letters accepted", timeout=120)
            server.kill()
            for future in futures:
                future.result()
        accepted_before_crash = dict(accepted)
        assert 0 < len(accepted_before_crash) < len(letters)
        server.start()
        accepted.clear()
        for n in letters:  # the EHR sends everything again, answered or not
            post(n)
        assert set(accepted) == set(letters)
        for n, location in accepted_before_crash.items():
            assert accepted[n] == location  # a letter accepted before the crash kept its receipt
        wait_all_pushed(base, list(accepted.values()), hospital)
        for n in letters:
            assert _count_in_record(base, hospital, n) == 1, n
    finally:
        server.stop()
