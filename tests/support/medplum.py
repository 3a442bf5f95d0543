"""The independent FHIR server of the tests: Medplum's FHIR router and in-memory repository
(tests/peers/medplum/server.js) started as a real node process on loopback.

Skips with the reason when node or the npm packages are missing (scripts/test-deps installs them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.servers import ServerProcess, free_port

PEER_DIR = REPO / "tests" / "peers" / "medplum"


def _unavailable() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed: the Medplum peer cannot run"
    if not (PEER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        return "npm packages of tests/peers/medplum are missing (run scripts/test-deps)"
    return None


class MedplumPeer:
    """One Medplum-based server; with a journal it can be SIGKILLed and restarted without loss."""

    def __init__(self, journal: Path | None = None, port: int | None = None) -> None:
        reason = _unavailable()
        if reason:
            pytest.skip(reason)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir/R4"
        argv = ["node", str(PEER_DIR / "server.js"), "--port", str(self.port)]
        if journal is not None:
            argv += ["--journal", str(journal)]
        self.process = ServerProcess(argv, f"http://127.0.0.1:{self.port}/healthcheck")

    def start(self) -> MedplumPeer:
        self.process.start(timeout=60)
        return self

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="session")
def medplum_server() -> Iterator[MedplumPeer]:
    peer = MedplumPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def medplum_base_url(medplum_server: MedplumPeer) -> str:
    """FHIR base URL of a running Medplum peer (shared by the session: use distinct letters)."""
    return medplum_server.base_url
