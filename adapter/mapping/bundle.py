"""Collects resources into a FHIR transaction Bundle with the request each kind needs.

Shared reference data is created if absent (POST + ifNoneExist), per-letter resources are
conditionally updated (PUT Type?identifier=) so a new version updates them, per-version
resources are created once (POST + ifNoneExist).
"""

from __future__ import annotations

from typing import Any

from adapter.mapping.identity import create_if_absent, full_url, identifier_query, token_query

SHARED = "shared"
PER_LETTER = "per-letter"
PER_VERSION = "per-version"


class BundleBuilder:
    def __init__(self, profiles: dict[str, str]) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._profiles = profiles

    def add(self, resource: dict[str, Any], identifier: dict[str, str], kind: str) -> str:
        """Add (or merge into an already added) resource keyed by `identifier`; its fullUrl."""
        resource_type = resource["resourceType"]
        url = full_url(resource_type, identifier.get("system", ""), identifier["value"])
        existing = self._entries.get(url)
        if existing is not None:
            merge_into(existing["resource"], resource)
            return url
        profile = self._profiles.get(resource_type)
        if profile and "meta" not in resource:
            resource = {"resourceType": resource_type, "meta": {"profile": [profile]},
                        **{k: v for k, v in resource.items() if k != "resourceType"}}
        if kind == PER_LETTER:
            request = {"method": "PUT", "url": f"{resource_type}?{identifier_query(identifier)}"}
        else:
            request = create_if_absent(resource_type, identifier)
        self._entries[url] = {"fullUrl": url, "resource": resource, "request": request}
        return url

    def add_provenance(self, provenance: dict[str, Any], tag_system: str, tag_code: str) -> str:
        url = full_url("Provenance", tag_system, tag_code)
        provenance = {"resourceType": "Provenance",
                      "meta": {"tag": [{"system": tag_system, "code": tag_code}]},
                      **{k: v for k, v in provenance.items() if k != "resourceType"}}
        self._entries[url] = {
            "fullUrl": url,
            "resource": provenance,
            "request": {"method": "POST", "url": "Provenance",
                        "ifNoneExist": token_query("_tag", tag_system, tag_code)},
        }
        return url

    def resource(self, url: str) -> dict[str, Any]:
        return self._entries[url]["resource"]

    def urls(self) -> list[str]:
        return list(self._entries)

    def bundle(self, identifier: dict[str, str], timestamp: str | None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"resourceType": "Bundle", "identifier": identifier,
                                  "type": "transaction"}
        if timestamp:
            bundle["timestamp"] = timestamp
        bundle["entry"] = list(self._entries.values())
        return bundle


def merge_into(target: dict[str, Any], extra: dict[str, Any]) -> None:
    """Complete `target` with what `extra` knows more (the same person met twice in a letter)."""
    for key, value in extra.items():
        if key not in target:
            target[key] = value
        elif isinstance(value, list) and isinstance(target[key], list):
            for item in value:
                if item not in target[key]:
                    target[key].append(item)
