"""Hand-written transaction bundles following the contract's rules (conditional creates and
updates), so the pusher can be tested without the mapping."""

from __future__ import annotations

import uuid
from typing import Any

INS = "urn:oid:1.2.250.1.213.1.4.10"
DOCS = "urn:ietf:rfc:3986"
PLANS = "urn:liaison:test:careplan"
_NS = uuid.UUID("0b6c9a53-3f5e-4b8e-9f36-7f3d1e2a4c10")


def _urn(*parts: object) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, '/'.join(map(str, parts)))}"


def patient_ins(patient: int) -> str:
    return f"2{patient:014d}"


def document_value(letter: int, version: int = 1) -> str:
    return f"urn:oid:1.2.250.1.999.{letter}.{version}"


def letter_bundle(letter: int, *, version: int = 1, patient: int | None = None) -> dict[str, Any]:
    """Patient + CarePlan (updated by a new version) + DocumentReference + Provenance."""
    patient = letter if patient is None else patient
    ins = patient_ins(patient)
    patient_url, plan_url, doc_url = (
        _urn("p", patient),
        _urn("cp", letter),
        _urn("d", letter, version),
    )
    document = document_value(letter, version)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": INS, "value": ins}],
                    "name": [{"family": f"TEST{patient}"}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={INS}|{ins}",
                },
            },
            {
                "fullUrl": plan_url,
                "resource": {
                    "resourceType": "CarePlan",
                    "identifier": [{"system": PLANS, "value": f"plan-{letter}"}],
                    "status": "active",
                    "intent": "plan",
                    "title": f"version {version}",
                    "subject": {"reference": patient_url},
                },
                "request": {"method": "PUT", "url": f"CarePlan?identifier={PLANS}|plan-{letter}"},
            },
            {
                "fullUrl": doc_url,
                "resource": {
                    "resourceType": "DocumentReference",
                    "identifier": [{"system": DOCS, "value": document}],
                    "status": "current",
                    "subject": {"reference": patient_url},
                    "content": [{"attachment": {"contentType": "application/hl7-cda+xml"}}],
                },
                "request": {
                    "method": "POST",
                    "url": "DocumentReference",
                    "ifNoneExist": f"identifier={DOCS}|{document}",
                },
            },
            {
                "fullUrl": _urn("prov", letter, version),
                "resource": {
                    "resourceType": "Provenance",
                    "meta": {"tag": [{"system": "urn:liaison:provenance", "code": document}]},
                    "target": [{"reference": plan_url}, {"reference": doc_url}],
                    "recorded": "2024-01-01T00:00:00Z",
                    "agent": [{"who": {"display": "liaison tests"}}],
                },
                "request": {
                    "method": "POST",
                    "url": "Provenance",
                    "ifNoneExist": f"_tag=urn:liaison:provenance|{document}",
                },
            },
        ],
    }
