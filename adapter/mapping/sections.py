"""Structured body sections → resources, per the section model of `mappings/<model>.yaml`.

Each handler is named by the `becomes:` of a section; entries a handler does not map are
reported with their XPath, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree

from adapter.cda import datatypes as cda
from adapter.cda.datatypes import XSI_TYPE, child, children, local_name
from adapter.mapping.bundle import PER_LETTER
from adapter.mapping.context import Context
from adapter.mapping.items import business_key

Handler = Callable[[Context, etree._Element, dict[str, Any]], None]


_WITH_ID = etree.XPath("descendant::*[@ID]")  # compiled once (libxml2, not ElementPath)


def narrative_index(root: etree._Element) -> dict[str, str]:
    """Texts of every narrative element carrying an ID (targets of <reference value="#ID"/>)."""
    index: dict[str, str] = {}
    for element in _WITH_ID(root):
        text = cda.text_of(element)
        if text:
            index[element.get("ID")] = text
    return index


def _own_identifiers(element: etree._Element) -> list[dict]:
    """The identifiers the hospital gave a CDA entry."""
    identifiers: list[dict] = []
    for id_element in children(element, "id"):
        identifier = cda.ii_identifier(id_element)
        if identifier and identifier.get("system") and identifier not in identifiers:
            identifiers.append(identifier)
    return identifiers


def _add_item(ctx: Context, element: etree._Element, kind: str, resource: dict[str, Any]
              ) -> tuple[str, dict[str, str]]:
    """Add an item of the letter under its identity across versions (adapter/mapping/items.py):
    a conditional update, so the next version of the letter updates it; (fullUrl, key)."""
    own = cda.ii(child(element, "id"))
    own_id = "^".join(part for part in own if part) if own else None
    key = ctx.item_keys.identifier(kind, own_id, business_key(ctx.knowledge, resource))
    resource["identifier"] = [key, *resource.get("identifier", [])]
    return ctx.builder.add(resource, key, PER_LETTER), key


def _report_children(ctx: Context, element: etree._Element, used: set[str], what: str) -> None:
    for part in element:
        if isinstance(part.tag, str) and local_name(part) not in used:
            ctx.report.unmapped(part, f"{what}: element {local_name(part)} "
                                      "is not mapped.")


def _text(ctx: Context, element: etree._Element) -> str | None:
    return cda.original_text(element, ctx.narrative)


def _number(raw: str | None) -> int | float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def _quantity(element: etree._Element | None) -> dict[str, Any] | None:
    if element is None or element.get("nullFlavor") or element.get("value") is None:
        return None
    value = _number(element.get("value"))
    if value is None:
        return None
    quantity: dict[str, Any] = {"value": value}
    unit = element.get("unit")
    if unit and unit != "1":
        quantity.update({"unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
    return quantity


def _range_or_quantity(element: etree._Element | None) -> tuple[str, dict] | None:
    if element is None:
        return None
    if element.get("value") is not None:
        quantity = _quantity(element)
        return ("Quantity", quantity) if quantity else None
    low, high = _quantity(child(element, "low")), _quantity(child(element, "high"))
    if low and high and low == high:
        return "Quantity", low
    if low or high:
        return "Range", {k: v for k, v in (("low", low), ("high", high)) if v}
    return None


# --- handlers ---------------------------------------------------------------------------------

def careplan_description(ctx: Context, section: etree._Element, model: dict) -> None:
    text = cda.text_of(child(section, "text"))
    if text:
        ctx.description = f"{ctx.description} {text}" if ctx.description else text
    _report_entries(ctx, section, "Entry of the reason section is carried by its narrative only.")


def _section_note(ctx: Context, section: etree._Element, model: dict) -> None:
    text = cda.text_of(child(section, "text"))
    title = cda.text_of(child(section, "title")) or model["name"]
    if text:
        ctx.notes.append(f"{title} : {text}")


def careplan_note(ctx: Context, section: etree._Element, model: dict) -> None:
    _section_note(ctx, section, model)
    _report_entries(ctx, section, f"Entry carried as a CarePlan note ({model['name']}), "
                                  "not mapped as a resource.")


def _report_entries(ctx: Context, section: etree._Element, message: str) -> None:
    for entry in children(section, "entry"):
        ctx.report.unmapped(entry, message)


def document_status(ctx: Context, section: etree._Element, model: dict) -> None:
    statuses = ctx.knowledge.valuesets["document_status"]
    for entry in children(section, "entry"):
        value = child(child(entry, "observation"), "value")
        code = value.get("code") if value is not None else None
        ctx.doc_status = statuses.get(code or "", statuses["default"])


def _observation_value(ctx: Context, value: etree._Element | None) -> str | None:
    if value is None:
        return None
    kind = (value.get(XSI_TYPE) or "").split(":")[-1]
    if kind == "BL":
        return {"true": "Oui", "false": "Non"}.get(value.get("value") or "")
    if kind in ("CD", "CE", "CV", "CO"):
        concept = cda.codeable(value, ctx.uris, ctx.narrative)
        return concept.get("text") if concept else None
    if kind in ("PQ", "INT", "REAL"):
        return " ".join(filter(None, [value.get("value"), value.get("unit")]))
    return cda.text_of(value)


def stay_summary(ctx: Context, section: etree._Element, model: dict) -> None:
    rules = ctx.section_rules["stay_summary"]
    for entry in children(section, "entry"):
        observation = child(entry, "observation")
        if observation is None:
            ctx.report.unmapped(entry, "Stay-summary entry that is not an observation.")
            continue
        code = child(observation, "code")
        code_value = code.get("code") if code is not None else None
        value = child(observation, "value")
        if code_value == rules["admission_mode"]:
            ctx.admit_source = cda.codeable(value, ctx.uris, ctx.narrative)
        elif code_value == rules["discharge_mode"]:
            ctx.discharge_disposition = cda.codeable(value, ctx.uris, ctx.narrative)
        else:
            label = code.get("displayName") if code is not None else None
            text = _observation_value(ctx, value)
            if label and text:
                when = cda.ts_of(child(observation, "effectiveTime"))
                ctx.notes.append(f"{' '.join(label.split())} : {text}"
                                 + (f" ({cda.french_date(when)})" if when else ""))
                flag = (rules.get("flags") or {}).get(code_value or "")
                if flag and text.strip().lower() not in rules.get("negative_values", []):
                    _flag(ctx, observation, flag, text)
            else:
                ctx.report.unmapped(observation, "Stay-summary observation without a value.")
        _report_children(ctx, observation, {"templateId", "id", "code", "text", "statusCode",
                                            "effectiveTime", "value", "author"},
                         "Stay-summary observation")


def _flag(ctx: Context, observation: etree._Element, rule: dict, value: str) -> None:
    """An alert carers see with the plan (e.g. multi-resistant bacteria: isolation at home)."""
    concept = cda.codeable(child(observation, "code"), ctx.uris) or {}
    concept["text"] = f"{rule['text']} ({value})"
    flag: dict[str, Any] = {"resourceType": "Flag", "status": "active",
                            "category": [{"coding": [rule["category"]]}], "code": concept,
                            "subject": {"reference": ctx.patient_url}}
    start = cda.ts_of(child(observation, "effectiveTime"))
    if start:
        flag["period"] = {"start": start}
    if ctx.encounter_url:
        flag["encounter"] = {"reference": ctx.encounter_url}
    if ctx.author:
        flag["author"] = {"reference": ctx.author.member_url}
    ctx.supporting.append(_add_item(ctx, observation, "flag", flag)[0])


_PERIOD_UNITS_DEFAULT = "d"


def _dosage(ctx: Context, administration: etree._Element) -> dict[str, Any]:
    dosage: dict[str, Any] = {}
    text = _text(ctx, administration)
    if text:
        dosage["text"] = text
    repeat: dict[str, Any] = {}
    for effective in children(administration, "effectiveTime"):
        kind = (effective.get(XSI_TYPE) or "IVL_TS").split(":")[-1]
        if kind == "IVL_TS":
            bounds = cda.ivl_ts(effective)
            if bounds:
                repeat["boundsPeriod"] = bounds
        elif kind == "PIVL_TS":
            period = child(effective, "period")
            value = _number(period.get("value")) if period is not None else None
            if period is not None and value is not None:
                units = ctx.knowledge.valuesets["period_units"]
                repeat.update({"frequency": 1, "period": value,
                               "periodUnit": units.get(period.get("unit") or "",
                                                       _PERIOD_UNITS_DEFAULT)})
        else:
            ctx.report.unmapped(effective, f"Medication timing {kind} is not mapped.")
    if repeat:
        dosage["timing"] = {"repeat": repeat}
    route = cda.codeable(child(administration, "routeCode"), ctx.uris)
    if route:
        dosage["route"] = route
    dose_and_rate: dict[str, Any] = {}
    dose = _range_or_quantity(child(administration, "doseQuantity"))
    if dose:
        dose_and_rate[f"dose{dose[0]}"] = dose[1]
    rate = _range_or_quantity(child(administration, "rateQuantity"))
    if rate:
        dose_and_rate[f"rate{rate[0]}"] = rate[1]
    if dose_and_rate:
        dosage["doseAndRate"] = [dose_and_rate]
    max_dose = child(administration, "maxDoseQuantity")
    numerator = _quantity(child(max_dose, "numerator"))
    denominator = _quantity(child(max_dose, "denominator"))
    if numerator and denominator:
        dosage["maxDosePerPeriod"] = {"numerator": numerator, "denominator": denominator}
    return dosage


def medication_request(ctx: Context, administration: etree._Element) -> str | None:
    medication = _medication(ctx, administration)
    if medication is None:
        ctx.report.unmapped(administration, "Treatment without a medication code or name.")
        return None
    identifiers = _own_identifiers(administration)
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest", "identifier": identifiers, "status": "active",
        "intent": "order",
        "category": [{"coding": [ctx.knowledge.valuesets["medication_request_category"]]}],
        "medicationCodeableConcept": medication, "subject": {"reference": ctx.patient_url},
    }
    if ctx.encounter_url:
        request["encounter"] = {"reference": ctx.encounter_url}
    if ctx.effective:
        request["authoredOn"] = ctx.effective
    if ctx.author:
        request["requester"] = {"reference": ctx.author.member_url}
    dosage = _dosage(ctx, administration)
    if dosage:
        request["dosageInstruction"] = [dosage]
    _report_children(ctx, administration, {
        "templateId", "id", "code", "text", "statusCode", "effectiveTime", "routeCode",
        "doseQuantity", "rateQuantity", "maxDoseQuantity", "consumable", "author"},
        "Treatment")
    return _add_item(ctx, administration, "medication", request)[0]


def _medication(ctx: Context, administration: etree._Element) -> dict[str, Any] | None:
    """The drug of a FR-Traitement entry (its code, its name as text); None: not said."""
    material = cda.path(administration, "consumable", "manufacturedProduct",
                        "manufacturedMaterial")
    medication = cda.codeable(child(material, "code"), ctx.uris, ctx.narrative)
    name = cda.text_of(child(material, "name"))
    if medication is None and name is None:
        return None
    medication = medication or {}
    if name:
        medication["text"] = name
    return medication


def stopped_medications(ctx: Context, section: etree._Element, model: dict) -> None:
    """Drugs stopped during the stay: statements carers must know (not to restart them)."""
    _section_note(ctx, section, model)
    for entry in children(section, "entry"):
        administration = child(entry, "substanceAdministration")
        medication = _medication(ctx, administration) if administration is not None else None
        if administration is None or medication is None:
            ctx.report.unmapped(entry, "Stopped treatment without a medication code or name.")
            continue
        statement: dict[str, Any] = {
            "resourceType": "MedicationStatement", "identifier": _own_identifiers(administration),
            "status": "stopped", "medicationCodeableConcept": medication,
            "subject": {"reference": ctx.patient_url},
        }
        if ctx.encounter_url:
            statement["context"] = {"reference": ctx.encounter_url}
        period = next((cda.ivl_ts(e) for e in children(administration, "effectiveTime")
                       if (e.get(XSI_TYPE) or "IVL_TS").split(":")[-1] == "IVL_TS"), None)
        if period:
            statement["effectivePeriod"] = period
        if ctx.effective:
            statement["dateAsserted"] = ctx.effective
        dosage = _dosage(ctx, administration)
        if dosage:
            statement["dosage"] = [dosage]
        ctx.supporting.append(
            _add_item(ctx, administration, "stopped-medication", statement)[0])


def medication_requests(ctx: Context, section: etree._Element, model: dict) -> None:
    for entry in children(section, "entry"):
        administration = child(entry, "substanceAdministration")
        if administration is None:
            ctx.report.unmapped(entry, "Treatment entry that is not a substanceAdministration.")
            continue
        url = medication_request(ctx, administration)
        if url:
            ctx.activities.append(url)


def _service_request(ctx: Context, act: etree._Element, kind: str) -> str | None:
    code = cda.codeable(child(act, "code"), ctx.uris, ctx.narrative)
    value = child(act, "value")
    detail = _observation_value(ctx, value) if value is not None else None
    text = _text(ctx, act) or detail
    if code is None and text is None:
        ctx.report.unmapped(act, "Planned act without a code or a text.")
        return None
    concept = code or {}
    if text:
        concept["text"] = text
    identifiers = _own_identifiers(act)
    statuses = ctx.knowledge.valuesets["request_status"]
    status_code = child(act, "statusCode")
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest", "identifier": identifiers,
        "status": statuses.get(status_code.get("code") if status_code is not None else "",
                               statuses["default"]),
        "intent": "plan", "code": concept, "subject": {"reference": ctx.patient_url},
    }
    priority = child(act, "priorityCode")
    if priority is not None and priority.get("code"):
        priorities = ctx.knowledge.valuesets["priority"]
        request["priority"] = priorities.get(priority.get("code"), priorities["default"])
    if ctx.encounter_url:
        request["encounter"] = {"reference": ctx.encounter_url}
    when = cda.ivl_ts(child(act, "effectiveTime"))
    if when and set(when) == {"start"}:
        request["occurrenceDateTime"] = when["start"]
    elif when:
        request["occurrencePeriod"] = when
    if ctx.effective:
        request["authoredOn"] = ctx.effective
    if ctx.author:
        request["requester"] = {"reference": ctx.author.member_url}
    if detail and detail != text:
        request["note"] = [{"text": detail}]
    _report_children(ctx, act, {"templateId", "id", "code", "text", "statusCode",
                                "effectiveTime", "priorityCode", "value", "author"},
                     "Planned act")
    return _add_item(ctx, act, kind, request)[0]


def _appointment(ctx: Context, encounter: etree._Element) -> str:
    identifiers = _own_identifiers(encounter)
    appointment: dict[str, Any] = {
        "resourceType": "Appointment", "identifier": identifiers, "status": "proposed",
        "participant": [{"actor": {"reference": ctx.patient_url}, "status": "needs-action"}],
    }
    kind = cda.codeable(child(encounter, "code"), ctx.uris)
    if kind:
        appointment["serviceType"] = [kind]
    text = _text(ctx, encounter)
    if text:
        appointment["description"] = text
    priority = child(encounter, "priorityCode")
    if priority is not None and priority.get("displayName"):
        appointment["comment"] = priority.get("displayName")
    when = cda.ivl_ts(child(encounter, "effectiveTime"))
    if when:
        appointment["requestedPeriod"] = [when]
    if ctx.effective:
        appointment["created"] = ctx.effective[:10]
    _report_children(ctx, encounter, {"templateId", "id", "code", "text", "effectiveTime",
                                      "priorityCode"}, "Meeting to organise")
    return _add_item(ctx, encounter, "appointment", appointment)[0]


def _device_request(ctx: Context, supply: etree._Element) -> str | None:
    device = cda.path(supply, "participant", "participantRole", "playingDevice", "code")
    code = cda.codeable(device, ctx.uris, ctx.narrative) or (
        {"text": _text(ctx, supply)} if _text(ctx, supply) else None)
    if code is None:
        ctx.report.unmapped(supply, "Device request without a device code.")
        return None
    identifiers = _own_identifiers(supply)
    request = {"resourceType": "DeviceRequest", "identifier": identifiers, "status": "active",
               "intent": "plan", "codeCodeableConcept": code,
               "subject": {"reference": ctx.patient_url}}
    return _add_item(ctx, supply, "device-request", request)[0]


def plan_activities(ctx: Context, section: etree._Element, model: dict) -> None:
    kinds = ctx.section_rules["plan_entries"]
    for entry in children(section, "entry"):
        act = next((e for e in entry if isinstance(e.tag, str)), None)
        name = local_name(act) if act is not None else ""
        target = kinds.get(name)
        url: str | None = None
        if target == "ServiceRequest":
            url = _service_request(ctx, act, name)
        elif target == "Appointment":
            url = _appointment(ctx, act)
        elif target == "MedicationRequest":
            url = medication_request(ctx, act)
        elif target == "DeviceRequest":
            url = _device_request(ctx, act)
        else:
            ctx.report.unmapped(entry, f"Plan-of-care entry {name} is not mapped.")
        if url:
            ctx.activities.append(url)


def devices(ctx: Context, section: etree._Element, model: dict) -> None:
    for entry in children(section, "entry"):
        supply = child(entry, "supply")
        role = cda.path(supply, "participant", "participantRole")
        code = cda.codeable(cda.path(role, "playingDevice", "code"), ctx.uris, ctx.narrative)
        if supply is None or code is None:
            ctx.report.unmapped(entry, "Device entry without a device code.")
            continue
        identifiers = _own_identifiers(supply)
        device: dict[str, Any] = {"resourceType": "Device", "identifier": identifiers,
                                  "type": code, "patient": {"reference": ctx.patient_url}}
        udi = cda.ii(child(role, "id"))
        if udi and udi[1]:
            device["udiCarrier"] = [{"carrierHRF": udi[1]}]
        device_url, key = _add_item(ctx, supply, "device", device)
        use_key = {"system": key["system"], "value": f"{key['value']}/use"}
        statement: dict[str, Any] = {
            "resourceType": "DeviceUseStatement", "identifier": [use_key], "status": "active",
            "subject": {"reference": ctx.patient_url}, "device": {"reference": device_url},
        }
        period = cda.ivl_ts(child(supply, "effectiveTime"))
        if period:
            statement["timingPeriod"] = period
        if ctx.effective:
            statement["recordedOn"] = ctx.effective
        ctx.supporting.append(ctx.builder.add(statement, use_key, PER_LETTER))
        _report_children(ctx, supply, {"templateId", "id", "effectiveTime", "participant"},
                         "Device")


def allergies(ctx: Context, section: etree._Element, model: dict) -> None:
    sets = ctx.knowledge.valuesets
    mapped = 0
    for observation in section.iterfind("./{*}entry/{*}act/{*}entryRelationship/{*}observation"):
        if observation.get("negationInd") == "true":
            continue  # "no allergy of this kind": told by the no-known-allergy resource
        kind = child(observation, "code")
        kind_code = kind.get("code") if kind is not None else None
        allergen = cda.codeable(child(observation, "value"), ctx.uris, ctx.narrative)
        if allergen is None or (not allergen.get("coding") and not allergen.get("text")):
            if not _no_known_allergy(ctx, section):
                ctx.report.unmapped(observation, "Allergy entry without an allergen (no code "
                                                 "and no text) is not mapped.")
            continue
        mapped += 1
        allergy = _allergy(ctx, allergen)
        allergy["identifier"] = _own_identifiers(observation)
        if kind_code in sets["allergy_type"]:
            allergy["type"] = sets["allergy_type"][kind_code]
        if kind_code in sets["allergy_category"]:
            allergy["category"] = [sets["allergy_category"][kind_code]]
        ctx.supporting.append(_add_item(ctx, observation, "allergy", allergy)[0])
    if not mapped and _no_known_allergy(ctx, section):
        code = {"coding": [ctx.knowledge.valuesets["no_known_allergy"]],
                "text": cda.text_of(child(section, "text")) or "Aucune allergie connue"}
        ctx.supporting.append(_add_item(ctx, section, "allergy", _allergy(ctx, code))[0])


def _allergy(ctx: Context, code: dict[str, Any]) -> dict[str, Any]:
    """A confirmed, active AllergyIntolerance of the patient (the allergen, or none known)."""
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "code": "active"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            "code": "confirmed"}]},
        "code": code, "patient": {"reference": ctx.patient_url},
    }
    if ctx.effective:
        allergy["recordedDate"] = ctx.effective
    return allergy


def _no_known_allergy(ctx: Context, section: etree._Element) -> bool:
    """The section says no allergy was found: in its narrative, or by a negated entry."""
    text = (cda.text_of(child(section, "text")) or "").lower()
    says = ctx.section_rules.get(
        "no_known_allergy_texts") or []
    negated = section.find(".//{*}observation[@negationInd='true']") is not None
    return negated or any(words in text for words in says)


HANDLERS: dict[str, Handler] = {
    "careplan-description": careplan_description,
    "careplan-note": careplan_note,
    "document-status": document_status,
    "stay-summary": stay_summary,
    "medication-requests": medication_requests,
    "plan-activities": plan_activities,
    "devices": devices,
    "allergies": allergies,
    "stopped-medications": stopped_medications,
}


def _match(section: etree._Element, models: list[dict]) -> dict | None:
    templates = {t.get("root") for t in children(section, "templateId")}
    code = child(section, "code")
    loinc = code.get("code") if code is not None else None
    for model in models:
        if templates.intersection(model["templateIds"]):
            return model
    for model in models:
        if loinc and loinc == model.get("loinc"):
            return model
    return None


def map_sections(ctx: Context) -> None:
    models = ctx.section_rules["sections"]
    body = cda.path(ctx.root, "component", "structuredBody")
    if body is None:  # recognised as structured: has a body; a N1 letter has none to map
        return
    for section in body.iterfind("./{*}component/{*}section"):
        model = _match(section, models)
        if model is None:
            title = cda.text_of(child(section, "title")) or "untitled"
            ctx.report.unmapped(section, f"Section {title!r} is not part of the mapping.")
            continue
        handler = HANDLERS.get(model["becomes"])
        if handler is None:
            ctx.report.unmapped(section, f"Section {model['name']!r} is reported only.")
            continue
        handler(ctx, section, model)
