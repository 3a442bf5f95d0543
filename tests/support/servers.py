"""Run real HTTP servers on loopback for tests: an ASGI app in a uvicorn thread, or a process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.HTTPError as error:
            last = error
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


@contextlib.contextmanager
def serve_app(app, port: int | None = None, probe_path: str = "/") -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Serve an ASGI app with uvicorn in a thread; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise TimeoutError("uvicorn did not start")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class ServerProcess:
    """A server started as a separate process (can be killed for real: SIGKILL, restart).

    Its stderr goes to `log` (appended across restarts), never to an unread pipe that would
    fill up and block the server in the middle of a long test."""

    def __init__(
        self,
        argv: Sequence[str],
        probe_url: str | None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ):
        self.argv = list(argv)
        self.probe_url = probe_url
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        return self.launch().wait_until_up(timeout)

    def launch(self) -> ServerProcess:
        """Start the process without waiting for it to answer (several started together)."""
        with self.log.open("ab") if self.log else open(os.devnull, "wb") as stderr:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        return self

    def wait_until_up(self, timeout: float = 60.0) -> ServerProcess:
        """Wait for `probe_url` to answer (None: a process without one, e.g. `liaison
        worker`, is up once started)."""
        if self.probe_url is None:
            return self
        try:
            wait_until_up(self.probe_url, timeout)
        except TimeoutError:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean shutdown, as in a crash."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
