"""Shared fixtures: every test runs on its own data directory and SQLite database."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.config import get_settings
from adapter.store import db
from tests.support.postgres import PostgresServer

_database_names = itertools.count(1)


@pytest.fixture(autouse=True)
def liaison_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point LIAISON_DATA_DIR (hence the SQLite database) at a fresh temporary folder."""
    data_dir = tmp_path / "liaison-data"
    monkeypatch.setenv("LIAISON_DATA_DIR", str(data_dir))
    monkeypatch.delenv("LIAISON_DATABASE_URL", raising=False)
    monkeypatch.delenv("LIAISON_TARGET_URL", raising=False)
    # Apps built by tests convert and deliver in the test process (tests hand them settings
    # objects other processes would not see); tests/push/test_pusher_process.py and
    # tests/api/test_conversion_pool.py cover the processes `liaison serve` starts by default.
    monkeypatch.setenv("LIAISON_PUSH_PROCESS", "false")
    monkeypatch.setenv("LIAISON_CONVERT_PROCESSES", "0")
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    yield data_dir
    get_settings.cache_clear()
    db.get_engine.cache_clear()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres_server.create_database(f"liaison_test_{next(_database_names)}")
