"""FHIR R4 validation of produced bundles with fhir.resources (R4B models).

Checks each resource against its model, and the Bundle as a transaction (unique fullUrls,
requests, in-bundle references resolvable).

Speed: building a fhir.resources model costs ~0.1–0.5 ms per resource, too much to pay again for
what was already proven valid. A resource is therefore validated through its *shape*: free-text
and identifier leaves (names, identifier values, urn:uuid references, codes, dates…) are each
checked on their own with the very FHIR primitive type the model uses (cached per value), then
replaced by a valid placeholder of the same kind and precision; the model runs once per distinct
shape. A leaf that fails its own check keeps its real value, so the model reports it as usual.
A resource met again byte for byte (shared reference data) skips even the shape walk.
"""

from __future__ import annotations

import binascii
import re
from functools import lru_cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import (
    CodeType,
    DateTimeType,
    DateType,
    InstantType,
    StringType,
    UriType,
)
from pydantic import TypeAdapter, ValidationError

_CACHE_SIZE = 20_000
_PRIMITIVES = {
    "string": TypeAdapter(StringType), "code": TypeAdapter(CodeType),
    "uri": TypeAdapter(UriType), "dateTime": TypeAdapter(DateTimeType),
    "date": TypeAdapter(DateType), "instant": TypeAdapter(InstantType),
}
# keys whose string values are FHIR `string` wherever liaison writes them
_TEXT_KEYS = frozenset({
    "family", "given", "text", "display", "description", "title", "contentString", "line",
    "city", "district", "postalCode", "country", "comment", "carrierHRF", "name", "ifNoneExist",
})
_DATE_KEYS = {"birthDate": "date", "recorded": "instant", "date": "instant",
              "timestamp": "instant"}
_DATE_TIME_KEYS = frozenset({
    "start", "end", "sent", "authoredOn", "created", "occurrenceDateTime", "recordedDate",
    "recordedOn", "creation", "occurredDateTime",
})
_IDENTIFIER_PARENTS = frozenset({"identifier", "telecom", "masterIdentifier"})
_URN_UUID = "urn:uuid:00000000-0000-0000-0000-000000000000"
_DATE_SHAPE = re.compile(
    r"^\d{4}(-\d{2})?(-\d{2})?(T\d{2}:\d{2}(:\d{2})?(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")


@lru_cache(maxsize=_CACHE_SIZE * 4)
def _primitive_ok(kind: str, value: str) -> bool:
    try:
        _PRIMITIVES[kind].validate_python(value)
    except ValidationError:
        return False
    return True


def _date_placeholder(value: str) -> str:
    match = _DATE_SHAPE.match(value)
    if not match:
        return value
    month, day, time, seconds, fraction, zone = match.groups()
    placeholder = "2000" + ("-01" if month else "") + ("-01" if day else "")
    if time:
        placeholder += "T00:00" + (":00" if seconds else "") + (
            "." + "0" * (len(fraction) - 1) if fraction else "")
    if zone:
        placeholder += "Z" if zone == "Z" else "+00:00"
    return placeholder


def _base64_ok(value: str) -> bool:
    try:
        binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return True


def _leaf(key: str, parent: str, value: str) -> str:
    """The placeholder standing for `value` in the shape, or `value` itself."""
    if key == "reference":
        return _URN_UUID if value.startswith("urn:uuid:") and _primitive_ok(
            "string", value) else value
    if key in ("fullUrl", "url", "system"):
        if value.startswith("urn:uuid:"):
            return _URN_UUID if _primitive_ok("uri", value) else value
        return "urn:x" if _primitive_ok("uri", value) else value
    if key == "value" and parent in _IDENTIFIER_PARENTS:
        return "x" if _primitive_ok("string", value) else value
    if key == "code" and parent == "coding":
        return "x" if _primitive_ok("code", value) else value
    if key in _TEXT_KEYS:
        return "x" if _primitive_ok("string", value) else value
    kind = _DATE_KEYS.get(key) or ("dateTime" if key in _DATE_TIME_KEYS else None)
    if kind:
        return _date_placeholder(value) if _primitive_ok(kind, value) else value
    if key in ("data", "hash"):
        return "AAAA" if _base64_ok(value) else value
    return value


def _shape(value: Any, key: str = "", parent: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _shape(v, k, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(item, key, parent) for item in value]
    if isinstance(value, str):
        return _leaf(key, parent, value)
    return value


@lru_cache(maxsize=_CACHE_SIZE)
def _problems_of(serialized_shape: bytes) -> tuple[str, ...]:
    resource = orjson.loads(serialized_shape)
    resource_type = resource.get("resourceType", "?")
    try:
        model = get_fhir_model_class(resource_type)
    except KeyError:
        return (f"{resource_type}: unknown resource type",)
    try:
        model.model_validate(resource)
    except ValidationError as error:
        return tuple(f"{resource_type}: {'.'.join(str(p) for p in issue['loc'])}: {issue['msg']}"
                     for issue in error.errors()[:20])
    return ()


@lru_cache(maxsize=_CACHE_SIZE)
def _problems_of_exact(serialized: bytes) -> tuple[str, ...]:
    return _problems_of(orjson.dumps(_shape(orjson.loads(serialized)),
                                     option=orjson.OPT_SORT_KEYS))


def validate_resource(resource: dict[str, Any]) -> list[str]:
    """Problems of one FHIR R4 resource (empty list = valid)."""
    # exact bytes first (the same doctor, the same hospital, letter after letter), then shape
    return list(_problems_of_exact(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)))


_REFERENCE = re.compile(rb'"reference":"(urn:uuid:[^"]*)"')


def validate_bundle(bundle: dict[str, Any]) -> list[str]:
    """Problems of a transaction bundle (empty list = valid)."""
    problems: list[str] = []
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        problems.append("Bundle: not a transaction Bundle")
    entries = bundle.get("entry") or []
    urls = [entry.get("fullUrl") for entry in entries]
    if len(set(urls)) != len(urls):
        problems.append("Bundle: duplicate fullUrl")
    known = set(urls)
    envelope = {k: v for k, v in bundle.items() if k != "entry"}
    envelope["entry"] = []
    for position, entry in enumerate(entries):
        resource = entry.get("resource")
        request = entry.get("request") or {}
        if not resource:
            problems.append(f"entry[{position}]: no resource")
            continue
        if request.get("method") not in ("POST", "PUT") or not request.get("url"):
            problems.append(f"entry[{position}]: transaction entry without a POST/PUT request")
        serialized = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
        problems.extend(f"entry[{position}] {p}" for p in _problems_of_exact(serialized))
        problems.extend(f"entry[{position}] {resource.get('resourceType')}: reference "
                        f"{r.decode()} is not in the bundle"
                        for r in _REFERENCE.findall(serialized) if r.decode() not in known)
        envelope["entry"].append({k: v for k, v in entry.items() if k != "resource"})
    problems.extend(validate_resource(envelope))
    return problems
