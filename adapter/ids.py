"""Identifiers liaison assigns to what it stores.

Time-ordered (RFC 9562 UUID version 7: 48 bits of Unix milliseconds, then 74 random bits), not
random (version 4): every id is a key in several B-trees (the resource row, its history, each
reference to it in the search index). Random keys land on a random leaf page each: at ~1,500
delivered letters, a record transaction dirtied a different page for almost every resource and
reference it wrote, and delivery slowed from 5.6 to 8.3–8.9 ms a letter as the file grew; with
these ids it takes 5.9 ms there (`benchmarks/delivery.py`). Ids made one after the other share
their leaf pages.
"""

from __future__ import annotations

import secrets
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62  # RFC 9562 variant bits `10`
_RANDOM_A = (1 << 12) - 1  # 12 random bits after the version nibble
_RANDOM_B = (1 << 62) - 1  # 62 random bits after the variant


def time_ordered_uuid() -> uuid.UUID:
    random_bits = secrets.randbits(74)
    return uuid.UUID(int=(time.time_ns() // 1_000_000) << 80 | _VERSION
                     | (random_bits >> 62 & _RANDOM_A) << 64 | _VARIANT
                     | random_bits & _RANDOM_B)


def new_id() -> str:
    """A resource id: a time-ordered UUID in its usual text form (a valid FHIR id)."""
    return str(time_ordered_uuid())
