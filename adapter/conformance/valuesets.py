"""Value sets the profiles bind to, read from mappings/valuesets/*.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from adapter.mapping_files import load_mapping_file


@dataclass(frozen=True)
class ValueSet:
    url: str
    systems: frozenset[str]  # every code of these systems is in the set
    concepts: frozenset[tuple[str, str]]  # (system, code)
    codes: frozenset[str]  # bare codes (for `code` elements: FHIR's own status value sets)

    def has_coding(self, system: str | None, code: str | None) -> bool:
        if not code:
            return False
        if system is None:
            return code in self.codes
        return system in self.systems or (system, code) in self.concepts

    def has_code(self, code: str) -> bool:
        return code in self.codes or any(code == c for _, c in self.concepts)


@lru_cache(maxsize=4)
def load_value_sets(mappings_dir: Path) -> dict[str, ValueSet]:
    value_sets: dict[str, ValueSet] = {}
    for path in sorted((mappings_dir / "valuesets").glob("*.yaml")):
        raw = load_mapping_file(path)
        concepts = [(item["system"], str(item["code"])) for item in raw.get("concepts") or ()]
        for source in raw.get("concepts_from") or ():
            concepts += declared_concepts(mappings_dir, source)
        value_sets[raw["url"]] = ValueSet(
            url=raw["url"],
            systems=frozenset(item["system"] for item in raw.get("include") or ()),
            concepts=frozenset(concepts),
            codes=frozenset(str(code) for code in raw.get("codes") or ()),
        )
    return value_sets


def declared_concepts(mappings_dir: Path, source: str) -> list[tuple[str, str]]:
    """The (system, code) declared at `file.yaml#dotted.path` of mappings/: one coding there
    (a mapping with `code`), or a mapping of them. A system may be an alias of the file's
    top-level `systems`."""
    name, _, where = source.partition("#")
    document = load_mapping_file(mappings_dir / name) or {}
    node: Any = document
    for key in where.split(".") if where else []:
        node = node[key]
    codings = [node] if isinstance(node, dict) and "code" in node else list(node.values())
    aliases = document.get("systems") or {}
    return [(str(aliases.get(coding["system"]) or coding["system"]), str(coding["code"]))
            for coding in codings]
