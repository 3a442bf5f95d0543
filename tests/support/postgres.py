"""A throwaway PostgreSQL server for the tests, started from the Debian binaries on a free port.

Installed by scripts/test-deps; where it cannot run, `postgres_url()` raises Skip with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

from tests.support.servers import free_port


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


class PostgresServer:
    def __init__(self) -> None:
        bindir = _bin_dir()
        if not bindir:
            pytest.skip("PostgreSQL binaries not installed (scripts/test-deps installs them)")
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="liaison-pg-")
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a 'postgres' user")
            shutil.chown(self.root, "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_user, *argv], check=True, capture_output=True)

    def start(self, settings: str = "") -> PostgresServer:
        """Start the server; `settings`: more `-c name=value` options."""
        data = os.path.join(self.root, "data")
        self._run(f"{self.bindir}/initdb", "-D", data, "-A", "trust", "-U", "liaison", "-E", "UTF8")
        self._run(
            f"{self.bindir}/pg_ctl",
            "-D",
            data,
            "-w",
            "-l",
            os.path.join(self.root, "log"),
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections=200 {settings}",
            "start",
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import psycopg

                psycopg.connect(self.url_for("postgres").replace("+psycopg", "")).close()
                break
            except Exception:
                time.sleep(0.1)
        return self

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://liaison@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            self.url_for("postgres").replace("+psycopg", ""), autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        data = os.path.join(self.root, "data")
        subprocess.run(
            [*self._as_user, f"{self.bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
