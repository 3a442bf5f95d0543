"""The collector settings of liaison's worker processes (`adapter.runtime`)."""

from __future__ import annotations

import gc
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from adapter.api.app import create_served_app
from adapter.config import get_settings
from adapter.runtime import OLDER_THRESHOLDS, YOUNG_THRESHOLD, settle_after_start
from tests.support.servers import ServerProcess, free_port


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_what_a_worker_built_at_start_is_left_out_of_collections(
    restored_collector: None,
) -> None:
    kept_for_life = [{"n": n} for n in range(1000)]
    settle_after_start()
    assert gc.get_freeze_count() >= len(kept_for_life)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)


def test_cycles_made_after_start_are_still_collected(restored_collector: None) -> None:
    settle_after_start()

    class Node:
        pass

    import weakref

    node = Node()
    node.itself = node  # type: ignore[attr-defined]  # a cycle: refcounting alone keeps it
    alive = weakref.ref(node)
    del node
    gc.collect()
    assert alive() is None


def _young_collections(metrics: str) -> float:
    found = re.search(r'^python_gc_collections_total\{generation="0"\} (\S+)$', metrics, re.M)
    assert found, "the server's /metrics tells its collections"
    return float(found.group(1))


def test_a_served_process_is_settled_once_started(tmp_path: Path) -> None:
    """`liaison serve` leaves what it built at start out of collections and collects seldom:
    requests making thousands of short-lived objects each cause few collections."""
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "adapter.cli", "serve", "--port", str(port), "--no-pusher"],
        f"http://127.0.0.1:{port}/healthz", {}, tmp_path / "server.log")  # the test's data dir
    with server, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        before = _young_collections(client.get("/metrics").text)
        for _ in range(100):
            assert client.get("/fhir/metadata").status_code == 200
        after = _young_collections(client.get("/metrics").text)
    assert after - before < 20


def test_each_worker_of_a_served_app_is_settled_once_started(
    restored_collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`liaison serve --workers N` builds each worker's app with uvicorn's factory."""
    monkeypatch.setenv("LIAISON_PUSH_IN_SERVER", "false")
    get_settings.cache_clear()
    gc.unfreeze()
    with TestClient(create_served_app()):
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
