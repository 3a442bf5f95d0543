"""FHIR R4 validation of produced bundles with fhir.resources (R4B models).

Checks each resource against its model, and the Bundle as a transaction (unique fullUrls,
requests, in-bundle references resolvable).

Speed: building a fhir.resources model costs ~0.1–0.5 ms per resource, too much to pay again for
what was already proven valid. A resource is therefore validated through its *shape*: free-text
and identifier leaves (names, identifier values, urn:uuid references, codes, dates…) are each
checked on their own with the very FHIR primitive type the model uses (cached per value), then
replaced by a valid placeholder of the same kind and precision; the model runs once per distinct
shape. A leaf that fails its own check keeps its real value, so the model reports it as usual.
A resource met again byte for byte (shared reference data) skips even the shape walk; that cache
is keyed by a SHA-256 of the bytes, so a stream of letters does not keep copies of them. The
letter's own base64 copy in DocumentReference is checked once and set aside before the rest is
serialized, hashed and walked.

tests/mapping/test_validation_coverage.py spoils every value of a cached bundle in turn: whatever
fhir.resources rejects, validate_bundle must report.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
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

_PRIMITIVES: dict[str, TypeAdapter[Any]] = {
    "string": TypeAdapter(StringType), "code": TypeAdapter(CodeType),
    "uri": TypeAdapter(UriType), "dateTime": TypeAdapter(DateTimeType),
    "date": TypeAdapter(DateType), "instant": TypeAdapter(InstantType),
}
_URN_UUID = "urn:uuid:00000000-0000-0000-0000-000000000000"
_DATE_SHAPE = re.compile(
    r"^\d{4}(-\d{2})?(-\d{2})?(T\d{2}:\d{2}(:\d{2})?(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class BoundedCache:
    """A dict that forgets its oldest entries past `size`, counting hits and misses (tests)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._values: dict[Any, Any] = {}
        self._lock = threading.Lock()  # the API converts letters from several threads

    def get(self, key: Any) -> Any:
        value = self._values.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            while len(self._values) >= self.size:
                del self._values[next(iter(self._values))]
            self._values[key] = value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.hits = self.misses = 0


# problems per shape (model runs), and per resource digest (exact repeats)
SHAPES = BoundedCache(20_000)
RESOURCES = BoundedCache(100_000)


def clear_caches() -> None:
    SHAPES.clear()
    RESOURCES.clear()
    for cache in _PLACEHOLDERS.values():
        cache.clear()


# --- leaves -----------------------------------------------------------------------------------

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
    """Strict base64 (RFC 4648 alphabet, no whitespace, padding only at the end)."""
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        return False
    body = raw.rstrip(b"=")
    return len(raw) % 4 == 0 and len(raw) - len(body) <= 2 and not body.translate(
        None, _BASE64_ALPHABET)


# liaison's own fullUrls and references (~50 new ones a letter): lowercase urn:uuid, no
# whitespace, non-empty — a valid FHIR string and uri by construction, no need to ask pydantic
_OWN_URN_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _reference(value: str) -> str:
    if _OWN_URN_UUID.fullmatch(value):
        return _URN_UUID
    return _URN_UUID if value.startswith("urn:uuid:") and _primitive_ok("string", value) else value


def _uri(value: str) -> str:
    if _OWN_URN_UUID.fullmatch(value):
        return _URN_UUID
    if not _primitive_ok("uri", value):
        return value
    return _URN_UUID if value.startswith("urn:uuid:") else "urn:x"


def _string(value: str) -> str:
    return "x" if _primitive_ok("string", value) else value


def _code(value: str) -> str:
    return "x" if _primitive_ok("code", value) else value


def _dated(kind: str) -> Callable[[str], str]:
    def placeholder(value: str) -> str:
        return _date_placeholder(value) if _primitive_ok(kind, value) else value
    return placeholder


def _base64(value: str) -> str:
    return "AAAA" if _base64_ok(value) else value


# rule name → placeholder of a leaf value; results are cached per rule (values repeat a lot)
_RULES: dict[str, Callable[[str], str]] = {
    "reference": _reference, "uri": _uri, "string": _string, "code": _code,
    "date": _dated("date"), "dateTime": _dated("dateTime"), "instant": _dated("instant"),
}
_PLACEHOLDERS: dict[str, dict[str, str]] = {rule: {} for rule in _RULES}
_PLACEHOLDER_CACHE_SIZE = 20_000
_CACHED_VALUE_LENGTH = 200
# keys whose string values have one FHIR type wherever liaison writes them
_RULE_OF_KEY: dict[str, str] = {
    "reference": "reference", "fullUrl": "uri", "url": "uri",
    "birthDate": "date", "recorded": "instant", "date": "instant", "timestamp": "instant",
    **dict.fromkeys((
        "family", "given", "text", "display", "description", "title", "contentString", "line",
        "city", "district", "postalCode", "country", "comment", "carrierHRF", "name",
        "ifNoneExist", "valueString"), "string"),
    **dict.fromkeys((
        "start", "end", "sent", "authoredOn", "created", "occurrenceDateTime", "recordedDate",
        "recordedOn", "creation", "occurredDateTime"), "dateTime"),
}
# keys whose type depends on the element holding them: Identifier/ContactPoint.value (string),
# Coding.code (code) — Meta.tag, Meta.security and valueCoding are Codings too — and system,
# a uri everywhere but in ContactPoint (telecom), where it is a code ("" is a uri, not a code)
_RULE_OF_VALUE_IN = dict.fromkeys(
    ("identifier", "telecom", "masterIdentifier", "valueIdentifier"), "string")
_RULE_OF_CODE_IN = dict.fromkeys(("coding", "tag", "security", "valueCoding"), "code")
_RULE_OF_SYSTEM_IN = {"telecom": "code"}


_CONTEXTUAL_KEYS = frozenset({"value", "code", "system", "data", "hash"})


def _placeholder(rule: str, value: str) -> str:
    cache = _PLACEHOLDERS[rule]
    placeholder = cache.get(value)
    if placeholder is None:
        placeholder = _RULES[rule](value)
        if len(value) <= _CACHED_VALUE_LENGTH:  # long texts are one letter's own: not kept
            if len(cache) >= _PLACEHOLDER_CACHE_SIZE:
                cache.clear()
            cache[value] = placeholder
    return placeholder


def _leaf(key: str, parent: str, value: str) -> str:
    """The placeholder standing for `value` in the shape, or `value` itself."""
    rule = _RULE_OF_KEY.get(key)
    if rule is None:
        if key == "value":
            rule = _RULE_OF_VALUE_IN.get(parent)
        elif key == "code":
            rule = _RULE_OF_CODE_IN.get(parent)
        elif key == "system":
            rule = _RULE_OF_SYSTEM_IN.get(parent, "uri")
        elif key == "data" or key == "hash":
            return _base64(value)  # large and unique: not worth caching
        if rule is None:
            return value
    return _placeholder(rule, value)


def _shape_list(items: list[Any], key: str, parent: str) -> list[Any]:
    shaped = []
    for item in items:
        kind = type(item)
        if kind is dict:
            item = _shape(item, key)
        elif kind is str:
            item = _leaf(key, parent, item)
        elif kind is list:
            item = _shape_list(item, key, parent)
        shaped.append(item)
    return shaped


def _shape(node: dict[str, Any], parent: str = "") -> dict[str, Any]:
    """`node` with its checked leaves replaced by placeholders (children know their parent)."""
    # the hot loop of validation (~600 leaves a letter): the common cases are inlined
    shaped = {}
    for key, value in node.items():
        kind = type(value)
        if kind is str:
            rule = _RULE_OF_KEY.get(key)
            if rule is not None:
                placeholder = _PLACEHOLDERS[rule].get(value)
                value = placeholder if placeholder is not None else _placeholder(rule, value)
            elif key in _CONTEXTUAL_KEYS:
                value = _leaf(key, parent, value)
        elif kind is dict:
            value = _shape(value, key)
        elif kind is list:
            value = _shape_list(value, key, parent)
        shaped[key] = value
    return shaped


# --- resources --------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def _model_problems(resource: dict[str, Any]) -> tuple[str, ...]:
    resource_type = resource.get("resourceType", "?")
    try:
        model = _model(resource_type)
    except (KeyError, TypeError):
        return (f"{resource_type}: unknown resource type",)
    try:
        model.model_validate(resource)
    except ValidationError as error:
        return tuple(f"{resource_type}: {'.'.join(str(p) for p in issue['loc'])}: {issue['msg']}"
                     for issue in error.errors()[:20])
    return ()


def _problems_of_shape(resource: dict[str, Any]) -> tuple[str, ...]:
    key = orjson.dumps(_shape(resource), option=orjson.OPT_SORT_KEYS)
    problems = SHAPES.get(key)
    if problems is None:
        # the model reads a fresh copy of the shape, never the caller's resource
        problems = _model_problems(orjson.loads(key))
        SHAPES.put(key, problems)
    return problems


def _problems_of(resource: dict[str, Any], serialized: bytes) -> tuple[str, ...]:
    """Problems of `resource`, whose sorted-key JSON is `serialized`."""
    # SHA-256 (hardware-accelerated here) is the fastest hashlib digest of a 100 KB document
    digest = hashlib.sha256(serialized).digest()
    problems = RESOURCES.get(digest)
    if problems is None:
        problems = _problems_of_shape(resource)
        RESOURCES.put(digest, problems)
    return problems


_LARGE_DATA = 4096


def _set_aside_documents(resource: dict[str, Any]) -> dict[str, Any]:
    """`resource` with the base64 copy of its letter checked here and replaced by a placeholder.

    The DocumentReference carries the whole letter (~100 KB of base64), new with every letter:
    checked once, it need not be serialized, hashed and scanned with the rest. Data that fails
    the check stays, for the model to judge.
    """
    content = resource.get("content")
    if resource.get("resourceType") != "DocumentReference" or type(content) is not list:
        return resource
    light: dict[str, Any] | None = None
    for index, item in enumerate(content):
        attachment = item.get("attachment") if type(item) is dict else None
        data = attachment.get("data") if type(attachment) is dict else None
        if type(data) is str and len(data) > _LARGE_DATA and _base64_ok(data) and attachment:
            if light is None:
                light = {**resource, "content": list(content)}
            light["content"][index] = {**item, "attachment": {**attachment, "data": "AAAA"}}
    return light if light is not None else resource


def validate_resource(resource: dict[str, Any]) -> list[str]:
    """Problems of one FHIR R4 resource (empty list = valid)."""
    # exact bytes first (the same doctor, the same hospital, letter after letter), then shape
    resource = _set_aside_documents(resource)
    return list(_problems_of(resource, orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)))


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
        if not str(entry.get("fullUrl") or "").startswith("urn:uuid:"):
            problems.append(f"entry[{position}]: fullUrl is not a urn:uuid")
        if request.get("method") not in ("POST", "PUT") or not request.get("url"):
            problems.append(f"entry[{position}]: transaction entry without a POST/PUT request")
        resource = _set_aside_documents(resource)
        serialized = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
        problems.extend(f"entry[{position}] {p}" for p in _problems_of(resource, serialized))
        problems.extend(f"entry[{position}] {resource.get('resourceType')}: reference "
                        f"{r.decode()} is not in the bundle"
                        for r in _REFERENCE.findall(serialized) if r.decode() not in known)
        envelope["entry"].append({k: v for k, v in entry.items() if k != "resource"})
    problems.extend(validate_resource(envelope))
    return problems
