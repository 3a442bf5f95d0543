"""A short-lived memory of directory answers for ingestion.

The letters of one hospital name the same professionals and structures over and over; asking
the database a dozen times per letter was a third of the time to accept one. Answers (including
"unknown") are kept `ttl` seconds, so a directory import shows within that delay.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class CachedDirectory:
    """Wraps a `DirectoryLookup` (adapter.mapping.directory_port) with a time-bounded cache."""

    def __init__(self, directory: Any, ttl: float = 30.0, max_entries: int = 10_000) -> None:
        self.directory = directory
        self.ttl = ttl
        self.max_entries = max_entries
        self._answers: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, kind: str, system: str, value: str) -> Any:
        key = (kind, system, value)
        now = time.monotonic()
        with self._lock:
            found = self._answers.get(key)
        if found is not None and found[0] > now:
            return found[1]
        answer = getattr(self.directory, kind)(system, value)
        with self._lock:
            if len(self._answers) >= self.max_entries:
                self._answers.clear()
            self._answers[key] = (now + self.ttl, answer)
        return answer

    def professional(self, system: str, value: str) -> Any:
        return self._cached("professional", system, value)

    def organization(self, system: str, value: str) -> Any:
        return self._cached("organization", system, value)
