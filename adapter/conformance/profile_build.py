"""Readable profile sources (conformance/profiles/src/*.yaml) → StructureDefinition JSON.

The YAML says, per element path, what liaison constrains (min/max, fixed value, pattern,
binding, reference target types) plus invariants in FHIRPath; this module writes the
differential StructureDefinition beside it, the form FHIR tools and the checker read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

_CORE = "http://hl7.org/fhir/StructureDefinition/"
_ELEMENT_KEYS = ("min", "max", "short", "fixedUri", "fixedCode", "patternCodeableConcept")


def _element(path: str, spec: dict[str, Any]) -> dict[str, Any]:
    element: dict[str, Any] = {"id": path, "path": path}
    element.update({key: spec[key] for key in _ELEMENT_KEYS if key in spec})
    if "binding" in spec:
        element["binding"] = dict(spec["binding"])
    if "targetTypes" in spec:
        element["type"] = [
            {"code": "Reference", "targetProfile": [_CORE + kind for kind in spec["targetTypes"]]}
        ]
    return element


def build_structure_definition(source: dict[str, Any], ig: dict[str, Any]) -> dict[str, Any]:
    url = f"{ig['canonical']}/StructureDefinition/{source['id']}"
    root: dict[str, Any] = {"id": source["type"], "path": source["type"]}
    if source.get("invariants"):
        root["constraint"] = [{**invariant, "source": url} for invariant in source["invariants"]]
    return {
        "resourceType": "StructureDefinition",
        "id": source["id"],
        "url": url,
        "version": ig["version"],
        "name": source["name"],
        "title": source["title"],
        "status": "active",
        "publisher": ig["publisher"],
        "description": " ".join(source["description"].split()),
        "purpose": "Aligned with: " + "; ".join(source.get("aligned_with") or []),
        "fhirVersion": ig["fhirVersion"],
        "kind": "resource",
        "abstract": False,
        "type": source["type"],
        "baseDefinition": source["baseDefinition"],
        "derivation": "constraint",
        "differential": {
            "element": [root]
            + [_element(path, spec) for path, spec in source["elements"].items()]
        },
    }


def _fsh_rules(path: str, spec: dict[str, Any]) -> list[str]:
    element = path.split(".", 1)[1]
    rules = []
    if "min" in spec or "max" in spec:
        rules.append(f"* {element} {spec.get('min', 0)}..{spec.get('max', '')}")  # `1..` keeps max
    if "fixedCode" in spec:
        rules.append(f"* {element} = #{spec['fixedCode']}")
    if "fixedUri" in spec:
        rules.append(f'* {element} = "{spec["fixedUri"]}"')
    for coding in (spec.get("patternCodeableConcept") or {}).get("coding", []):
        rules.append(f"* {element} = {coding['system']}#{coding['code']}")
    if "binding" in spec:
        binding = spec["binding"]
        rules.append(f"* {element} from {binding['valueSet']} ({binding['strength']})")
    if "targetTypes" in spec:
        rules.append(f"* {element} only Reference({' or '.join(spec['targetTypes'])})")
    if "short" in spec:
        rules.append(f'* {element} ^short = "{spec["short"]}"')
    return rules


def build_fsh(source: dict[str, Any]) -> str:
    """The same profile in FHIR Shorthand, for readers and tools of the ANS / HL7 IG world."""
    lines = [
        "// Generated from src/" + source["id"] + ".yaml by `liaison conformance profiles`.",
        f"Profile: {source['name']}",
        f"Parent: {source['baseDefinition']}",
        f"Id: {source['id']}",
        f'Title: "{source["title"]}"',
        f'Description: "{" ".join(source["description"].split())}"',
    ]
    for path, spec in source["elements"].items():
        lines.extend(_fsh_rules(path, spec))
    lines.extend(f"* obeys {invariant['key']}" for invariant in source.get("invariants") or [])
    for invariant in source.get("invariants") or []:
        lines += [
            "",
            f"Invariant: {invariant['key']}",
            f'Description: "{invariant["human"]}"',
            f"Severity: #{invariant['severity']}",
            f'Expression: "{invariant["expression"]}"',
        ]
    return "\n".join(lines) + "\n"


def build_all(profiles_dir: Path) -> dict[Path, str]:
    """Every generated file (path → text) from the sources under `profiles_dir/src`: the
    StructureDefinition JSON and its FHIR Shorthand rendering (fsh/)."""
    ig = yaml.safe_load((profiles_dir / "src" / "ig.yaml").read_text(encoding="utf-8"))
    generated: dict[Path, str] = {}
    for source_path in sorted((profiles_dir / "src").glob("liaison-*.yaml")):
        source = yaml.safe_load(source_path.read_text(encoding="utf-8"))
        definition = build_structure_definition(source, ig)
        target = profiles_dir / f"StructureDefinition-{source['id']}.json"
        generated[target] = json.dumps(definition, ensure_ascii=False, indent=2) + "\n"
        generated[profiles_dir / "fsh" / f"{source['id']}.fsh"] = build_fsh(source)
    return generated

