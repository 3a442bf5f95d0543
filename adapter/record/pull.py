""""What changed for me since T?": the pull helper community software (or `liaison pull`) uses.

The same question as FHIR searches `Type?_lastUpdated=gtT` for each type of interest, paged to
the end, filtered by the caller's access. The answer is a collection Bundle whose `timestamp`
was taken before the first search: passing it as the next `--since` never misses a change
(a resource changed during the pull comes again next time).
"""

from __future__ import annotations

from typing import Any

import httpx

from adapter.auth.principal import Principal
from adapter.errors import BadRequest, TargetUnavailable
from adapter.record.indexing import date_range
from adapter.record.repository import Repository
from adapter.record.storage import instant, utcnow

PULLED_TYPES = ("Patient", "CareTeam", "CarePlan", "Communication", "DocumentReference",
                "Encounter", "ServiceRequest", "MedicationRequest")
_PAGE = 200


def _check_since(since: str) -> None:
    if date_range(since) is None:
        raise BadRequest(f"--since {since!r} is not a FHIR date or instant")


def _collection(timestamp: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "timestamp": timestamp,
            "total": len(resources),
            "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r}
                      for r in resources]}


def changes_since(repository: Repository, principal: Principal | None, since: str,
                  types: tuple[str, ...] = PULLED_TYPES) -> dict[str, Any]:
    """Everything of `types` the caller may read that changed after `since` (embedded record)."""
    _check_since(since)
    timestamp = instant(utcnow())
    found: list[dict[str, Any]] = []
    for resource_type in types:
        params = [("_lastUpdated", f"gt{since}"), ("_count", str(_PAGE)), ("_total", "none")]
        while True:
            page = repository.search(resource_type, params, principal)
            found += [e["resource"] for e in page.get("entry", [])]
            cursor = next((link["url"] for link in page.get("link", [])
                           if link["relation"] == "next"), None)
            if cursor is None:
                break
            params = [p for p in params if p[0] != "_cursor"]
            params.append(("_cursor", cursor.rpartition("_cursor=")[2]))
    return _collection(timestamp, found)


def changes_since_http(base_url: str, token: str | None, since: str,
                       types: tuple[str, ...] = PULLED_TYPES) -> dict[str, Any]:
    """The same question asked of any FHIR server over HTTP, following `next` links."""
    _check_since(since)
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timestamp = instant(utcnow())
    found: list[dict[str, Any]] = []
    with httpx.Client(headers=headers, timeout=30.0) as client:
        for resource_type in types:
            url: str | None = f"{base_url.rstrip('/')}/{resource_type}"
            params: dict[str, str] | None = {"_lastUpdated": f"gt{since}", "_count": str(_PAGE)}
            while url:
                try:
                    response = client.get(url, params=params)
                except httpx.HTTPError as error:
                    raise TargetUnavailable(f"{base_url} did not answer ({error})") from error
                if response.status_code != 200:
                    raise TargetUnavailable(
                        f"{resource_type} search answered {response.status_code}",
                        status=response.status_code)
                page = response.json()
                found += [e["resource"] for e in page.get("entry", [])
                          if e.get("search", {}).get("mode", "match") == "match"]
                url = next((link["url"] for link in page.get("link", [])
                            if link["relation"] == "next"), None)
                params = None
    return _collection(timestamp, found)
