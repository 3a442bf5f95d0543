"""The ANS "Notification d'évènements" discharge event for each accepted letter.

Flux 3 EmissionEvenement of the CI-SIS volet (ansforge/interop-ig-fhir-notification-evenements):
a CommunicationRequest with profile NdE_EventDeclarationNdE, extension event-type = SOR
(TRE_R254-TypeEvenement, "Sortie d'un patient de l'établissement de santé"), event-time, the
patient as `subject` and the hospital as `requester`, both *contained* as the profile requires.
Codes, systems and URLs come from `mappings/coordination.yaml` (section `discharge_event`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.rules import CoordinationRules
from adapter.mapping.identity import create_if_absent, full_url
from adapter.mapping.summary import LetterSummary

_PATIENT_KEYS = ("identifier", "name", "gender", "birthDate", "extension")
_ORGANIZATION_KEYS = ("identifier", "name", "telecom", "address")


def _contained(
    source: dict[str, Any], keys: tuple[str, ...], local_id: str, profile: str
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": source.get("resourceType"), "id": local_id}
    resource["meta"] = {"profile": [profile]}
    for key in keys:
        if source.get(key):
            # a copy (the patient's fields are the bundle's own); orjson's is 10x deepcopy's speed
            resource[key] = orjson.loads(orjson.dumps(source[key]))
    return resource


def _event_time(view: BundleView, letter: LetterSummary) -> str | None:
    """When the patient left: the Encounter's end, else the letter's date."""
    encounter = view.first("Encounter")
    end = ((encounter or {}).get("period") or {}).get("end")
    return end or letter.effective_time or None


def discharge_event(
    view: BundleView, letter: LetterSummary, rules: CoordinationRules, now: datetime | None = None
) -> dict[str, Any] | None:
    """Add the SOR CommunicationRequest to the bundle (conditional create); returns it."""
    section = rules.section("discharge_event")
    if not section.get("enabled", True):
        return None
    patient = view.first("Patient")
    custodian = letter.custodian
    organization_url = view.find_by_identifier("Organization", *custodian) if custodian else None
    organization = view.by_reference(organization_url) or view.first("Organization")
    if patient is None or organization is None:
        return None  # the profile requires both; a letter without them is reported by the mapping
    # one discharge event per stay: a corrected version of the letter is not a new discharge
    stay = getattr(letter, "set_key", "") or getattr(letter, "set_id", ("", ""))[1]
    identifier = {"system": section["identifier_system"], "value": f"{stay}|SOR"}
    emitted = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    event_type = {"coding": [section["event_type"]]}
    extensions = [{"url": section["event_type_extension"], "valueCodeableConcept": event_type}]
    event_time = _event_time(view, letter)
    if event_time:
        extensions.append({"url": section["event_time_extension"], "valueDateTime": event_time})
    extensions.append({"url": section["emission_time_extension"], "valueDateTime": emitted})
    payload: dict[str, Any] = {"contentString": section["event_type"].get("display", "SOR")}
    document = view.first("DocumentReference")
    resource: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "meta": {"profile": [section["profile"]]},
        "contained": [
            _contained(patient, _PATIENT_KEYS, "patient", section["patient_profile"]),
            _contained(
                organization, _ORGANIZATION_KEYS, "requester", section["organization_profile"]
            ),
        ],
        "extension": extensions,
        "identifier": [identifier],
        "status": "active",
        "subject": {"reference": "#patient"},
        "payload": [payload],
        "authoredOn": emitted,
        "requester": {"reference": "#requester"},
    }
    if document is not None and view.full_url_of(document):
        resource["payload"].append({"contentReference": {"reference": view.full_url_of(document)}})
    recipients = _recipient_references(view)
    if recipients:
        resource["recipient"] = recipients
    url = full_url("CommunicationRequest", identifier["system"], identifier["value"])
    view.add(resource, url, create_if_absent("CommunicationRequest", identifier))
    return resource


def _recipient_references(view: BundleView) -> list[dict[str, str]]:
    """Everyone the bundle's Communications address (already filtered by consent)."""
    seen: list[str] = []
    for communication in view.resources("Communication"):
        for recipient in communication.get("recipient") or []:
            reference = recipient.get("reference")
            if reference and reference not in seen:
                seen.append(reference)
    return [{"reference": r} for r in seen]
