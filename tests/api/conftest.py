"""Fixtures of the ingestion API tests: the real app (pusher in its lifespan) and tokens."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import Settings
from tests.support.medplum import medplum_base_url, medplum_server  # noqa: F401

HOSPITAL = "1750803447"  # idNat_Struct of the custodian of the example letter
OTHER_HOSPITAL = "1120456789"

FAST_PUSH = {
    "push_backoff_base_seconds": 0.05,
    "push_backoff_max_seconds": 0.5,
    "push_lease_seconds": 10.0,
    "push_max_attempts": 100,
    "validation_mode": "off",  # schematron runs cost seconds; one test turns it on
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def hospital() -> dict[str, str]:
    return bearer(issue_token("hospital", organization=HOSPITAL))


@pytest.fixture
def liaison() -> Callable[..., Any]:
    """`with liaison(**settings) as client:` the whole app, pusher running, on its own data."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[TestClient]:
        settings = Settings(**{**FAST_PUSH, **overrides})
        with TestClient(create_app(settings)) as client:
            yield client

    return start


def wait_for_status(
    client: TestClient, location: str, headers: dict[str, str], wanted: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        receipt = client.get(location, headers=headers).json()
        if receipt["status"] == wanted:
            return receipt
        if time.monotonic() > deadline:
            raise TimeoutError(f"receipt still {receipt['status']}, not {wanted}")
        time.sleep(0.05)
