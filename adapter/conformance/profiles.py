"""Check produced resources against liaison's profiles (conformance/profiles/*.json).

What is checked, from each profile's differential: `meta.profile` declares the profile (or the
IG profile it derives from), cardinalities (per parent instance), fixed values, patterns,
bindings to the value sets of mappings/valuesets/, reference target types (when the reference
can be resolved), and the FHIRPath invariants (fhirpathpy). fhir.resources already checks
datatypes and FHIR's own required elements; this is the layer it does not cover.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from fhirpathpy import compile as compile_fhirpath

from adapter.config import get_settings
from adapter.conformance.valuesets import ValueSet, load_value_sets

_CORE = "http://hl7.org/fhir/StructureDefinition/"
Resolver = Callable[[str], str | None]  # reference → resource type, or None if unknown


@lru_cache(maxsize=4)
def load_profiles(profiles_dir: Path) -> dict[str, dict[str, Any]]:
    """resource type → liaison's StructureDefinition for it."""
    profiles: dict[str, dict[str, Any]] = {}
    for path in sorted(profiles_dir.glob("StructureDefinition-*.json")):
        definition = json.loads(path.read_text(encoding="utf-8"))
        profiles[definition["type"]] = definition
    return profiles


def _values(node: Any, steps: list[str]) -> list[Any]:
    """Every value at a dotted path below `node` (lists flattened at each step)."""
    current = [node]
    for step in steps:
        found: list[Any] = []
        for item in current:
            if isinstance(item, dict) and step in item:
                value = item[step]
                found.extend(value if isinstance(value, list) else [value])
        current = found
    return current


def _matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: every element of the pattern is present in the value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            _matches_pattern(value.get(key), expected) for key, expected in pattern.items()
        )
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else []
        return all(any(_matches_pattern(item, expected) for item in items) for expected in pattern)
    return value == pattern


def _in_value_set(value: Any, value_set: ValueSet) -> bool:
    if isinstance(value, str):
        return value_set.has_code(value)
    if isinstance(value, dict) and "coding" in value:
        return any(
            value_set.has_coding(coding.get("system"), coding.get("code"))
            for coding in value.get("coding", [])
        )
    if isinstance(value, dict) and "code" in value:
        return value_set.has_coding(value.get("system"), value.get("code"))
    return False


def _reference_type(reference: dict[str, Any], resolve: Resolver | None) -> str | None:
    target = reference.get("reference") if isinstance(reference, dict) else None
    if not target:
        return None
    if resolve is not None and (found := resolve(target)):
        return found
    parts = target.split("/")
    # relative "Type/id" or absolute ".../Type/id" (optionally followed by /_history/n)
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-2] if len(parts) >= 2 and parts[-2][:1].isupper() else None


def _element_problems(
    resource: dict[str, Any],
    element: dict[str, Any],
    value_sets: dict[str, ValueSet],
    resolve: Resolver | None,
) -> list[str]:
    path = element["path"]
    steps = path.split(".")[1:]
    problems: list[str] = []
    parents = _values(resource, steps[:-1])
    values = _values(resource, steps)
    minimum = element.get("min", 0)
    maximum = element.get("max", "*")
    for parent in parents:
        count = len(_values(parent, steps[-1:]))
        if count < minimum:
            problems.append(f"{path}: {count} found, at least {minimum} required")
        if maximum != "*" and count > int(maximum):
            problems.append(f"{path}: {count} found, at most {maximum} allowed")
    for fixed_key in ("fixedUri", "fixedCode"):
        if fixed_key in element:
            for value in values:
                if value != element[fixed_key]:
                    problems.append(f"{path}: is {value!r}, must be {element[fixed_key]!r}")
    if "patternCodeableConcept" in element:
        for value in values:
            if not _matches_pattern(value, element["patternCodeableConcept"]):
                problems.append(f"{path}: does not carry the required coding "
                                f"{json.dumps(element['patternCodeableConcept'])}")
    binding = element.get("binding")
    if binding and binding.get("strength") == "required":
        value_set = value_sets.get(binding["valueSet"])
        if value_set is None:
            problems.append(f"{path}: bound to unknown value set {binding['valueSet']}")
        else:
            problems.extend(
                f"{path}: {json.dumps(value, ensure_ascii=False)[:120]} is not in "
                f"{binding['valueSet']}"
                for value in values
                if not _in_value_set(value, value_set)
            )
    allowed = {
        target.removeprefix(_CORE)
        for kind in element.get("type", [])
        for target in kind.get("targetProfile", [])
    }
    if allowed:
        for value in values:
            found = _reference_type(value, resolve)
            if found is not None and found not in allowed:
                expected = " | ".join(sorted(allowed))
                problems.append(f"{path}: refers to a {found}, expected {expected}")
    return problems


@lru_cache(maxsize=256)
def _compiled(expression: str) -> Any:
    """A FHIRPath expression parsed once: parsing was ~85 % of checking a resource."""
    return compile_fhirpath(expression)


def _invariant_problems(resource: dict[str, Any], element: dict[str, Any]) -> list[str]:
    problems = []
    for constraint in element.get("constraint", []):
        try:
            result = _compiled(constraint["expression"])(resource, {})
        except Exception as error:  # fhirpathpy raises bare Exceptions on evaluation errors
            problems.append(f"{constraint['key']}: cannot evaluate ({error})")
            continue
        if result != [True] and constraint.get("severity", "error") == "error":
            problems.append(f"{constraint['key']}: {constraint['human']}")
    return problems


def _meta_profile_problems(resource: dict[str, Any], definition: dict[str, Any]) -> list[str]:
    declared = set((resource.get("meta") or {}).get("profile") or [])
    accepted = {definition["url"]}
    if not definition["baseDefinition"].startswith(_CORE):
        accepted.add(definition["baseDefinition"])  # the IG profile liaison's one refines
    if declared & accepted:
        return []
    return [f"meta.profile: declares none of {' | '.join(sorted(accepted))}"]


def check_resource(resource: dict[str, Any], *, resolve: Resolver | None = None) -> list[str]:
    """Problems of one resource against liaison's profile for its type ([] = conforms).

    Resource types liaison does not profile give []. `resolve` maps a reference (e.g. a
    bundle's urn:uuid) to the type it points to, so reference targets can be checked too.
    """
    settings = get_settings()
    definition = load_profiles(settings.conformance_dir / "profiles").get(
        resource.get("resourceType", "")
    )
    if definition is None:
        return []
    value_sets = load_value_sets(settings.mappings_dir)
    problems = _meta_profile_problems(resource, definition)
    for element in definition["differential"]["element"]:
        if "." not in element["path"]:
            problems.extend(_invariant_problems(resource, element))
        else:
            problems.extend(_element_problems(resource, element, value_sets, resolve))
    return problems


def check_bundle(bundle: dict[str, Any]) -> list[str]:
    """Problems of every profiled resource of a Bundle, references resolved by fullUrl."""
    entries = bundle.get("entry") or []
    types = {
        entry.get("fullUrl"): (entry.get("resource") or {}).get("resourceType") for entry in entries
    }
    problems = []
    for entry in entries:
        resource = entry.get("resource") or {}
        for problem in check_resource(resource, resolve=types.get):
            problems.append(f"{resource.get('resourceType')} {entry.get('fullUrl', '')}: {problem}")
    return problems
