"""Fixtures shared by the coordination tests."""

from __future__ import annotations

import pytest

from adapter.config import get_settings


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pushers retry within tenths of a second (a subscriber endpoint that is not up yet)."""
    monkeypatch.setenv("LIAISON_PUSH_BACKOFF_BASE_SECONDS", "0.05")
    monkeypatch.setenv("LIAISON_PUSH_BACKOFF_MAX_SECONDS", "0.3")
    monkeypatch.setenv("LIAISON_PUSH_MAX_ATTEMPTS", "1000")
    get_settings.cache_clear()
