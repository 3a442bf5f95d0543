"""Reading back what landed in a FHIR server (count by identifier)."""

from __future__ import annotations

from typing import Any

import httpx


def search(base_url: str, resource_type: str, **params: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{base_url}/{resource_type}", params={**params, "_count": "1000"}, timeout=30
    )
    answer.raise_for_status()
    return [entry["resource"] for entry in answer.json().get("entry", [])]


def count_by_identifier(base_url: str, resource_type: str, system: str, value: str) -> int:
    return len(search(base_url, resource_type, identifier=f"{system}|{value}"))
