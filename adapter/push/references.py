"""Conditional references (`Patient?identifier=…`) resolved by liaison before a bundle goes out.

A write that follows a letter's bundle (a Communication's new status) cannot name what the
letter wrote by the letter's `urn:uuid`s, nor by ids only the target knows when it is queued.
It names them by the conditions the letter's bundle used; just before sending, each is looked up
on the target and replaced by `Type/id`. FHIR lets servers resolve such references themselves,
but not all do (a server may keep the query as the reference): resolving here works on any
server that searches. None or several matches: the bundle is refused, as FHIR asks."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from adapter.errors import TargetRejected

_CONDITIONAL = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")


def resolve_references(bundle: dict[str, Any], find_ids: Callable[[str, str], list[str]]
                       ) -> dict[str, Any]:
    """A copy of `bundle` whose conditional references name the one resource each matches."""
    found: dict[str, str] = {}

    def resolved(node: Any) -> Any:
        if isinstance(node, list):
            return [resolved(item) for item in node]
        if not isinstance(node, dict):
            return node
        copy = {key: resolved(value) for key, value in node.items()}
        reference = node.get("reference")
        match = _CONDITIONAL.match(reference) if isinstance(reference, str) else None
        if match and isinstance(reference, str):
            if reference not in found:
                ids = find_ids(match.group(1), match.group(2))
                if len(ids) != 1:
                    raise TargetRejected(f"conditional reference {match.group(1)}?… matches "
                                         f"{'no' if not ids else 'several'} resources")
                found[reference] = f"{match.group(1)}/{ids[0]}"
            copy["reference"] = found[reference]
        return copy

    return {**bundle, "entry": [{**entry, "resource": resolved(entry["resource"])}
                                if "resource" in entry else entry
                                for entry in bundle.get("entry") or []]}
