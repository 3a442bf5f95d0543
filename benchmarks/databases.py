"""The two databases every benchmark that touches one runs on: SQLite (the default, a file in
a scratch data dir) and PostgreSQL (the production store: a server of its own, started as the
tests start theirs, `tests/support/postgres.py`, fsync off — index and query costs, not the
disk's)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

KINDS = ("sqlite", "postgresql")


@contextmanager
def databases(kind: str) -> Iterator[Callable[[str], str]]:
    """A scratch data dir and, on PostgreSQL, a server: `fresh(name)` makes an empty database
    and gives its URL (SQLite: a file of that name in the data dir)."""
    with tempfile.TemporaryDirectory(prefix=f"liaison-{kind}-") as scratch:
        if kind == "sqlite":
            yield lambda name: f"sqlite:///{Path(scratch) / f'{name}.db'}"
            return
        from tests.support.postgres import PostgresServer

        server = PostgresServer().start()
        try:
            yield server.create_database
        finally:
            server.stop()


@contextmanager
def database(kind: str) -> Iterator[str | None]:
    """liaison's settings pointed at a fresh data dir and, on PostgreSQL, a fresh database of
    a server of its own (its URL; None: SQLite in the data dir), for the time of the block."""
    from adapter.config import get_settings
    from adapter.store.db import get_engine

    names = ("LIAISON_DATA_DIR", "LIAISON_DATABASE_URL")
    saved = {name: os.environ.get(name) for name in names}
    with tempfile.TemporaryDirectory(prefix="liaison-data-") as scratch, \
            databases(kind) as fresh:
        os.environ["LIAISON_DATA_DIR"] = scratch
        if kind == "postgresql":
            os.environ["LIAISON_DATABASE_URL"] = fresh("liaison")
        else:
            os.environ.pop("LIAISON_DATABASE_URL", None)
        get_settings.cache_clear()
        get_engine.cache_clear()
        try:
            yield os.environ.get("LIAISON_DATABASE_URL")
        finally:
            get_engine.cache_clear()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            get_settings.cache_clear()
