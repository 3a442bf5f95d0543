"""Deterministic JSON bytes for bundles (same bundle → same bytes)."""

from __future__ import annotations

from typing import Any

import orjson


def bundle_json(bundle: dict[str, Any], *, indent: bool = False) -> bytes:
    option = orjson.OPT_SORT_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(bundle, option=option)
