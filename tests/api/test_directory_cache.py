"""Ingestion's memory of directory answers: repeated look-ups within the delay hit the cache."""

from __future__ import annotations

from typing import Any

from adapter.ingest.directory_cache import CachedDirectory


class CountingDirectory:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def professional(self, system: str, value: str) -> Any:
        self.calls.append(("professional", system, value))
        return {"idnat": value} if value != "unknown" else None

    def organization(self, system: str, value: str) -> Any:
        self.calls.append(("organization", system, value))
        return {"org": value}


def test_answers_and_unknowns_are_remembered_for_the_delay_only() -> None:
    directory = CountingDirectory()
    cached = CachedDirectory(directory, ttl=60)
    for _ in range(3):
        assert cached.professional("rpps", "801234567897") == {"idnat": "801234567897"}
        assert cached.professional("rpps", "unknown") is None
        assert cached.organization("finess", "750712184") == {"org": "750712184"}
    assert len(directory.calls) == 3
    expired = CachedDirectory(directory, ttl=0)
    expired.organization("finess", "750712184")
    expired.organization("finess", "750712184")
    assert len(directory.calls) == 5
