"""Deterministic identity: entry fullUrls are uuid5 of business identifiers, never random."""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache
from urllib.parse import quote

# liaison's own namespace for uuid5 derivation (fixed forever: changing it changes every id)
LIAISON_NAMESPACE = uuid.UUID("6f1d7c3e-2b0a-5c4e-9f7d-4c1a2e3b5d60")
_NAMESPACE_BYTES = LIAISON_NAMESPACE.bytes


@lru_cache(maxsize=20_000)
def _uuid5(name: str) -> str:
    # uuid.uuid5 without building UUID objects (a few µs each, ~50 per letter); same result
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def derived_uuid(*parts: str) -> str:
    return _uuid5("|".join(parts))


def full_url(resource_type: str, system: str, value: str) -> str:
    return f"urn:uuid:{derived_uuid(resource_type, system, value)}"


def token_query(name: str, system: str | None, code: str) -> str:
    """A FHIR token search `name=system|code`, escaped (\\ | , $) and percent-encoded, so any
    identifier value a letter carries (spaces, '&', '|', '^'…) matches exactly on any server."""
    parts = [_escape_token(part) for part in ((system, code) if system else (code,))]
    return f"{name}={'|'.join(parts)}"


def identifier_query(identifier: dict) -> str:
    return token_query("identifier", identifier.get("system"), identifier["value"])


def create_if_absent(resource_type: str, identifier: dict) -> dict:
    """The transaction request of a conditional create keyed by a business identifier."""
    return {"method": "POST", "url": resource_type, "ifNoneExist": identifier_query(identifier)}


def _escape_token(part: str) -> str:
    for special in ("\\", "|", ",", "$"):
        part = part.replace(special, "\\" + special)
    return quote(part, safe=":/.-_~^")
