"""FHIR resources the coordination step adds to a bundle: practitioners, care-team participants,
Communications. Same identity rules as the mapping (uuid5 fullUrls, conditional requests)."""

from __future__ import annotations

from typing import Any

from adapter.coordination.bundle_tools import IDNAT_PS, BundleView
from adapter.coordination.rules import CoordinationRules, Coordinator
from adapter.mapping.identity import create_if_absent, full_url
from adapter.mapping.knowledge import knowledge
from adapter.mapping.summary import LetterSummary

PRACTITIONER_PROFILE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-practitioner"


def ensure_practitioner(view: BundleView, practitioner: dict[str, Any]) -> str:
    """fullUrl of the practitioner in the bundle, adding it (conditional create) if absent."""
    identifiers = [i for i in practitioner.get("identifier") or [] if i.get("value")]
    for identifier in identifiers:
        system = identifier.get("system", "")
        found = view.find_by_identifier("Practitioner", system, identifier["value"])
        if found:
            return found
    identifier = next((i for i in identifiers if i.get("system") == IDNAT_PS), identifiers[0])
    url = full_url("Practitioner", identifier.get("system", ""), identifier["value"])
    request = create_if_absent("Practitioner", identifier)
    clean = {k: v for k, v in practitioner.items() if k not in ("id", "meta", "text")}
    clean["meta"] = {"profile": [PRACTITIONER_PROFILE]}
    return view.add(clean, url, request)


def coordinator_practitioner(coordinator: Coordinator, rules: CoordinationRules) -> dict[str, Any]:
    system, value = coordinator.identifier
    practitioner: dict[str, Any] = {
        "resourceType": "Practitioner",
        "identifier": [{"system": system, "value": value}],
    }
    name: dict[str, Any] = {}
    if coordinator.family:
        name["family"] = coordinator.family
    if coordinator.given:
        name["given"] = list(coordinator.given)
    if name:
        practitioner["name"] = [name]
    section = rules.section("communication")
    telecom = [_contact_point(c, section) for c in coordinator.telecom]
    if telecom:
        practitioner["telecom"] = telecom
    return practitioner


def _contact_point(contact: Any, section: dict[str, Any]) -> dict[str, Any]:
    point: dict[str, Any] = {"system": contact.system, "value": contact.value}
    if contact.use:
        point["use"] = contact.use
    if contact.mssante:
        point["extension"] = [
            {"url": section["mssante_extension"], "valueCoding": dict(section["mssante_type"])}
        ]
    return point


def origin_extension(
    rules: CoordinationRules, *, source: tuple[str, str] | None, added_by: str
) -> dict[str, Any]:
    """Who added a participant, and from which letter (R4 has no element for it)."""
    url = rules.section("care_team_merge").get(
        "origin_extension", "urn:liaison:careteam-participant-origin"
    )
    parts: list[dict[str, Any]] = [{"url": "addedBy", "valueString": added_by}]
    if source:
        source_identifier = {"system": source[0], "value": source[1]}
        parts.append({"url": "source", "valueIdentifier": source_identifier})
    return {"url": url, "extension": parts}


def coordinator_participant(
    coordinator: Coordinator, rules: CoordinationRules, *, member_url: str, territory_url: str,
    source: tuple[str, str] | None, since: str | None,
) -> dict[str, Any]:
    """The pathway coordinator as a CareTeam participant, acting for its territory's
    organisation (through which its CPTS reads the patient)."""
    participant: dict[str, Any] = {
        "role": [{"coding": [rules.coordinator.role.as_fhir()],
                  "text": rules.coordinator.role.display}],
        "member": {"reference": member_url, "display": coordinator.display},
        "onBehalfOf": {"reference": territory_url},
        "extension": [origin_extension(
            rules, source=source, added_by=f"coordination rule ({coordinator.territory_kind} "
                                           f"{coordinator.territory_id})")],
    }
    if since:
        participant["period"] = {"start": since}
    return participant


def assigned_by_a_coordinator(participant: dict[str, Any], rules: CoordinationRules) -> bool:
    """Whether a coordinator added this participant (no letter named them)."""
    section = rules.section("care_team_merge")
    url, assigned = section.get("origin_extension"), str(section.get("assigned_by") or "")
    return bool(assigned) and any(
        part.get("url") == "addedBy" and str(part.get("valueString", "")).startswith(assigned)
        for extension in participant.get("extension") or [] if extension.get("url") == url
        for part in extension.get("extension") or [])


def has_origin(participant: dict[str, Any], rules: CoordinationRules) -> bool:
    url = rules.section("care_team_merge").get("origin_extension")
    return any(e.get("url") == url for e in participant.get("extension") or [])


def participant_idnats(view: BundleView, care_team: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for participant in care_team.get("participant") or []:
        found |= view.idnats_of((participant.get("member") or {}).get("reference"))
    return found


def communication(
    view: BundleView,
    rules: CoordinationRules,
    *,
    letter: LetterSummary,
    recipient_url: str,
    recipient_key: str,
    reason: str,
) -> dict[str, Any]:
    """A Communication telling one professional about the letter (conditional create)."""
    section = rules.section("communication")
    patient_url = _url_of_first(view, "Patient")
    document_url = _url_of_first(view, "DocumentReference")
    care_plan_url = _url_of_first(view, "CarePlan")
    custodian = letter.custodian
    sender_url = (
        view.find_by_identifier("Organization", *custodian) if custodian else None
    ) or _url_of_first(view, "Organization")
    # same identifier scheme as the mapping's own Communications (document key / recipient)
    value = f"{letter.document_key}/{recipient_key}"
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "meta": {"profile": [knowledge().identifiers["profiles"]["Communication"]]},
        "identifier": [{"system": section["identifier_system"], "value": value}],
        "status": "completed",
        "category": [{"coding": [section["category"]]}],
        "recipient": [{"reference": recipient_url}],
        "payload": [{"contentString": reason}],
    }
    if getattr(letter, "effective_time", None):
        resource["sent"] = letter.effective_time
    encounter_url = _url_of_first(view, "Encounter")
    if encounter_url:
        resource["encounter"] = {"reference": encounter_url}
    if patient_url:
        resource["subject"] = {"reference": patient_url}
    if sender_url:
        resource["sender"] = {"reference": sender_url}
    about = [{"reference": u} for u in (care_plan_url, document_url) if u]
    if about:
        resource["about"] = about
    if document_url:
        resource["payload"].append({"contentReference": {"reference": document_url}})
    url = full_url("Communication", section["identifier_system"], value)
    request = create_if_absent("Communication", {"system": section["identifier_system"],
                                                 "value": value})
    view.add(resource, url, request)
    return resource


def _url_of_first(view: BundleView, resource_type: str) -> str | None:
    resource = view.first(resource_type)
    return view.full_url_of(resource) if resource is not None else None


def communicated_idnats(view: BundleView) -> set[str]:
    """idNat_PS of everyone a Communication of the bundle is addressed to."""
    found: set[str] = set()
    for resource in view.resources("Communication"):
        for recipient in resource.get("recipient") or []:
            found |= view.idnats_of(recipient.get("reference"))
    return found


def ensure_territory_organization(
    view: BundleView, coordinator: Coordinator, rules: CoordinationRules
) -> str:
    """The CPTS/DAC as an Organization whose identifier is the territory id.

    Referenced as the coordinator's `onBehalfOf`, it is what lets a coordinator token
    (`cpts` claim) read the patient in the record.
    """
    system = rules.section("coordinator").get("territory_identifier_system", "urn:liaison:cpts")
    value = coordinator.territory_id
    found = view.find_by_identifier("Organization", system, value)
    if found:
        return found
    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "identifier": [{"system": system, "value": value}],
        "active": True,
        "type": [{"text": coordinator.territory_kind}],
        "name": coordinator.organization_name or f"{coordinator.territory_kind} {value}",
    }
    request = create_if_absent("Organization", {"system": system, "value": value})
    return view.add(organization, full_url("Organization", system, value), request)
