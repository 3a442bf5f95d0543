"""The care teams of a patient in any FHIR R4 server, read over REST.

When letters go to another shared record (LIAISON_TARGET_URL), the earlier stays' care teams are
there: a search by identifier finds the patient, one search of its CareTeams with
`_include=CareTeam:participant` (and `_include:iterate=PractitionerRole:practitioner`) brings
their members; from a server that ignores either, the members missing are read by `_id`.
Reads happen while a hospital waits for its 202, so they are short: a record that does not
answer in `timeout` seconds is not asked again for `pause` seconds, and the letter is accepted
without the merge (the receipt says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from adapter.coordination.record_port import Members, in_patient_order, member_key
from adapter.errors import TargetUnavailable

_COUNT = 100  # entries a page
_MAX_PAGES = 10  # a patient with more care teams than that is not one liaison merges
FHIR_JSON = "application/fhir+json"


def _escaped(value: str) -> str:
    """A token value in a search parameter: `,` `|` `$` `\\` escaped (FHIR search)."""
    for special in ("\\", ",", "|", "$"):
        value = value.replace(special, "\\" + special)
    return value


class RestCareTeams:
    def __init__(
        self,
        base_url: str,
        *,
        headers: Callable[[], dict[str, str]] | None = None,
        timeout: float = 5.0,
        pause: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = headers or dict
        self._pause = pause
        self._clock = clock
        self._down_until = 0.0
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def patient_ids(self, identifiers: Iterable[tuple[str, str]]) -> list[str]:
        wanted = [f"{system}|{_escaped(value)}" for system, value in identifiers
                  if system and value]
        if not wanted:
            return []
        found = self._search("Patient", [("identifier", ",".join(wanted))])
        return sorted({r["id"] for r in found if r.get("resourceType") == "Patient"})

    def care_teams(self, patient_ids: list[str]) -> tuple[list[dict[str, Any]], Members]:
        if not patient_ids:
            return [], {}
        found = self._search("CareTeam", [
            ("subject", ",".join(f"Patient/{patient_id}" for patient_id in patient_ids)),
            ("_include", "CareTeam:participant"),
            ("_include:iterate", "PractitionerRole:practitioner"),
        ])
        teams = [r for r in found if r.get("resourceType") == "CareTeam"]
        members: Members = {}
        self._add_members(members, found)
        referenced = {member_key((p.get("member") or {}).get("reference"))
                      for team in teams for p in team.get("participant") or []}
        self._fetch_missing(members, referenced)  # a server that ignores `_include`
        roles = [r for r in members.values()
                 if r is not None and r["resourceType"] == "PractitionerRole"]
        self._fetch_missing(members, {member_key((role.get("practitioner") or {}).get("reference"))
                                      for role in roles})  # ... or its `:iterate`
        return in_patient_order(teams, patient_ids), members

    @staticmethod
    def _add_members(members: Members, resources: list[dict[str, Any]]) -> None:
        for resource in resources:
            if resource.get("resourceType") in ("Practitioner", "PractitionerRole"):
                members[f"{resource['resourceType']}/{resource['id']}"] = resource

    def _fetch_missing(self, members: Members, keys: set[str | None]) -> None:
        """Read by `_id` the members not in hand; those the record lacks are None."""
        missing = sorted(key for key in keys if key is not None and key not in members)
        for kind in ("Practitioner", "PractitionerRole"):
            ids = [key.split("/", 1)[1] for key in missing if key.startswith(kind + "/")]
            if ids:
                self._add_members(members, self._search(kind, [("_id", ",".join(ids))]))
        for key in missing:
            members.setdefault(key, None)  # not in the record (deleted, or never there)

    def _search(self, resource_type: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Every resource of every page of a search (matches and includes)."""
        if self._clock() < self._down_until:
            raise TargetUnavailable(f"{self.base_url} did not answer a moment ago")
        url: str | None = f"{self.base_url}/{resource_type}"
        query: list[tuple[str, str]] | None = [*params, ("_count", str(_COUNT))]
        resources: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            bundle = self._get(url, query)
            resources += [e["resource"] for e in bundle.get("entry") or [] if e.get("resource")]
            url = next((link.get("url") for link in bundle.get("link") or []
                        if link.get("relation") == "next"), None)
            if url is not None and not url.startswith(self.base_url + "/"):
                # our token goes with each request: never to a server the record names
                raise TargetUnavailable(f"{self.base_url} gave a next page elsewhere")
            query = None  # a next link carries its own query
        return resources

    def _get(self, url: str, params: list[tuple[str, str]] | None) -> dict[str, Any]:
        try:
            answer = self._client.get(url, params=tuple(params) if params is not None else None,
                                      headers={"Accept": FHIR_JSON, **self._headers()})
            answer.raise_for_status()
            bundle = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            self._down_until = self._clock() + self._pause
            raise TargetUnavailable(
                f"{self.base_url} could not be searched ({type(error).__name__})") from error
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise TargetUnavailable(f"{self.base_url} answered a search without a Bundle")
        return bundle

    def close(self) -> None:
        self._client.close()
