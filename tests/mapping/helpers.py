"""Small readers over produced bundles (plain dicts), shared by the mapping tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapter.mapping import Conversion, convert_letter
from tests.support.paths import FIXTURES

LETTERS = FIXTURES / "letters"
GOLDEN = FIXTURES / "golden"


def convert_fixture(name: str, **options: Any) -> Conversion:
    return convert_letter((LETTERS / name).read_bytes(), **options)


def convert_file(path: Path, **options: Any) -> Conversion:
    return convert_letter(path.read_bytes(), **options)


def resources(bundle: dict, resource_type: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == resource_type]


def one(bundle: dict, resource_type: str) -> dict:
    found = resources(bundle, resource_type)
    assert len(found) == 1, f"{len(found)} {resource_type}"
    return found[0]


def entry_of(bundle: dict, resource: dict) -> dict:
    return next(e for e in bundle["entry"] if e["resource"] is resource)


def by_url(bundle: dict, url: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == url)


def identifier_values(resource: dict, system: str) -> list[str]:
    return [i["value"] for i in resource.get("identifier", []) if i.get("system") == system]


def role_codes(participant: dict) -> set[str]:
    return {c["code"] for concept in participant["role"] for c in concept.get("coding", [])}


def diagnostics(conversion: Conversion) -> list[str]:
    return [issue["diagnostics"] for issue in conversion.report["issue"]]
