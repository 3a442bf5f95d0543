"""Small text helpers shared by the importers and the search."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=65_536)  # names repeat a lot across a national extract
def fold(text: str | None) -> str | None:
    """Upper case without accents or repeated spaces: how names are compared in searches."""
    if not text:
        return None
    if text.isascii():
        return _SPACES.sub(" ", text).strip().upper() or None
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _SPACES.sub(" ", bare).strip().upper() or None


def content_hash(payload: bytes | str) -> str:
    """A short stable digest of source content; equal digests mean nothing to write."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def postcode_in_territory(postcode: str, territory: str | None) -> bool:
    """Whether `postcode` is covered by a territory like '75005 75013-75015 92*'."""
    if not territory or not postcode:
        return False
    for token in territory.replace(",", " ").replace(";", " ").split():
        if token.endswith("*") and postcode.startswith(token[:-1]):
            return True
        if "-" in token:
            low, _, high = token.partition("-")
            if len(low) == len(high) == len(postcode) and low <= postcode <= high:
                return True
        elif token == postcode:
            return True
    return False
