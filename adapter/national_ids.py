"""National identifiers of professionals (idNat_PS) and structures (idNat_Struct), whatever
system an identifier is written in.

A letter, a directory or a token may name a structure by its idNat_Struct or by its FINESS
(idNat_Struct = "1" + FINESS), a professional by idNat_PS or RPPS (idNat_PS = "8" + RPPS). The
systems and prefixes are read from `mappings/identifiers.yaml` (sections `professional` and
`organization`), the one place they are declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any, Literal

from adapter.config import get_settings
from adapter.mapping_files import load_mapping_file

Section = Literal["professional", "organization"]
# The length of an RPPS / FINESS number: a bare one (a token claim) gets its prefix.
_BARE_LENGTH = {"professional": 11, "organization": 9}


@cache
def _systems(section: Section) -> dict[str, str]:
    """identifier system → prefix that turns its value into the national identifier."""
    path = get_settings().mappings_dir / "identifiers.yaml"
    entries = (load_mapping_file(path) or {}).get(section) or {}
    systems: dict[str, str] = {}
    for entry in entries.values():
        systems[entry["system"]] = ""
        if entry.get("derived"):
            systems[entry["derived"]["system"]] = entry["derived"]["prefix"]
    return systems


@cache
def national_system(section: Section) -> str:
    """The system of the national identifier itself: idNat_PS (`professional`), idNat_Struct
    (`organization`)."""
    return next(system for system, prefix in _systems(section).items() if not prefix)


def national_ids(identifiers: Iterable[dict[str, Any]] | None, section: Section) -> set[str]:
    """idNat_PS (section `professional`) or idNat_Struct (`organization`) values of FHIR
    identifiers; identifiers in other systems are ignored."""
    systems = _systems(section)
    found = set()
    for identifier in identifiers or []:
        system, value = identifier.get("system"), identifier.get("value")
        if value and system in systems:
            found.add(systems[system] + value)
    return found


def national_id(value: str, section: Section) -> str:
    """A national identifier given bare (e.g. in a token): an RPPS or FINESS number gets the
    prefix of its national form; anything else is taken as already national."""
    if len(value) != _BARE_LENGTH[section]:
        return value
    derived = [prefix for prefix in _systems(section).values() if prefix]
    return derived[0] + value if derived else value


@cache
def ins_systems() -> tuple[str, ...]:
    """Systems of the INS (INS-NIR first), read from the `patient` section of identifiers.yaml:
    the only identifiers that say who a patient is across hospitals."""
    path = get_settings().mappings_dir / "identifiers.yaml"
    entries = (load_mapping_file(path) or {}).get("patient") or {}
    return tuple(entry["system"] for entry in entries.values() if entry.get("ins"))
