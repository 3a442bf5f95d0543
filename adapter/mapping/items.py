"""The identity of a letter's items across its versions (mappings/versions.yaml).

An item's identifier is `urn:liaison:entry|<setId key>/<kind>/<key>`: the same setId and the
same key give the same resource, which version N+1 then updates (conditional update). The key
is the hospital's own id of the CDA entry when it gives one, else the item's business key (what
it is: a drug and its route…), else its place among the letter's items of that kind.
"""

from __future__ import annotations

from typing import Any

import orjson

from adapter.mapping.knowledge import Knowledge


def _walk(node: Any, steps: list[str]) -> list[Any]:
    if not steps:
        return [node]
    if isinstance(node, list):
        return [found for item in node for found in _walk(item, steps)]
    if isinstance(node, dict) and steps[0] in node:
        return _walk(node[steps[0]], steps[1:])
    return []


def _part(value: Any) -> str:
    """A coding as system|code (the first coded one), else the concept's text, else the JSON."""
    if isinstance(value, dict):
        coded = next((c for c in value.get("coding") or [] if c.get("code")), None)
        if coded is not None:
            return f"{coded.get('system', '')}|{coded['code']}"
        if value.get("text"):
            return str(value["text"])
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def business_key(knowledge: Knowledge, resource: dict[str, Any]) -> str | None:
    """What the item is, from the values at its type's `business_keys` paths (None: no rule,
    or nothing there)."""
    paths = (knowledge.versions.get("business_keys") or {}).get(resource.get("resourceType"))
    parts = [_part(value) for path in paths or [] for value in _walk(resource, path.split("."))]
    return "+".join(parts) or None


class ItemKeys:
    """The keys of one letter's items, each used once (a repeated one gets `#2`, `#3`…)."""

    def __init__(self, system: str, set_key: str) -> None:
        self.system = system
        self.set_key = set_key
        self._used: set[str] = set()
        self._count: dict[str, int] = {}

    def identifier(self, kind: str, own_id: str | None, business: str | None
                   ) -> dict[str, str]:
        self._count[kind] = self._count.get(kind, 0) + 1
        base = f"{self.set_key}/{kind}/{own_id or business or self._count[kind]}"
        value, repeat = base, 1
        while value in self._used:
            repeat += 1
            value = f"{base}#{repeat}"
        self._used.add(value)
        return {"system": self.system, "value": value}
