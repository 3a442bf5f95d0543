"""Coordination rules read from `mappings/coordination.yaml`, and which coordinator covers whom.

The coordinator of a patient is found by territory: a CPTS or DAC covers postcodes (ranges,
prefixes, single codes) and communes. Territories come from the local directory (rows whose
`role` is a coordinator role, with `cpts_id` and `territory_postcodes`) and may be completed by
territories declared in the YAML. When several territories cover the patient, the `overlap`
policy decides; when none does, the caller reports "no coordinator here".
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from adapter.config import get_settings
from adapter.mapping.directory_port import ContactPoint
from adapter.mapping_files import load_mapping_file

OVERLAP_POLICIES = ("all", "most_specific", "first_kind")
_DEFAULT_ROLE = {"system": "urn:liaison:careteam-role", "code": "coordinator"}


@dataclass(frozen=True)
class PostcodeSpan:
    """One entry of a territory: a range "75005-75015", a prefix "75*" (or "75") or one code."""

    low: str
    high: str

    @classmethod
    def parse(cls, text: str) -> PostcodeSpan:
        text = text.strip().removesuffix("*")  # "75*": the directory's prefix notation
        if "-" in text:
            low, high = (part.strip() for part in text.split("-", 1))
        else:
            low = high = text
        if not (low.isdigit() or low[:2].upper() in ("2A", "2B")) or len(low) != len(high):
            raise ValueError(f"not a postcode, prefix or range: {text!r}")
        return cls(low, high)

    def covers(self, postcode: str) -> bool:
        head = postcode[: len(self.low)]
        return len(postcode) >= len(self.low) and self.low <= head <= self.high

    def size(self) -> int:
        """How many 5-digit postcodes the span covers (for the `most_specific` policy)."""
        if self.low.isdigit() and self.high.isdigit():
            return (int(self.high) - int(self.low) + 1) * 10 ** (5 - len(self.low))
        return 10 ** (5 - len(self.low))


def parse_spans(text: str | Iterable[str]) -> tuple[PostcodeSpan, ...]:
    """Spans from "75005 75013-75015" (directory CSV cell, `;`/`,` too) or a list (YAML)."""
    if isinstance(text, str):
        parts: Iterable[str] = text.replace(",", " ").replace(";", " ").replace("|", " ").split()
    else:
        parts = text
    return tuple(PostcodeSpan.parse(part) for part in parts if part and part.strip())


def _fold(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


@dataclass(frozen=True)
class Territory:
    id: str
    kind: str  # CPTS | DAC
    postcodes: tuple[PostcodeSpan, ...] = ()
    communes: tuple[str, ...] = ()  # commune names or INSEE codes, compared case/accent-folded

    def covers(self, postcode: str | None, commune: str | None) -> bool:
        if postcode and any(span.covers(postcode) for span in self.postcodes):
            return True
        return bool(commune) and _fold(commune or "") in {_fold(c) for c in self.communes}

    def size(self) -> int:
        return sum(span.size() for span in self.postcodes) + len(self.communes)


@dataclass(frozen=True)
class Coordinator:
    """A pathway coordinator as the local directory declares them."""

    identifier: tuple[str, str]  # (system, value), idNat_PS normally
    territory_id: str
    territory_kind: str = "CPTS"
    family: str | None = None
    given: tuple[str, ...] = ()
    telecom: tuple[ContactPoint, ...] = ()
    postcodes: tuple[PostcodeSpan, ...] = ()
    communes: tuple[str, ...] = ()
    organization_name: str | None = None

    @property
    def display(self) -> str:
        return " ".join([*self.given, self.family or ""]).strip() or self.identifier[1]


class CoordinatorSource(Protocol):
    """Where coordinators come from (the local directory, in production)."""

    def coordinators(self) -> Sequence[Coordinator]: ...


@dataclass(frozen=True)
class CodingRule:
    system: str
    code: str
    display: str | None = None

    def as_fhir(self) -> dict[str, str]:
        coding = {"system": self.system, "code": self.code}
        if self.display:
            coding["display"] = self.display
        return coding


@dataclass(frozen=True)
class CoordinatorRules:
    enabled: bool
    kinds: tuple[str, ...]
    directory_roles: tuple[str, ...]
    overlap: str
    role: CodingRule
    territories: tuple[Territory, ...]
    kind_by_id_prefix: tuple[tuple[str, str], ...] = ()
    default_kind: str = "CPTS"

    def kind_of(self, territory_id: str) -> str:
        """CPTS or DAC for a directory `cpts_id` (the CSV has no kind column)."""
        folded = territory_id.upper()
        for prefix, kind in self.kind_by_id_prefix:
            if folded.startswith(prefix.upper()):
                return kind
        return self.default_kind

    def is_coordinator_role(self, role: str | None) -> bool:
        return bool(role) and (role or "").strip().casefold() in self.directory_roles


@dataclass(frozen=True)
class MissingRoleRule:
    role: str
    when_any: tuple[str, ...]
    filled_by: tuple[str, ...]
    skills: tuple[str, ...] = ()  # what a living-directory candidate must offer besides


@dataclass(frozen=True)
class CoordinationRules:
    """Everything `mappings/coordination.yaml` says, typed."""

    coordinator: CoordinatorRules
    raw: dict[str, Any] = field(repr=False)
    missing_roles: tuple[MissingRoleRule, ...] = ()

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.raw.get(name) or {})

    def coordinators_for(
        self, postcode: str | None, commune: str | None, source: CoordinatorSource | None
    ) -> list[Coordinator]:
        """The coordinators covering (postcode, commune), after the overlap policy; [] if none."""
        rules = self.coordinator
        if not rules.enabled or source is None or (not postcode and not commune):
            return []
        declared = {territory.id: territory for territory in rules.territories}
        matches: list[tuple[Territory, Coordinator]] = []
        for coordinator in source.coordinators():
            if coordinator.territory_kind not in rules.kinds:
                continue
            territory = _territory_of(coordinator, declared.get(coordinator.territory_id))
            if territory.covers(postcode, commune):
                matches.append((territory, coordinator))
        return _apply_overlap(matches, rules)


def _territory_of(coordinator: Coordinator, declared: Territory | None) -> Territory:
    """The coordinator's own spans, completed by the YAML territory of the same id."""
    spans = coordinator.postcodes + (declared.postcodes if declared else ())
    communes = coordinator.communes + (declared.communes if declared else ())
    kind = declared.kind if declared else coordinator.territory_kind
    return Territory(coordinator.territory_id, kind, spans, communes)


def _apply_overlap(
    matches: list[tuple[Territory, Coordinator]], rules: CoordinatorRules
) -> list[Coordinator]:
    if not matches:
        return []
    if rules.overlap == "first_kind":
        for kind in rules.kinds:
            chosen = [c for t, c in matches if t.kind == kind]
            if chosen:
                return _unique(chosen)
    if rules.overlap == "most_specific":
        smallest = min(t.size() for t, _ in matches)
        return _unique([c for t, c in matches if t.size() == smallest])
    return _unique([c for _, c in matches])


def _unique(coordinators: list[Coordinator]) -> list[Coordinator]:
    seen: dict[tuple[str, str], Coordinator] = {}
    for coordinator in coordinators:
        seen.setdefault(coordinator.identifier, coordinator)
    return sorted(seen.values(), key=lambda c: (c.territory_id, c.identifier))


def _coding(raw: dict[str, Any]) -> CodingRule:
    return CodingRule(str(raw["system"]), str(raw["code"]), raw.get("display"))


def parse_rules(raw: dict[str, Any]) -> CoordinationRules:
    """Typed rules from the YAML document; raises ValueError naming the faulty entry."""
    section = raw.get("coordinator") or {}
    overlap = section.get("overlap", "most_specific")
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"coordinator.overlap must be one of {OVERLAP_POLICIES}, not {overlap!r}")
    territories = tuple(
        Territory(
            id=str(entry["id"]),
            kind=str(entry.get("kind", "CPTS")),
            postcodes=parse_spans(entry.get("postcodes") or []),
            communes=tuple(str(c) for c in entry.get("communes") or []),
        )
        for entry in section.get("territories") or []
    )
    coordinator = CoordinatorRules(
        enabled=bool(section.get("enabled", False)),
        kinds=tuple(section.get("kinds") or ("CPTS", "DAC")),
        directory_roles=tuple(r.casefold() for r in section.get("directory_roles") or ()),
        overlap=overlap,
        role=_coding(section.get("role") or _DEFAULT_ROLE),
        territories=territories,
        kind_by_id_prefix=tuple((section.get("kind_by_id_prefix") or {}).items()),
        default_kind=str(section.get("default_kind", "CPTS")),
    )
    missing = tuple(
        MissingRoleRule(
            role=str(entry["role"]),
            when_any=tuple(str(w).casefold() for w in entry.get("when_any") or ()),
            filled_by=tuple(str(f).casefold() for f in entry.get("filled_by") or ()),
            skills=tuple(str(s) for s in entry.get("skills") or ()),
        )
        for entry in raw.get("missing_roles") or []
    )
    return CoordinationRules(coordinator=coordinator, raw=raw, missing_roles=missing)


def load_rules(path: Path | None = None) -> CoordinationRules:
    """The rules in `path` (default: `<mappings_dir>/coordination.yaml`)."""
    path = path or get_settings().mappings_dir / "coordination.yaml"
    return _load_cached(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime: int) -> CoordinationRules:
    return parse_rules(load_mapping_file(Path(path)) or {})
