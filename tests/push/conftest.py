"""Fixtures of the push tests: the Medplum peer, engines on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from adapter.store.db import engine_for, init_db
from tests.support.medplum import medplum_base_url, medplum_server  # noqa: F401


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def outbox_engine(request: pytest.FixtureRequest, liaison_env) -> Engine:  # type: ignore[no-untyped-def]
    """A fresh database holding the outbox, on SQLite and on the real PostgreSQL server."""
    if request.param == "sqlite":
        liaison_env.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{liaison_env / 'outbox.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = engine_for(url)
    init_db(engine)
    yield engine
    engine.dispose()
