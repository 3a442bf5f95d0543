"""Deterministic identity: entry fullUrls are uuid5 of business identifiers, never random."""

from __future__ import annotations

import uuid

# liaison's own namespace for uuid5 derivation (fixed forever: changing it changes every id)
LIAISON_NAMESPACE = uuid.UUID("6f1d7c3e-2b0a-5c4e-9f7d-4c1a2e3b5d60")


def derived_uuid(*parts: str) -> str:
    return str(uuid.uuid5(LIAISON_NAMESPACE, "|".join(parts)))


def full_url(resource_type: str, system: str, value: str) -> str:
    return f"urn:uuid:{derived_uuid(resource_type, system, value)}"


def identifier_query(identifier: dict) -> str:
    system = identifier.get("system")
    value = identifier["value"]
    return f"identifier={system}|{value}" if system else f"identifier={value}"
