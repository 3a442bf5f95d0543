"""The mapping knowledge of `mappings/*.yaml`, loaded once per folder."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from adapter.config import get_settings
from adapter.mapping_files import load_mapping_file


@dataclass(frozen=True)
class Knowledge:
    terminology: dict[str, Any]
    identifiers: dict[str, Any]
    documents: dict[str, Any]
    roles: dict[str, Any]
    valuesets: dict[str, Any]
    section_models: dict[str, dict[str, Any]]  # file name → content
    versions: dict[str, Any]  # items across versions of a letter (versions.yaml)

    def system_uri(self, oid: str) -> str:
        """The FHIR URI of a code system OID (urn:oid:… when not listed)."""
        return self.terminology["code_systems"].get(oid) or f"urn:oid:{oid}"

    def known_system(self, oid: str) -> bool:
        return oid in self.terminology["code_systems"]

    def profile(self, resource_type: str) -> str | None:
        return self.identifiers["profiles"].get(resource_type)

    def liaison_system(self, name: str) -> str:
        return self.identifiers["liaison"][name]

    @cached_property
    def ins_systems(self) -> frozenset[str]:
        """Systems of the INS, the only identifiers that say who a patient is across hospitals."""
        return frozenset(rule["system"] for rule in self.identifiers["patient"].values()
                         if rule.get("ins"))

    @cached_property
    def transfer_dispositions(self) -> frozenset[str]:
        """Discharge-mode codes that are a transfer to another establishment (any model)."""
        return frozenset(code for model in self.section_models.values()
                         for code in model.get("transfer_dispositions") or [])

    def is_transfer(self, disposition: dict[str, Any]) -> bool:
        """Whether a dischargeDisposition (CodeableConcept) says a transfer, not home."""
        return any(coding.get("code") in self.transfer_dispositions
                   for coding in disposition.get("coding") or [])

    def role(self, key: str) -> dict[str, str]:
        role = dict(self.roles["careteam_roles"][key])
        role["system"] = self.roles["systems"][role["system"]]
        return role


def _read(folder: Path, name: str) -> dict[str, Any]:
    return load_mapping_file(folder / name) or {}


@lru_cache(maxsize=4)
def load_knowledge(folder: Path) -> Knowledge:
    documents = _read(folder, "documents.yaml")
    section_files = {model["sections"] for model in documents["models"]}
    # YAML turns codes such as 2022.01 into floats unless quoted; keys stay as written.
    return Knowledge(
        terminology=_stringify_keys(_read(folder, "terminology.yaml")),
        identifiers=_stringify_keys(_read(folder, "identifiers.yaml")),
        documents=_stringify_keys(documents),
        roles=_read(folder, "roles.yaml"),
        valuesets=_stringify_keys(_read(folder, "valuesets.yaml")),
        section_models={name: _read(folder, name) for name in sorted(section_files)},
        versions=_read(folder, "versions.yaml"),
    )


def _stringify_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _stringify_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(item) for item in value]
    return value


def knowledge() -> Knowledge:
    return load_knowledge(Path(get_settings().mappings_dir))
