"""Sending one transaction as several smaller ones, for servers that cap transaction size
(Medplum: 8 entries when conditional operations are present; Azure: 500).

Entries are ordered so that each one comes after the entries it references, cut into chunks,
and sent in order; the `urn:uuid` references to entries of earlier chunks are replaced by the
`Type/id` the server gave them. Atomicity across chunks is lost, which is harmless here: every
entry is a conditional create or update, so resending the whole bundle after a partial failure
changes nothing that already landed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Entry = dict[str, Any]


def _references(value: Any, found: set[str]) -> set[str]:
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference.startswith("urn:uuid:"):
            found.add(reference)
        for item in value.values():
            _references(item, found)
    elif isinstance(value, list):
        for item in value:
            _references(item, found)
    return found


def dependency_order(entries: list[Entry]) -> list[Entry]:
    """Entries sorted so that referenced entries come first (original order otherwise kept).

    Entries caught in a reference cycle keep their original order after the others.
    """
    local = {entry.get("fullUrl") for entry in entries if entry.get("fullUrl")}
    needs = [_references(entry.get("resource"), set()) & local for entry in entries]
    placed: set[str] = set()
    ordered: list[Entry] = []
    waiting = list(range(len(entries)))
    while waiting:
        ready = [i for i in waiting if needs[i] <= placed | {entries[i].get("fullUrl")}]
        if not ready:  # a cycle: give up ordering what is left
            ordered.extend(entries[i] for i in waiting)
            break
        for i in ready:
            ordered.append(entries[i])
            if entries[i].get("fullUrl"):
                placed.add(entries[i]["fullUrl"])
        waiting = [i for i in waiting if i not in ready]
    return ordered


def _rewrite(value: Any, resolved: dict[str, str]) -> Any:
    if isinstance(value, dict):
        rewritten = {key: _rewrite(item, resolved) for key, item in value.items()}
        reference = rewritten.get("reference")
        if isinstance(reference, str) and reference in resolved:
            rewritten["reference"] = resolved[reference]
        return rewritten
    if isinstance(value, list):
        return [_rewrite(item, resolved) for item in value]
    return value


def _plain_reference(location: str) -> str:
    """`Patient/123/_history/2` (or an absolute URL) → `Patient/123`."""
    parts = location.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:])


def send_in_chunks(
    bundle: dict[str, Any], max_entries: int, post: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """Send `bundle` as transactions of at most `max_entries`; one combined response bundle."""
    entries = bundle.get("entry", [])
    ordered = dependency_order(entries)
    resolved: dict[str, str] = {}
    answers: dict[int, Entry] = {}
    positions = {id(entry): index for index, entry in enumerate(entries)}
    for start in range(0, len(ordered), max_entries):
        chunk = ordered[start : start + max_entries]
        sent = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [_rewrite(copy.deepcopy(entry), resolved) for entry in chunk],
        }
        response = post(sent)
        for entry, answer in zip(chunk, response.get("entry", []), strict=False):
            answers[positions[id(entry)]] = answer
            location = (answer.get("response") or {}).get("location")
            if entry.get("fullUrl") and location:
                resolved[entry["fullUrl"]] = _plain_reference(location)
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [answers.get(index, {}) for index in range(len(entries))],
    }
