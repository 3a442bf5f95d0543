"""The CapabilityStatement, generated from the same tables that drive indexing and search, so it
lists exactly what the record implements."""

from __future__ import annotations

from typing import Any

from adapter import __version__
from adapter.auth.rules import WRITE_RULES
from adapter.record.params import (
    FHIR_VERSION,
    SPECIAL_PARAMETERS,
    params_for,
    supported_types,
)

_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance", "create", "search-type")
_SPEC = "http://hl7.org/fhir/SearchParameter"


def _search_params(resource_type: str) -> list[dict[str, Any]]:
    params = [{"name": name, "type": kind, "definition": f"{_SPEC}/Resource-{name.lstrip('_')}"}
              for name, kind in SPECIAL_PARAMETERS.items()]
    for param in params_for(resource_type).values():
        entry: dict[str, Any] = {"name": param.name, "type": param.type}
        if param.type == "reference" and param.targets:
            entry["documentation"] = "targets: " + ", ".join(param.targets)
        params.append(entry)
    return params


def _rev_includes(resource_type: str) -> list[str]:
    found = []
    for source in supported_types():
        for param in params_for(source).values():
            if param.type == "reference" and (not param.targets or resource_type in param.targets):
                found.append(f"{source}:{param.name}")
    return found


def _resource(resource_type: str) -> dict[str, Any]:
    references = [p.name for p in params_for(resource_type).values() if p.type == "reference"]
    return {
        "type": resource_type,
        "interaction": [{"code": code} for code in _INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchInclude": [f"{resource_type}:{name}" for name in references],
        "searchRevInclude": _rev_includes(resource_type),
        "searchParam": _search_params(resource_type),
    }


def capability_statement(base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "publisher": "liaison",
        "kind": "instance",
        "software": {"name": "liaison shared record", "version": __version__},
        "implementation": {"description": "liaison embedded FHIR R4 record", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": (
                "Search result parameters: _count (paging with next links), _sort "
                "(_lastUpdated, -_lastUpdated, _id), _include / _include:iterate, _revinclude, "
                "_summary=count, _total=none, _elements. Chained reference parameters "
                "(e.g. patient.identifier). Unknown parameters are refused (400) unless "
                "'Prefer: handling=lenient'."
            ),
            "security": {
                "cors": False,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "OAuth",
                }]}],
                "description": _security_description(),
            },
            "resource": [_resource(t) for t in supported_types()],
            "interaction": [{"code": "transaction"}, {"code": "batch"},
                            {"code": "history-system",
                             "documentation": "the change feed: what changed for the caller "
                                              "after _cursor (or _since), each change once"}],
        }],
    }


def _security_description() -> str:
    """Who reads and who writes, from the rules themselves (adapter.auth.rules)."""
    writes = "; ".join(f"{actor}: {rule}" for actor, rule in WRITE_RULES)
    return (
        "JWT bearer tokens (SMART-style scopes). Reads: a hospital reads what its own letters "
        "produced and the Patient and CareTeams of those patients; a professional reads the "
        "patients whose active CareTeam lists them and the Communications addressed to them; a "
        "CPTS coordinator reads the patients of its CPTS; the system reads everything. A "
        "resource the caller may not read answers as an unknown one (404). Only liaison and "
        "system tokens write this record, but for the messages of a patient's thread (a "
        "Communication created by its care team or its CPTS coordinator, rebuilt by liaison). "
        f"Writes by actor — {writes}."
    )
