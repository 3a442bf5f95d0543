"""Waiting in a test for what another thread or process does, by looking again until it is
there: never by sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], what: str = "the condition",
             timeout: float = 60.0) -> Any:
    """What `condition` returns once it returns something true; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.01)
    return found
