"""Where pathway coordinators come from: the local directory (CSV or the imported directory).

A coordinator is a local-directory row whose `role` is one of the coordinator roles of
`mappings/coordination.yaml`, with the territory it covers (`cpts_id`, `territory_postcodes`,
`commune`). Both sources give the same `Coordinator` cards to `CoordinationRules.coordinators_for`.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from adapter.coordination.bundle_tools import IDNAT_PS
from adapter.coordination.rules import CoordinationRules, Coordinator, load_rules, parse_spans
from adapter.mapping.directory_port import ContactPoint, ProfessionalCard
from adapter.store.engine import table_of

LOCAL_PROFESSIONAL = "urn:liaison:directory:local"


def _identifier(row: Mapping[str, str]) -> tuple[str, str] | None:
    if (row.get("idnat_ps") or "").strip():
        return (IDNAT_PS, row["idnat_ps"].strip())
    if (row.get("rpps") or "").strip():
        return (IDNAT_PS, "8" + row["rpps"].strip())
    if (row.get("local_id") or "").strip():
        return (LOCAL_PROFESSIONAL, row["local_id"].strip())
    return None


def coordinator_from_row(row: Mapping[str, str], rules: CoordinationRules) -> Coordinator | None:
    """The coordinator a local-directory row declares, or None if the row is not one."""
    if not rules.coordinator.is_coordinator_role(row.get("role")):
        return None
    identifier = _identifier(row)
    territory_id = (row.get("cpts_id") or "").strip()
    if identifier is None or not territory_id:
        return None
    telecom: list[ContactPoint] = []
    if (row.get("phone") or "").strip():
        telecom.append(ContactPoint("phone", row["phone"].strip(), use="work"))
    if (row.get("mssante") or "").strip():
        telecom.append(ContactPoint("email", row["mssante"].strip(), use="work", mssante=True))
    postcodes = parse_spans(row.get("territory_postcodes") or "")
    return Coordinator(
        identifier=identifier,
        territory_id=territory_id,
        territory_kind=rules.coordinator.kind_of(territory_id),
        family=(row.get("family") or "").strip() or None,
        given=tuple((row.get("given") or "").split()),
        telecom=tuple(telecom),
        postcodes=postcodes,
        # a coordinator row without postcodes covers the commune it names
        communes=() if postcodes else tuple(filter(None, [(row.get("commune") or "").strip()])),
        organization_name=(row.get("structure") or "").strip() or None,
    )


class CsvCoordinators:
    """Coordinators read straight from a local-directory CSV (same columns as the import)."""

    def __init__(self, path: Path, rules: CoordinationRules | None = None) -> None:
        self.path = path
        self.rules = rules or load_rules()
        self._cache: list[Coordinator] | None = None

    def coordinators(self) -> Sequence[Coordinator]:
        if self._cache is None:
            with open(self.path, encoding="utf-8-sig", newline="") as handle:
                sample = handle.read(4096)
                handle.seek(0)
                delimiter = ";" if sample.count(";") > sample.count(",") else ","
                rows = csv.DictReader(handle, delimiter=delimiter)
                found = (coordinator_from_row(row, self.rules) for row in rows)
                self._cache = [c for c in found if c is not None]
        return self._cache


class StaticCoordinators:
    """A fixed list (built from directory cards, or in tests)."""

    def __init__(self, coordinators: Iterable[Coordinator]) -> None:
        self._coordinators = list(coordinators)

    def coordinators(self) -> Sequence[Coordinator]:
        return self._coordinators


def coordinator_from_card(card: ProfessionalCard, rules: CoordinationRules) -> Coordinator | None:
    """A directory card (`adapter.directory`) as a coordinator, when its local role says so."""
    role = next((r.code for r in card.roles if rules.coordinator.is_coordinator_role(r.code)), None)
    row = {
        "role": role or card.extra.get("role", ""),
        "cpts_id": card.extra.get("cpts_id", ""),
        "territory_postcodes": card.extra.get("territory_postcodes", ""),
        "family": card.family or "",
        "given": " ".join(card.given),
        "commune": card.address.city if card.address and card.address.city else "",
        "structure": card.organization.name if card.organization and card.organization.name else "",
    }
    identifier = next(iter(card.identifiers), None)
    if identifier is None:
        return None
    if identifier[0] == IDNAT_PS:
        row["idnat_ps"] = identifier[1]
    else:
        row["local_id"] = identifier[1]
    coordinator = coordinator_from_row(row, rules)
    if coordinator is None:
        return None
    return Coordinator(
        identifier=identifier,
        territory_id=coordinator.territory_id,
        territory_kind=coordinator.territory_kind,
        family=coordinator.family,
        given=coordinator.given,
        telecom=card.telecom,
        postcodes=coordinator.postcodes,
        communes=coordinator.communes,
        organization_name=coordinator.organization_name,
    )


class DirectoryCoordinators:
    """Coordinators from the imported directory (`adapter.directory` tables, read only).

    Every accepted letter asks for them, and rebuilding them from the tables cost ≈0.6 ms a
    letter (with no index on the local role, a scan of every activity of a national extract).
    So the list is kept per database and rebuilt when the directory's *generation* changes:
    every write to the directory tables is an import run (`directory_import_run`: a row when
    it starts, `finished_at` when it ends), so one look-up at that small table tells whether
    anything may have changed since. Not a time-to-live: a coordinator just imported must be
    used by the very next letter.
    """

    def __init__(self, engine: Engine, rules: CoordinationRules | None = None) -> None:
        self.engine = engine
        self.rules = rules or load_rules()

    def coordinators(self) -> Sequence[Coordinator]:
        from adapter.store.directory_tables import DirectoryImportRun

        key = (str(self.engine.url), self.rules.coordinator)
        generation = _generation(self.engine, DirectoryImportRun)
        with _cache_lock:
            cached = _cache.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        found = tuple(self._load())  # read after the generation: a later import shows next time
        with _cache_lock:
            if len(_cache) >= _CACHED_DATABASES and key not in _cache:
                _cache.clear()  # many databases in one process: tests, not a server
            _cache[key] = (generation, found)
        return found

    def _load(self) -> list[Coordinator]:
        from adapter.store.directory_tables import DirectoryPractitioner, DirectoryRole

        roles = list(self.rules.coordinator.directory_roles)
        query = (
            select(DirectoryRole, DirectoryPractitioner)
            .join(
                DirectoryPractitioner,
                col(DirectoryPractitioner.idnat) == col(DirectoryRole.practitioner_idnat),
            )
            .where(col(DirectoryRole.active).is_(True))
            .where(func.lower(col(DirectoryRole.local_role)).in_(roles))
        )
        found: list[Coordinator] = []
        with Session(self.engine) as session:
            for role, person in session.exec(query).all():
                row = {
                    "role": role.local_role or "",
                    "cpts_id": role.cpts_id or "",
                    "territory_postcodes": role.territory_postcodes or "",
                    "family": person.family or "",
                    "given": person.given or "",
                    "phone": role.phone or "",
                    "mssante": role.mssante or "",
                    "structure": role.organization_name or "",
                    "commune": role.city or "",
                }
                if person.idnat.startswith("local-"):
                    row["local_id"] = person.idnat
                else:
                    row["idnat_ps"] = person.idnat
                coordinator = coordinator_from_row(row, self.rules)
                if coordinator is not None:
                    found.append(coordinator)
        return found


def territories_coordinated_by(engine: Engine, idnat: str) -> list[str]:
    """The territories (CPTS, DAC) the imported local directory declares this professional
    (idNat_PS) coordinator of; [] when it declares them coordinator of none."""
    return sorted({coordinator.territory_id
                   for coordinator in DirectoryCoordinators(engine).coordinators()
                   if coordinator.identifier == (IDNAT_PS, idnat)})


Generation = tuple[Any, ...]
_cache: dict[tuple[str, Any], tuple[Generation, tuple[Coordinator, ...]]] = {}
_cache_lock = threading.Lock()
_CACHED_DATABASES = 16


@lru_cache(maxsize=4)
def _generation_query(runs: Any) -> Any:
    return sa_select(
        func.max(runs.c.id), func.count(), func.count(runs.c.finished_at),
        func.max(runs.c.finished_at),
    )


def _generation(engine: Engine, runs_model: Any) -> Generation:
    """Changes whenever an import run starts or ends (concurrent runs may end in any order)."""
    with engine.connect() as connection:
        return tuple(connection.execute(_generation_query(table_of(runs_model))).one())
