"""liaison's CapabilityStatement as a file: conformance/CapabilityStatement.json is a copy of
what the record's /fhir/metadata answers, regenerated with `liaison conformance capability`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from adapter.errors import TargetUnavailable

# Fields that change from one server start to the next, not part of what the server supports.
_VOLATILE = ("date", "id", "meta", "implementation")


def stable(statement: dict[str, Any]) -> dict[str, Any]:
    """The statement without per-instance fields, so a committed copy can be compared."""
    return {key: value for key, value in statement.items() if key not in _VOLATILE}


def fetch_capability(base: str, *, token: str | None = None) -> dict[str, Any]:
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{base.rstrip('/')}/metadata"
    try:
        response = httpx.get(url, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        raise TargetUnavailable(f"cannot read {url}: {error}") from error
    if response.status_code != 200:
        status = response.status_code
        raise TargetUnavailable(f"{url} answered {status}", status=status)
    statement = response.json()
    if statement.get("resourceType") != "CapabilityStatement":
        raise TargetUnavailable(f"{url} did not answer a CapabilityStatement")
    return statement


def embedded_capability() -> dict[str, Any]:
    """What liaison's embedded record answers at /fhir/metadata, without starting a server."""
    from adapter.record.capability import capability_statement

    return capability_statement("http://localhost/fhir")


def write_capability(statement: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(stable(statement), ensure_ascii=False, indent=2, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")
