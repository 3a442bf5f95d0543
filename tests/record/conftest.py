"""The record under test: served by uvicorn on loopback over SQLite or a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from adapter.api.record_app import create_record_app
from adapter.auth import issue_token
from tests.support.servers import serve_app


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None = the test's own SQLite file; else a fresh PostgreSQL database."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return None


@pytest.fixture
def record_app(database_url: str | None):  # type: ignore[no-untyped-def]
    return create_record_app(database_url)


@pytest.fixture
def base_url(record_app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with serve_app(record_app) as root:
        yield f"{root}/fhir"


def client_for(base_url: str, token: str | None) -> httpx.Client:
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=base_url, headers=headers, timeout=30.0)


@pytest.fixture
def hospital(base_url: str) -> Iterator[httpx.Client]:
    """The hospital that sent the letters of `tests/record/bundles.py` (it reads, never writes)."""
    with client_for(base_url, issue_token("hospital", organization="1750000001")) as client:
        yield client


@pytest.fixture
def writer(base_url: str) -> Iterator[httpx.Client]:
    """liaison delivering letters to this record over HTTP (a system token, as a pusher
    configured with `LIAISON_TARGET_URL` and system credentials would)."""
    with client_for(base_url, issue_token("system")) as client:
        yield client


@pytest.fixture
def system(base_url: str) -> Iterator[httpx.Client]:
    with client_for(base_url, issue_token("system")) as client:
        yield client


@pytest.fixture
def anonymous(base_url: str) -> Iterator[httpx.Client]:
    with client_for(base_url, None) as client:
        yield client


@pytest.fixture
def professional(base_url: str):  # type: ignore[no-untyped-def]
    """professional(idnat) → an httpx client carrying that professional's token."""
    clients: list[httpx.Client] = []

    def make(idnat: str) -> httpx.Client:
        clients.append(client_for(base_url, issue_token("professional", idnat=idnat)))
        return clients[-1]

    yield make
    for client in clients:
        client.close()
