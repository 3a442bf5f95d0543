"""What a stored resource contributes to the search index: values extracted along the paths of
`params.py`, turned into token / reference / date / string rows."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from adapter.record.params import SearchParam, params_for

_REFERENCE = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
MIN_DATE = datetime(1, 1, 1)
MAX_DATE = datetime(9999, 12, 31, 23, 59, 59, 999999)
_MAX_LEN = 255


@dataclass
class IndexRows:
    tokens: list[tuple[str, str, str]] = field(default_factory=list)  # param, system, code
    references: list[tuple[str, str, str]] = field(default_factory=list)  # param, type, id
    dates: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    strings: list[tuple[str, str, str]] = field(default_factory=list)  # param, normalized, exact


def values_at(node: Any, path: str) -> Iterator[Any]:
    """Every value at a dotted path, walking through lists."""
    head, _, rest = path.partition(".")
    if isinstance(node, list):
        for item in node:
            yield from values_at(item, path)
        return
    if not isinstance(node, dict) or head not in node:
        return
    value = node[head]
    if not rest:
        if isinstance(value, list):
            yield from value
        else:
            yield value
    else:
        yield from values_at(value, rest)


def parse_reference(reference: str) -> tuple[str, str] | None:
    """(type, id) of a literal reference to a resource of this record, else None."""
    if not isinstance(reference, str) or reference.startswith(("urn:", "#")) or "?" in reference:
        return None
    match = _REFERENCE.match(reference)
    return (match.group(1), match.group(2)) if match else None


# Names, addresses and dates repeat from letter to letter (the same doctors, hospitals, days):
# indexing a letter's bundle looked each of them up again.
@lru_cache(maxsize=65536)
def normalize_text(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower().strip()


def date_range(value: str) -> tuple[datetime, datetime] | None:
    """The inclusive [low, high] range a FHIR date/dateTime/instant covers, in naive UTC."""
    return _date_range(value) if isinstance(value, str) else None


@lru_cache(maxsize=65536)
def _date_range(value: str) -> tuple[datetime, datetime] | None:
    match = _DATE.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        if month is None:
            low = datetime(int(year), 1, 1)
            high = datetime(int(year) + 1, 1, 1) if int(year) < 9999 else MAX_DATE
        elif day is None:
            low = datetime(int(year), int(month), 1)
            high = (low + timedelta(days=32)).replace(day=1)
        elif hour is None:
            low = datetime(int(year), int(month), int(day))
            high = low + timedelta(days=1)
        else:
            micro = min(round(float(fraction) * 1_000_000), 999_999) if fraction else 0
            low = datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro
            )
            if zone and zone != "Z":
                sign = 1 if zone[0] == "+" else -1
                low -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            if second is None:
                high = low + timedelta(minutes=1)
            elif fraction is None:
                high = low + timedelta(seconds=1)
            else:
                return low, low
    except ValueError:
        return None
    if high == MAX_DATE:
        return low, high
    return low, high - timedelta(microseconds=1)


def _tokens(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, bool):
        yield "", "true" if value else "false"
    elif isinstance(value, str | int):
        yield "", str(value)
    elif isinstance(value, dict):
        if "coding" in value:  # CodeableConcept
            for coding in value.get("coding") or []:
                yield from _tokens(coding)
        elif "value" in value and isinstance(value["value"], str):  # Identifier, ContactPoint
            yield value.get("system") or "", value["value"]
        elif "code" in value:  # Coding
            yield value.get("system") or "", str(value["code"])


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):  # HumanName, Address: every textual part
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city",
                    "postalCode", "country"):
            part = value.get(key)
            for item in part if isinstance(part, list) else [part]:
                if isinstance(item, str):
                    yield item


def _dates(value: Any) -> Iterator[tuple[datetime, datetime]]:
    if isinstance(value, str):
        found = date_range(value)
        if found:
            yield found
    elif isinstance(value, dict) and ("start" in value or "end" in value):  # Period
        start = date_range(value["start"]) if value.get("start") else None
        end = date_range(value["end"]) if value.get("end") else None
        yield (start[0] if start else MIN_DATE), (end[1] if end else MAX_DATE)


def _extract(param: SearchParam, resource: dict[str, Any], rows: IndexRows) -> None:
    for path in param.paths:
        for value in values_at(resource, path):
            if param.type == "token":
                for system, code in _tokens(value):
                    rows.tokens.append((param.name, system[:_MAX_LEN], code[:_MAX_LEN]))
            elif param.type == "reference":
                reference = value.get("reference") if isinstance(value, dict) else None
                target = parse_reference(reference) if reference else None
                if target and (not param.targets or target[0] in param.targets):
                    rows.references.append((param.name, *target))
            elif param.type == "date":
                rows.dates.extend((param.name, low, high) for low, high in _dates(value))
            elif param.type == "string":
                rows.strings.extend(
                    (param.name, normalize_text(text)[:_MAX_LEN], text[:_MAX_LEN])
                    for text in _strings(value)
                )


def index_rows(resource: dict[str, Any]) -> IndexRows:
    rows = IndexRows()
    for param in params_for(resource["resourceType"]).values():
        _extract(param, resource, rows)
    rows.tokens = sorted(set(rows.tokens))
    rows.references = sorted(set(rows.references))
    rows.dates = sorted(set(rows.dates))
    rows.strings = sorted(set(rows.strings))
    return rows
