"""`liaison serve` delivers from a spawned process of its own and converts in two others (the
defaults): real server process, real child processes, real signals."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapter.auth import issue_token
from tests.api.conftest import HOSPITAL, bearer
from tests.api.test_process_faults import CDA, liaison_process, wait_all_pushed
from tests.support.letter_variants import letter_variant
from tests.support.servers import ServerProcess, free_port


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _spawned(pid: int) -> dict[int, int]:
    """The server's spawned processes (pusher, conversion pool) → their niceness."""
    found = {}
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command:
                found[child] = os.getpriority(os.PRIO_PROCESS, child)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _pusher_of(pid: int, timeout: float = 30.0) -> int:
    """The pid of the server's pusher process: the spawned one that runs behind the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        behind = [child for child, nice in _spawned(pid).items()
                  if nice > os.getpriority(os.PRIO_PROCESS, pid)]
        if behind:
            return behind[0]
        time.sleep(0.1)
    raise TimeoutError("the server started no pusher process")


def _gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":  # exited, waiting to be reaped by its (dead) parent
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    port = free_port()
    # the defaults of `liaison serve`: a pusher process and two conversion processes
    process = liaison_process(port, LIAISON_PUSH_PROCESS="true", LIAISON_CONVERT_PROCESSES="2")
    process.start()
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def _post(base: str, headers: dict[str, str], n: int) -> str:
    answer = httpx.post(f"{base}/discharge-letters", content=letter_variant(n),
                        headers={**headers, **CDA}, timeout=60)
    assert answer.status_code == 202, answer.text
    return answer.headers["Location"]


def test_serve_delivers_letters_from_a_pusher_process_of_its_own(
    server: tuple[ServerProcess, str],
) -> None:
    process, base = server
    assert process.process is not None
    hospital = bearer(issue_token("hospital", organization=HOSPITAL))
    pusher = _pusher_of(process.process.pid)
    wait_all_pushed(base, [_post(base, hospital, n) for n in range(3)], hospital, timeout=60)
    ready = httpx.get(f"{base}/readyz", timeout=10).json()
    assert ready["checks"]["pusher"] == "ok"
    assert _pusher_of(process.process.pid) == pusher
    # the pusher runs behind the server (a burst of letters is answered before it is
    # delivered); the two conversion processes at the server's own priority
    priority = os.getpriority(os.PRIO_PROCESS, process.process.pid)
    spawned = _spawned(process.process.pid)
    assert sorted(nice > priority for nice in spawned.values()) == [False, False, True]


def test_a_pusher_process_that_dies_is_restarted_and_delivers_what_waited(
    server: tuple[ServerProcess, str],
) -> None:
    process, base = server
    assert process.process is not None
    hospital = bearer(issue_token("hospital", organization=HOSPITAL))
    first = _pusher_of(process.process.pid)
    os.kill(first, signal.SIGKILL)
    location = _post(base, hospital, 10)  # accepted while no pusher runs
    assert _gone(first)
    deadline = time.monotonic() + 30
    while _pusher_of(process.process.pid) == first and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pusher_of(process.process.pid) != first
    wait_all_pushed(base, [location], hospital, timeout=60)


def test_the_pusher_and_conversion_processes_end_with_their_server(
    server: tuple[ServerProcess, str],
) -> None:
    process, _ = server
    assert process.process is not None
    pusher = _pusher_of(process.process.pid)
    spawned = _spawned(process.process.pid)
    os.kill(process.process.pid, signal.SIGKILL)  # the server alone, no clean shutdown
    assert _gone(pusher)
    assert all(_gone(child) for child in spawned)  # the conversion processes too
