"""The validation caches never hide a problem: every value of every resource is still checked.

The bundle of the official example is first validated clean (so every shape and every resource of
it is in the caches), then each value is spoiled in turn — emptied, given the wrong JSON type,
turned into an impossible date or a malformed code — and each required element removed: every
single change must be reported against its entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapter import fhir_validation as validation
from adapter.fhir_validation import validate_bundle
from adapter.mapping import convert_letter
from tests.support.paths import LDL_SES_EXAMPLE

Leaf = tuple[Any, Any, str, str]  # (container, key or index, path, element name)
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}")


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    bundle = convert_letter(LDL_SES_EXAMPLE.read_bytes()).bundle
    validation.clear_caches()
    assert validate_bundle(bundle) == []  # now warm: every shape and resource is cached
    return bundle


def _leaves(node: Any, path: str = "", name: str = "") -> Iterator[Leaf]:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        element = key if isinstance(key, str) else name
        where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
        if isinstance(value, dict | list):
            yield from _leaves(value, where, element)
        else:
            yield node, key, where, element


def _spoiled(bundle: dict[str, Any], container: Any, key: Any, bad: Any) -> list[str]:
    good = container[key]
    container[key] = bad
    try:
        return validate_bundle(bundle)
    finally:
        container[key] = good


def _resource_leaves(bundle: dict[str, Any]) -> Iterator[tuple[int, Leaf]]:
    for position, entry in enumerate(bundle["entry"]):
        for leaf in _leaves(entry["resource"], entry["resource"]["resourceType"]):
            if leaf[3] != "resourceType":
                yield position, leaf


def _missed(bundle: dict[str, Any], bad_value: Any, wanted: Any) -> list[str]:
    missed = []
    for position, (container, key, where, element) in _resource_leaves(bundle):
        if not wanted(container[key], element):
            continue
        problems = _spoiled(bundle, container, key, bad_value)
        if not any(p.startswith(f"entry[{position}] ") for p in problems):
            missed.append(f"entry[{position}] {where} = {bad_value!r}")
    return missed


def _model_rejects(resource: dict[str, Any]) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError:
        return True
    return False


def test_whatever_the_model_rejects_anywhere_is_reported_despite_the_caches(
        bundle: dict[str, Any]) -> None:
    """Each value spoiled in turn: if fhir.resources rejects the resource, so does liaison."""
    missed, rejected = [], 0
    for position, (container, key, where, _) in _resource_leaves(bundle):
        value = container[key]
        spoils = ["", 42, " padded", "two  spaces"] if isinstance(value, str) else ["text"]
        if isinstance(value, str) and _DATE_LIKE.match(value):
            spoils.append("2019-13-45")
        for bad in spoils:
            container[key] = bad
            try:
                if not _model_rejects(bundle["entry"][position]["resource"]):
                    continue
                rejected += 1
                if not any(p.startswith(f"entry[{position}] ") for p in validate_bundle(bundle)):
                    missed.append(f"entry[{position}] {where} = {bad!r}")
            finally:
                container[key] = value
    assert missed == []
    assert rejected > 1000  # the spoiled values really were invalid ones


def test_a_value_of_the_wrong_type_anywhere_is_caught(bundle: dict[str, Any]) -> None:
    assert _missed(bundle, {"unexpected": 1}, lambda value, _: True) == []
    # (fhir.resources reads a number as a date-time: its own leniency, covered above)
    assert _missed(bundle, 42, lambda value, _: isinstance(value, str)
                   and not _DATE_LIKE.match(value)) == []


def test_an_impossible_date_anywhere_is_caught(bundle: dict[str, Any]) -> None:
    dates = [leaf for _, leaf in _resource_leaves(bundle)
             if isinstance(leaf[0][leaf[1]], str) and _DATE_LIKE.match(leaf[0][leaf[1]])]
    assert len(dates) > 20  # birth date, periods, authoredOn, recorded, sent…
    assert _missed(bundle, "2019-13-45", lambda value, _: isinstance(value, str)
                   and bool(_DATE_LIKE.match(value))) == []
    assert _missed(bundle, "2019-02-30T25:00:00+01:00", lambda value, _: isinstance(value, str)
                   and "T" in value and bool(_DATE_LIKE.match(value))) == []


def test_a_malformed_code_in_any_coding_is_caught(bundle: dict[str, Any]) -> None:
    assert _missed(bundle, "bad  code", lambda value, element: element == "code"
                   and isinstance(value, str)) == []
    assert _missed(bundle, " padded", lambda value, element: element in (
        "code", "status", "intent", "gender", "use") and isinstance(value, str)) == []


def test_a_missing_required_element_of_any_resource_is_caught(bundle: dict[str, Any]) -> None:
    checked = 0
    for position, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        model = get_fhir_model_class(resource["resourceType"])
        required = [field.alias or name for name, field in model.model_fields.items()
                    if field.is_required() or (field.json_schema_extra or {}).get(
                        "element_required")]
        for element in (e for e in required if e in resource):
            value = resource.pop(element)
            try:
                problems = validate_bundle(bundle)
            finally:
                resource[element] = value
            assert any(p.startswith(f"entry[{position}] ") and element in p for p in problems), (
                f"{resource['resourceType']}.{element}")
            checked += 1
    assert checked >= 25  # status, intent, subject, patient, target, agent, content…


def test_a_bad_value_in_the_transaction_requests_is_caught(bundle: dict[str, Any]) -> None:
    for entry in bundle["entry"]:
        for container, key, where, _ in _leaves(entry, "entry"):
            if container is entry.get("resource") or where.startswith("entry.resource"):
                continue
            assert _spoiled(bundle, container, key, ""), where


def test_the_bundle_is_clean_again_after_the_spoiled_copies(bundle: dict[str, Any]) -> None:
    assert validate_bundle(bundle) == []
