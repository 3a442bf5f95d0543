"""Several instances started together on a fresh PostgreSQL database all come up: the schema
is created once, the others wait for it (`adapter.store.db._schema_lock`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer

CREATE_SCHEMA = "from adapter.store.db import get_engine; get_engine()"


@pytest.mark.postgres
def test_processes_starting_together_on_a_fresh_database_all_create_its_schema(
        postgres_server: PostgresServer, tmp_path: Path) -> None:
    # Without the lock, 1 to 3 of 4 processes died of "duplicate key … pg_type" in each round here.
    for round_number in range(2):
        url = postgres_server.create_database(f"liaison_schema_race_{os.getpid()}_{round_number}")
        env = {**os.environ, "LIAISON_DATABASE_URL": url,
               "LIAISON_DATA_DIR": str(tmp_path / f"round-{round_number}")}
        processes = [subprocess.Popen([sys.executable, "-c", CREATE_SCHEMA], env=env,
                                      stderr=subprocess.PIPE) for _ in range(4)]
        failures = [stderr.decode()[-400:] for process in processes
                    for _, stderr in [process.communicate(timeout=120)] if process.returncode]
        assert failures == []
