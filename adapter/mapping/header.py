"""CDA header → Patient, Practitioner, PractitionerRole, Organization, RelatedPerson, Encounter."""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from adapter.cda import datatypes as cda
from adapter.cda.datatypes import child, children, ii, local_name, path
from adapter.errors import RefusedLetter
from adapter.mapping.bundle import PER_LETTER, SHARED
from adapter.mapping.context import Actor, Context
from adapter.mapping.directory_port import ContactPoint, OrganizationCard, ProfessionalCard
from adapter.mapping.identity import derived_uuid
from adapter.mapping.ins import ins_problem
from adapter.national_ids import national_system

_PROFESSION = re.compile(r"^G15_(\w+?)(?:/(\w+))?$")


# --- identifiers ------------------------------------------------------------------------------

def _typed(rule: dict[str, Any], value: str, use: str = "official") -> dict[str, Any]:
    return {"use": use, "type": {"coding": [rule["type"]]}, "system": rule["system"],
            "value": value}


def typed_identifiers(ctx: Context, ids: list[etree._Element], table: str) -> list[dict]:
    """FR Core typed identifiers for professional/organization ids (derived RPPS/FINESS too)."""
    rules = ctx.knowledge.identifiers[table]
    identifiers: list[dict] = []
    for element in ids:
        value = ii(element)
        if value is None or not value[1]:
            continue
        root, extension = value
        rule = rules.get(root)
        if rule is None:
            identifier = cda.ii_to_identifier(root, extension)
            if identifier.get("system"):
                identifiers.append(identifier)
            continue
        identifiers.append(_typed(rule, extension))
        derived = rule.get("derived")
        if derived and extension.startswith(derived["prefix"]) and len(extension) > 1:
            identifiers.append({"use": "official", "type": {"coding": [derived["type"]]},
                                "system": derived["system"],
                                "value": extension[len(derived["prefix"]):]})
    return identifiers


def _unidentified(ctx: Context, resource_type: str, element: etree._Element, label: str) -> dict:
    ctx.report.warning(
        f"{resource_type} without a usable identifier (nullFlavor or missing): identified within "
        "this letter set only.", element, code="incomplete")
    return {"system": ctx.knowledge.liaison_system("unidentified"),
            "value": derived_uuid(ctx.set_key, resource_type, label)}


# --- patient ----------------------------------------------------------------------------------

def map_patient(ctx: Context) -> dict[str, Any]:
    """Add the Patient; returns what the letter summary needs about it."""
    role = path(ctx.root, "recordTarget", "patientRole")
    if role is None:
        raise RefusedLetter("The CDA document has no recordTarget/patientRole.")
    rules = ctx.knowledge.identifiers
    identifiers: list[dict] = []
    ins: tuple[str, str] | None = None
    all_ids: list[tuple[str, str]] = []
    for element in children(role, "id"):
        value = ii(element)
        if value is None or not value[1]:
            ctx.report.warning("Patient identifier with a nullFlavor is not kept.", element)
            continue
        root, extension = value
        rule = rules["patient"].get(root)
        if rule:
            problem = ins_problem(extension) if rule.get("ins") else None
            if problem:  # a wrong key is a wrong person: never match anyone with it
                raise RefusedLetter(f"The patient's {rule['label']} is not valid: {problem}.")
            identifiers.append(_typed(rule, extension))
            if ins is None:
                ins = (rule["system"], extension)
        else:
            other = rules["patient_other"]
            identifiers.append({"use": other["use"], "type": {"coding": [other["type"]]},
                                "system": f"urn:oid:{root}", "value": extension})
        all_ids.append((identifiers[-1]["system"], extension))
    if not identifiers:
        raise RefusedLetter(
            "The letter's patient has no usable identifier (INS or IPP): it cannot be matched "
            "to a patient record."
        )
    patient_element = child(role, "patient")
    names = _fr_core_birth_names(ctx, cda.person_names(child(patient_element, "name")),
                                 child(patient_element, "name"))
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
    if names:
        patient["name"] = names
    telecom = cda.telecoms(role)
    if telecom:
        patient["telecom"] = telecom
    gender = child(patient_element, "administrativeGenderCode")
    if gender is not None and gender.get("code"):
        patient["gender"] = ctx.knowledge.valuesets["administrative_gender"].get(
            gender.get("code"), "unknown")
    birth = cda.ts_of(child(patient_element, "birthTime"))
    if birth:
        patient["birthDate"] = birth[:10]
    addresses = [a for a in (cda.address(e) for e in children(role, "addr")) if a]
    if addresses:
        patient["address"] = addresses
    birth_place = cda.address(path(patient_element, "birthplace", "place", "addr"))
    if birth_place:
        patient["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                                 "valueAddress": birth_place}]
    if ins is not None:
        key = {"system": ins[0], "value": ins[1]}
    else:
        key = _local_patient(ctx, all_ids[0])
        identifiers.append(key)
        ctx.report.warning(
            "The patient has no INS: identity not qualified. The patient is this hospital's "
            "only (keyed by its local identifier), never matched with another hospital's.",
            role)
    ctx.patient_url = ctx.builder.add(patient, key, SHARED)
    ctx.patient_display = _name_display(names)
    for guardian in children(patient_element, "guardian"):
        map_related_person(ctx, guardian, "guardianPerson", "GUARD")
    for element in patient_element if patient_element is not None else []:
        if isinstance(element.tag, str) and local_name(element) not in (
                "name", "administrativeGenderCode", "birthTime", "guardian", "birthplace"):
            ctx.report.unmapped(element, "Patient element not mapped.")
    postal = next((a.get("postalCode") for a in addresses if a.get("postalCode")), None)
    return {"identifiers": all_ids, "ins": ins, "postal_code": postal}


def _fr_core_birth_names(ctx: Context, names: list[dict], element: etree._Element | None
                         ) -> list[dict]:
    """FR Core's birth name: `given` is the first birth given name (an INS trait), every birth
    given name goes to the birth-list extension."""
    first = next((text for part in (element if element is not None else [])
                  if isinstance(part.tag, str) and local_name(part) == "given"
                  and part.get("qualifier") == "BR" and (text := cda.text_of(part))), None)
    official = next((name for name in names if name.get("use") == "official"), None)
    if official is None or first is None:
        return names
    listed = " ".join(official.get("given") or [])
    official["given"] = [first]
    if listed and listed != first:
        official["extension"] = [{"url": ctx.knowledge.identifiers["birth_list_given_name"],
                                  "valueString": listed}]
    return names


def _local_patient(ctx: Context, local: tuple[str, str]) -> dict[str, str]:
    """The identity of a patient known by a hospital's own identifier only: scoped to the
    hospital (its custodian), since an IPP identifies nobody elsewhere."""
    custodian = ii(path(ctx.root, "custodian", "assignedCustodian",
                        "representedCustodianOrganization", "id"))
    hospital = "^".join(part for part in custodian if part) if custodian else "no-custodian"
    return {"system": ctx.knowledge.liaison_system("local_patient"),
            "value": f"{hospital}/{local[0]}|{local[1]}"}


def _name_display(names: list[dict]) -> str:
    if not names:
        return ""
    name = next((n for n in names if n.get("use") == "usual"), names[0])
    return " ".join([*name.get("given", [])[:1], name.get("family", "")]).strip()


# --- related persons --------------------------------------------------------------------------

def map_related_person(ctx: Context, entity: etree._Element, person_tag: str, role_key: str
                       ) -> Actor | None:
    person = child(entity, person_tag)
    names = cda.person_names(child(person, "name"))
    if not names:
        ctx.report.unmapped(entity, "Related person without a name is not mapped.")
        return None
    related: dict[str, Any] = {"resourceType": "RelatedPerson", "active": True}
    role = ctx.knowledge.role(role_key)
    relationship = [{"coding": [{"system": role["system"], "code": role["code"],
                                 "display": role["display"]}]}]
    code = cda.codeable(child(entity, "code"), ctx.uris)
    if code:
        relationship.append(code)
    display = _name_display(names)
    identifier = {"system": ctx.knowledge.liaison_system("related_person"),
                  "value": derived_uuid(ctx.set_key, ctx.patient_url, role_key, display)}
    related.update({"identifier": [identifier], "patient": {"reference": ctx.patient_url},
                    "relationship": relationship, "name": names})
    telecom = cda.telecoms(entity)
    if telecom:
        related["telecom"] = telecom
    addresses = [a for a in (cda.address(e) for e in children(entity, "addr")) if a]
    if addresses:
        related["address"] = addresses
    url = ctx.builder.add(related, identifier, SHARED)
    return ctx.join(Actor(member_url=url, display=display, key=identifier["value"]), role_key)


def map_informants(ctx: Context) -> None:
    classes = ctx.knowledge.roles["related_person_classes"]
    for informant in children(ctx.root, "informant"):
        related = child(informant, "relatedEntity")
        if related is None:
            ctx.report.unmapped(informant, "Informant that is not a related person is not mapped.")
            continue
        role_key = classes.get(related.get("classCode") or "")
        if role_key is None:
            ctx.report.unmapped(related, f"Related person of class {related.get('classCode')} "
                                         "is not mapped.")
            continue
        map_related_person(ctx, related, "relatedPerson", role_key)


# --- organizations ----------------------------------------------------------------------------

def map_organization(ctx: Context, element: etree._Element | None) -> str | None:
    if element is None or element.get("nullFlavor"):
        return None
    identifiers = typed_identifiers(ctx, children(element, "id"), "organization")
    name = cda.text_of(child(element, "name"))
    card: OrganizationCard | None = None
    if identifiers and ctx.directory is not None:
        card = ctx.directory.organization(identifiers[0]["system"], identifiers[0]["value"])
        if card is None:
            ctx.report.warning(f"Organization {identifiers[0]['value']} is not in the directory: "
                               "kept as written in the letter.", element, code="not-found")
    if not identifiers:
        if not name:
            return None
        key = _unidentified(ctx, "Organization", element, name)
        identifiers = [key]
    organization: dict[str, Any] = {"resourceType": "Organization", "identifier": identifiers,
                                    "active": True}
    if card and card.name:
        if name and name.strip().lower() != card.name.strip().lower():
            ctx.report.note(f"Organization {identifiers[0]['value']}: named {name!r} in the "
                            f"letter, {card.name!r} in the directory (kept).", element)
        name = card.name
    if name:
        organization["name"] = name
    sector = child(element, "standardIndustryClassCode")
    if sector is not None:
        concept = cda.codeable(sector, ctx.uris)
        if concept:
            organization["type"] = [concept]
    telecom = cda.telecoms(element)
    if card:
        telecom = _merge_telecom(ctx, telecom, card.telecom)
    if telecom:
        organization["telecom"] = telecom
    addresses = [a for a in (cda.address(e) for e in children(element, "addr")) if a]
    if addresses:
        organization["address"] = addresses
    key = identifiers[0]
    return ctx.builder.add(organization, {"system": key["system"], "value": key["value"]}, SHARED)


# --- professionals ----------------------------------------------------------------------------

def _profession(ctx: Context, code: etree._Element | None) -> list[dict]:
    """TRE_G15 'G15_10/SM26' (profession/specialty) as the Annuaire's two codings."""
    if code is None or not code.get("code"):
        return []
    terminology = ctx.knowledge.terminology
    display = (code.get("displayName") or "").split(" - ", 1)
    match = _PROFESSION.match(code.get("code"))
    if code.get("codeSystem") != terminology["profession_oid"] or not match:
        concept = cda.codeable(code, ctx.uris)
        return [concept] if concept else []
    profession = {"system": terminology["profession_code_system"], "code": match.group(1)}
    if display[0]:
        profession["display"] = display[0].strip()
    concepts = [{"coding": [profession]}]
    if match.group(2):
        specialty = {"system": terminology["specialty_code_system"], "code": match.group(2)}
        if len(display) > 1:
            specialty["display"] = display[1].strip()
        concepts.append({"coding": [specialty]})
    return concepts


def _mssante(ctx: Context, point: dict[str, Any]) -> dict[str, Any]:
    rules = ctx.knowledge.identifiers["mssante"]
    point = dict(point)
    point["extension"] = [
        {"url": rules["email_type_extension"], "valueCoding": rules["email_type"]},
        {"url": rules["metadata_extension"],
         "extension": [{"url": "type",
                        "valueCodeableConcept": {"coding": [rules["mailbox_type"]]}}]},
    ]
    return point


def _type_telecom(ctx: Context, points: list[dict]) -> list[dict]:
    suffix = ctx.knowledge.identifiers["mssante"]["domain_suffix"]
    return [_mssante(ctx, p) if p["system"] == "email" and p["value"].lower().endswith(suffix)
            else p for p in points]


def _merge_telecom(ctx: Context, points: list[dict], cards: tuple[ContactPoint, ...]
                   ) -> list[dict]:
    merged = list(points)
    for card in cards:
        point: dict[str, Any] = {"system": card.system, "value": card.value}
        if card.use:
            point["use"] = card.use
        if card.mssante:
            point = _mssante(ctx, point)
        if all(p.get("value") != card.value for p in merged):
            merged.append(point)
    return merged


def _card_name(card: ProfessionalCard) -> dict[str, Any] | None:
    if not card.family:
        return None
    name: dict[str, Any] = {"family": card.family}
    if card.given:
        name["given"] = list(card.given)
    if card.prefix:
        name["prefix"] = [card.prefix]
    return name


def _coding_concept(coding: Any) -> dict[str, Any]:
    result = {"system": coding.system, "code": coding.code}
    if coding.display:
        result["display"] = coding.display
    return {"coding": [result]}


def map_actor(ctx: Context, entity: etree._Element | None, person_tag: str, org_tag: str
              ) -> Actor | None:
    """A professional block: assignedAuthor, assignedEntity, associatedEntity, intendedRecipient."""
    if entity is None or entity.get("nullFlavor"):
        return None
    person = child(entity, person_tag)
    names = cda.person_names(child(person, "name"))
    identifiers = typed_identifiers(ctx, children(entity, "id"), "professional")
    organization_url = map_organization(ctx, child(entity, org_tag))
    if person is None and not identifiers:
        if organization_url is None:
            ctx.report.unmapped(entity, "Participant without person, identifier or organization.")
            return None
        organization = ctx.builder.resource(organization_url)
        return Actor(member_url=organization_url, display=organization.get("name"),
                     organization_url=organization_url, key=organization_url)
    display = _name_display(names)
    idnat_ps = national_system("professional")
    idnat = next((i["value"] for i in identifiers if i["system"] == idnat_ps), None)
    card: ProfessionalCard | None = None
    if identifiers and ctx.directory is not None:
        card = ctx.directory.professional(identifiers[0]["system"], identifiers[0]["value"])
        if card is None and len(identifiers) > 1:
            card = ctx.directory.professional(identifiers[1]["system"], identifiers[1]["value"])
        if card is None:
            ctx.report.warning(f"Professional {identifiers[0]['value']} is not in the directory: "
                               "kept as written in the letter.", entity, code="not-found")
    if not identifiers:
        identifiers = [_unidentified(ctx, "Practitioner", entity, display or "?")]
    key = {"system": identifiers[0]["system"], "value": identifiers[0]["value"]}
    practitioner: dict[str, Any] = {"resourceType": "Practitioner", "identifier": identifiers,
                                    "active": True}
    card_name = _card_name(card) if card else None
    if card_name:
        practitioner["name"] = [card_name]
    elif names:
        practitioner["name"] = names[:1]
    practitioner_url = _add_practitioner(ctx, practitioner, key, entity)
    if card and card.organization and organization_url is None:
        organization_url = _organization_from_card(ctx, card.organization)
    role: dict[str, Any] = {"resourceType": "PractitionerRole", "active": True,
                            "practitioner": {"reference": practitioner_url}}
    if display:
        role["practitioner"]["display"] = display
    if organization_url:
        role["organization"] = {"reference": organization_url}
    codes = _profession(ctx, child(entity, "code"))
    if card:
        codes = [_coding_concept(c) for c in (card.profession, card.specialty) if c] or codes
    if codes:
        role["code"] = codes[:1]
        if len(codes) > 1:
            role["specialty"] = codes[1:]
    telecom = _type_telecom(ctx, cda.telecoms(entity))
    if card:
        telecom = _merge_telecom(ctx, telecom, card.telecom)
    if telecom:
        role["telecom"] = telecom
    role_key = {"system": ctx.knowledge.liaison_system("practitioner_role"),
                "value": f"{key['value']}@{_org_key(ctx, organization_url)}"}
    role["identifier"] = [role_key]
    role_url = ctx.builder.add(role, role_key, SHARED)
    return Actor(member_url=role_url, display=display or None, idnat=idnat,
                 practitioner_url=practitioner_url, organization_url=organization_url,
                 profession=codes[0] if codes else None, key=key["value"])


def _org_key(ctx: Context, organization_url: str | None) -> str:
    if organization_url is None:
        return "-"
    return ctx.builder.resource(organization_url)["identifier"][0]["value"]


def _add_practitioner(ctx: Context, practitioner: dict, key: dict, entity: etree._Element) -> str:
    from adapter.mapping.identity import full_url

    url = full_url("Practitioner", key["system"], key["value"])
    if url in ctx.builder.urls():
        known = ctx.builder.resource(url).get("name", [{}])[0].get("family")
        new = practitioner.get("name", [{}])[0].get("family")
        if known and new and known.upper() != new.upper():
            ctx.report.warning(
                f"The identifier {key['value']} names different people in the letter "
                f"({known}, {new}): the first name met is kept.", entity, code="conflict")
        practitioner = {k: v for k, v in practitioner.items() if k != "name"}
    return ctx.builder.add(practitioner, key, SHARED)


def _organization_from_card(ctx: Context, card: OrganizationCard) -> str | None:
    if not card.identifiers:
        return None
    identifiers = [{"system": s, "value": v} for s, v in card.identifiers]
    organization: dict[str, Any] = {"resourceType": "Organization", "identifier": identifiers,
                                    "active": card.active}
    if card.name:
        organization["name"] = card.name
    telecom = _merge_telecom(ctx, [], card.telecom)
    if telecom:
        organization["telecom"] = telecom
    return ctx.builder.add(organization, identifiers[0], SHARED)


# --- header participations --------------------------------------------------------------------

def map_header_people(ctx: Context) -> None:
    """Authors, custodian, legal authenticator, médecin traitant, recipients, performers."""
    custodian = path(ctx.root, "custodian", "assignedCustodian", "representedCustodianOrganization")
    ctx.custodian_url = map_organization(ctx, custodian)
    for author in children(ctx.root, "author"):
        actor = map_actor(ctx, child(author, "assignedAuthor"), "assignedPerson",
                          "representedOrganization")
        if actor is None:
            continue
        actor = ctx.join(actor, "author")
        if ctx.author is None:
            ctx.author = actor
    legal = path(ctx.root, "legalAuthenticator", "assignedEntity")
    actor = map_actor(ctx, legal, "assignedPerson", "representedOrganization")
    if actor:
        ctx.join(actor, "legal_authenticator")
        ctx.signed = cda.ts_of(path(ctx.root, "legalAuthenticator", "time"))
    roles = ctx.knowledge.roles
    for participant in children(ctx.root, "participant"):
        function = child(participant, "functionCode")
        code = function.get("code") if function is not None else None
        actor = map_actor(ctx, child(participant, "associatedEntity"), "associatedPerson",
                          "scopingOrganization")
        if actor is None:
            continue
        role_key = roles["participant_functions"].get(code or "", "participant")
        actor = ctx.join(actor, role_key)
        if code in roles["pcp_function_codes"] and ctx.pcp is None:
            ctx.pcp = actor
    for recipient in children(ctx.root, "informationRecipient"):
        actor = map_actor(ctx, child(recipient, "intendedRecipient"), "informationRecipient",
                          "receivedOrganization")
        if actor is None:
            continue
        actor = ctx.join(actor, "recipient")
        if actor not in ctx.recipients:
            ctx.recipients.append(actor)
    for performer in ctx.root.iterfind("./{*}documentationOf/{*}serviceEvent/{*}performer"):
        actor = map_actor(ctx, child(performer, "assignedEntity"), "assignedPerson",
                          "representedOrganization")
        if actor:
            ctx.join(actor, "performer")
    if ctx.pcp is None:
        ctx.report.note("The letter names no médecin traitant (participant functionCode PCP): "
                        "no PCP in the care team and no PCP Communication.")


# --- encounter --------------------------------------------------------------------------------

def map_encounter(ctx: Context) -> None:
    encounter_element = path(ctx.root, "componentOf", "encompassingEncounter")
    service_event = path(ctx.root, "documentationOf", "serviceEvent")
    period = cda.ivl_ts(child(encounter_element, "effectiveTime")) or cda.ivl_ts(
        child(service_event, "effectiveTime"))
    if encounter_element is None and service_event is None:
        return
    classes = ctx.knowledge.valuesets["encounter_class"]
    event_code = child(service_event, "code")
    class_code = event_code.get("code") if event_code is not None else None
    identifier = {"system": ctx.knowledge.liaison_system("encounter"), "value": ctx.set_key}
    encounter: dict[str, Any] = {
        "resourceType": "Encounter", "identifier": [identifier],
        "status": "finished" if period and period.get("end") else "in-progress",
        "class": classes.get(class_code or "", classes["default"]),
        "subject": {"reference": ctx.patient_url},
    }
    facility = path(encounter_element, "location", "healthCareFacility", "code")
    facility_type = cda.codeable(facility, ctx.uris)
    if facility_type:
        encounter["type"] = [facility_type]
    performers = [a for a in ctx.members.values() if "performer" in a.roles]
    if performers:
        encounter["participant"] = [{"individual": {"reference": a.member_url}}
                                    for a in performers if a.practitioner_url]
        if not encounter["participant"]:
            del encounter["participant"]
    if period:
        encounter["period"] = period
    if ctx.custodian_url:
        encounter["serviceProvider"] = {"reference": ctx.custodian_url}
    stay_id = cda.ii_identifier(child(encounter_element, "id"))
    if stay_id and stay_id.get("system") and stay_id.get("value"):
        encounter["identifier"].append(stay_id)  # the hospital's own stay number
        ctx.stay_id = (stay_id["system"], stay_id["value"])
    ctx.encounter_url = ctx.builder.add(encounter, identifier, PER_LETTER)
    for parent, used in ((encounter_element, {"id", "code", "effectiveTime", "location"}),
                         (service_event, {"code", "effectiveTime", "performer"})):
        for element in parent if parent is not None else []:
            if isinstance(element.tag, str) and local_name(element) not in used:
                ctx.report.unmapped(element, f"Stay element {local_name(element)} "
                                             "is not mapped.")


def finish_encounter(ctx: Context) -> None:
    """Admission and discharge modes come from the stay-summary section, read after the header."""
    if ctx.encounter_url is None:
        return
    hospitalization: dict[str, Any] = {}
    if ctx.admit_source:
        hospitalization["admitSource"] = ctx.admit_source
    if ctx.discharge_disposition:
        hospitalization["dischargeDisposition"] = ctx.discharge_disposition
    if hospitalization:
        ctx.builder.resource(ctx.encounter_url)["hospitalization"] = hospitalization


_HANDLED_HEADER = {
    "realmCode", "typeId", "templateId", "id", "code", "title", "effectiveTime",
    "confidentialityCode", "languageCode", "setId", "versionNumber", "recordTarget", "author",
    "informant", "custodian", "informationRecipient", "legalAuthenticator", "participant",
    "documentationOf", "componentOf", "component", "relatedDocument",
}


def report_unmapped_header(ctx: Context) -> None:
    for element in ctx.root:
        if isinstance(element.tag, str) and local_name(element) not in _HANDLED_HEADER:
            ctx.report.unmapped(element, f"Header element {local_name(element)} "
                                         "is not mapped.")
