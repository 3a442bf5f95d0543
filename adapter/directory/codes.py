"""The directory's mapping knowledge, read from `mappings/directory/*.yaml` (layouts of the
extracts, identifier systems, NOS code systems), loaded once per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from adapter.config import get_settings
from adapter.mapping_files import load_mapping_file


def _mapping_file(name: str) -> Path:
    return get_settings().mappings_dir / "directory" / name


@lru_cache(maxsize=16)
def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = load_mapping_file(path)
    return loaded


def load(name: str) -> dict[str, Any]:
    """The parsed `mappings/directory/<name>` file."""
    return _load(_mapping_file(name))


def identifiers() -> dict[str, Any]:
    return load("identifiers.yaml")


def code_systems() -> dict[str, Any]:
    return load("code_systems.yaml")


def national_layout() -> dict[str, Any]:
    return load("national_extract.yaml")


def mssante_layout() -> dict[str, Any]:
    return load("mssante_extract.yaml")


def local_layout() -> dict[str, Any]:
    return load("local_csv.yaml")



def canonical_system(system: str) -> str:
    """An identifier system as FR Core writes it (from a CDA OID, `urn:oid:` form or short name)."""
    aliases: dict[str, str] = identifiers()["aliases"]
    return aliases.get(system, aliases.get(system.lower(), system))


def specialty_system(savoir_faire_type: str | None) -> str:
    systems = code_systems()
    by_type: dict[str, str] = systems["specialty_by_type"]
    if savoir_faire_type and savoir_faire_type in by_type:
        return by_type[savoir_faire_type]
    return systems["default_specialty"]
