""""What changed for me?": the pull community software (or `liaison pull`) runs every few
minutes, through the record's change feed (`GET /fhir/_history`, see feed.py).

Each pull starts where the last one stopped — the `resume` cursor it returned — and follows
`next` links until it has caught up: every change the caller may see comes exactly once, even
when it was committed while another pull was running. A first pull may start from an instant
(`since`) instead of a cursor.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from adapter.auth.principal import Principal
from adapter.errors import TargetUnavailable
from adapter.record.repository import Repository

PULLED_TYPES = ("Patient", "CareTeam", "CarePlan", "Communication", "DocumentReference",
                "Encounter", "ServiceRequest", "MedicationRequest", "AllergyIntolerance",
                "MedicationStatement", "Flag", "Appointment")
_PAGE = 200


def cursor_of(page: dict[str, Any], relation: str = "resume") -> str | None:
    """The `_cursor` of a feed page's link `relation` (None: no such link)."""
    for link in page.get("link", []):
        if link.get("relation") == relation:
            return parse_qs(urlsplit(link["url"]).query).get("_cursor", [None])[0]
    return None


def _collection(entries: list[dict[str, Any]], resume: str | None) -> dict[str, Any]:
    """What a whole pull returns: the changes (history entries) and the cursor to resume
    from next time (`link` relation `resume`)."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history",
                              "total": len(entries), "entry": entries}
    if resume:
        bundle["link"] = [{"relation": "resume", "url": f"_history?_cursor={resume}"}]
    return bundle


def pull(repository: Repository, principal: Principal | None, *, cursor: str | None = None,
         since: str | None = None, types: tuple[str, ...] = PULLED_TYPES) -> dict[str, Any]:
    """Every change the caller may see after `cursor` (or `since`), from the embedded record."""
    entries: list[dict[str, Any]] = []
    while True:
        page = repository.changes(principal, cursor=cursor, since=since, types=types,
                                  count=_PAGE)
        entries += page["entry"]
        cursor, since = cursor_of(page), None
        if cursor_of(page, "next") is None:
            return _collection(entries, cursor)


def pull_http(base_url: str, token: str | None, *, cursor: str | None = None,
              since: str | None = None, types: tuple[str, ...] = PULLED_TYPES
              ) -> dict[str, Any]:
    """The same pull from a liaison record over HTTP, following `next` links."""
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    params: dict[str, str] = {"_type": ",".join(types), "_count": str(_PAGE)}
    if cursor:
        params["_cursor"] = cursor
    elif since:
        params["_since"] = since
    entries: list[dict[str, Any]] = []
    url: str | None = f"{base_url.rstrip('/')}/_history"
    resume = cursor
    with httpx.Client(headers=headers, timeout=30.0) as client:
        while url:
            try:
                response = client.get(url, params=params)
            except httpx.HTTPError as error:
                raise TargetUnavailable(f"{base_url} did not answer ({error})") from error
            if response.status_code != 200:
                raise TargetUnavailable(f"the change feed answered {response.status_code}",
                                        status=response.status_code)
            page = response.json()
            entries += page.get("entry", [])
            resume = cursor_of(page) or resume
            url = next((link["url"] for link in page.get("link", [])
                        if link["relation"] == "next"), None)
            params = {}
    return _collection(entries, resume)
