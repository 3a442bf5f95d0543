"""Reading and extending the mapping's transaction Bundle (plain FHIR JSON dicts).

The bundle follows the contract of `adapter.mapping`: `urn:uuid` fullUrls derived from business
identifiers, shared reference data as conditional creates, per-letter resources as conditional
creates/updates. Entries added here follow the same rules so the record treats them alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adapter.national_ids import national_system

IDNAT_PS = national_system("professional")
class BundleView:
    """Index over a transaction bundle's entries, with the few operations enrichment needs."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle
        bundle.setdefault("entry", [])

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self.bundle["entry"]

    def resources(self, resource_type: str | None = None) -> Iterator[dict[str, Any]]:
        for entry in self.entries:
            resource = entry.get("resource") or {}
            if resource_type is None or resource.get("resourceType") == resource_type:
                yield resource

    def first(self, resource_type: str) -> dict[str, Any] | None:
        return next(self.resources(resource_type), None)

    def entry_of(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """The bundle entry holding `resource` (this very object)."""
        return next((entry for entry in self.entries if entry.get("resource") is resource), None)

    def full_url_of(self, resource: dict[str, Any]) -> str | None:
        entry = self.entry_of(resource)
        return entry.get("fullUrl") if entry is not None else None

    def by_reference(self, reference: str | None) -> dict[str, Any] | None:
        if not reference:
            return None
        for entry in self.entries:
            if entry.get("fullUrl") == reference:
                return entry.get("resource")
        return None

    def find_by_identifier(self, resource_type: str, system: str, value: str) -> str | None:
        """fullUrl of the `resource_type` entry holding identifier (system, value)."""
        for entry in self.entries:
            resource = entry.get("resource") or {}
            if resource.get("resourceType") != resource_type:
                continue
            for identifier in resource.get("identifier") or []:
                if identifier.get("system") == system and identifier.get("value") == value:
                    return entry.get("fullUrl")
        return None

    def add(self, resource: dict[str, Any], full_url: str, request: dict[str, str]) -> str:
        """Append an entry unless one with the same fullUrl is there; returns the fullUrl."""
        if self.by_reference(full_url) is None:
            self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        return full_url

    def remove(self, resource: dict[str, Any]) -> None:
        self.bundle["entry"] = [e for e in self.entries if e.get("resource") is not resource]

    def idnats_of(self, reference: str | None) -> set[str]:
        """idNat_PS values behind a Practitioner / PractitionerRole reference of the bundle."""
        resource = self.by_reference(reference)
        if resource is None:
            return set()
        if resource.get("resourceType") == "PractitionerRole":
            found = set(_idnats(resource))
            practitioner = (resource.get("practitioner") or {}).get("reference")
            return found | self.idnats_of(practitioner)
        return set(_idnats(resource))


def _idnats(resource: dict[str, Any]) -> Iterator[str]:
    for identifier in resource.get("identifier") or []:
        if identifier.get("system") == IDNAT_PS and identifier.get("value"):
            yield identifier["value"]

