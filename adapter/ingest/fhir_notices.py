"""A discharge notice sent as a FHIR R4 Encounter (`POST /discharge-notices`), read into a
`DischargeNotice`.

The Encounter says what the hospital knows before the letter:
- `identifier`: the hospital's number of the stay (its own system);
- `status`: what happened (`mappings/notices.yaml`, `fhir_statuses`): in-progress/planned with
  FR Core's estimated discharge date extension, finished with `period.end`, cancelled;
- `subject`: the patient, by INS (`subject.identifier`), or a contained Patient (name, birth
  date, address, and `generalPractitioner` by idNat_PS) carrying the INS;
- `serviceProvider`: the hospital (`identifier` idNat_Struct, `display` its name), default the
  organisation of the caller's token;
- `hospitalization.dischargeDisposition`, `serviceType`: where to, from which unit.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from adapter.coordination.notice import DischargeNotice, GeneralPractitioner, notice_rules
from adapter.errors import BadRequest
from adapter.mapping.knowledge import knowledge
from adapter.national_ids import ins_systems, national_ids

_LIAISON_SYSTEMS = "urn:liaison:"


def notice_from_encounter(encounter: Any, *, default_hospital: str | None) -> DischargeNotice:
    if not isinstance(encounter, dict) or encounter.get("resourceType") != "Encounter":
        raise BadRequest("a discharge notice is a FHIR Encounter (or an HL7 v2 ADT message)")
    rules = notice_rules()
    event = (rules.get("fhir_statuses") or {}).get(str(encounter.get("status")))
    if event is None:
        raise BadRequest(f"Encounter.status {encounter.get('status')!r} says nothing of a "
                         f"discharge; use one of {', '.join(rules['fhir_statuses'])}")
    stay = next(((str(i["system"]), str(i["value"])) for i in encounter.get("identifier") or []
                 if i.get("system") and i.get("value")
                 and not str(i["system"]).startswith(_LIAISON_SYSTEMS)), None)
    if stay is None:
        raise BadRequest("Encounter.identifier must give the hospital's number of the stay "
                         "(system and value): the letter of the stay names it too")
    patient = _contained_patient(encounter)
    ins = _ins(encounter, patient)
    provider = encounter.get("serviceProvider") or {}
    hospital = next(iter(national_ids([provider.get("identifier") or {}], "organization")),
                    None) or default_hospital
    if not hospital:
        raise BadRequest("Encounter.serviceProvider.identifier must give the hospital's "
                         "idNat_Struct")
    planned = next((str(e.get("valueDate") or e.get("valueDateTime") or "")[:10]
                    for e in encounter.get("extension") or []
                    if e.get("url") == rules["estimated_discharge_extension"]), None)
    if event == "planned" and not planned:
        raise BadRequest(f"a planned discharge gives its date: extension "
                         f"{rules['estimated_discharge_extension']} (valueDate)")
    ended = (encounter.get("period") or {}).get("end")
    if event == "discharged" and not ended:
        raise BadRequest("a finished Encounter gives the moment of discharge: period.end")
    disposition = (encounter.get("hospitalization") or {}).get("dischargeDisposition") or {}
    codes = [c for c in disposition.get("coding") or [] if c.get("code")]
    name = (patient.get("name") or [{}])[0]
    return DischargeNotice(
        event=event, hospital=hospital, stay=stay, ins=ins,
        message_id="sha256:" + hashlib.sha256(
            orjson.dumps(encounter, option=orjson.OPT_SORT_KEYS)).hexdigest(),
        sent_at=datetime.now(UTC).isoformat(timespec="seconds"),
        family=name.get("family"), given=tuple(name.get("given") or ()),
        birth_date=patient.get("birthDate"), gender=patient.get("gender"),
        address=(patient.get("address") or [{}])[0],
        planned_date=planned, discharged_at=ended,
        destination=disposition.get("text") or next(
            (c.get("display") for c in codes if c.get("display")), None),
        destination_code={k: codes[0][k] for k in ("system", "code") if codes[0].get(k)}
        if codes else None,
        transfer=knowledge().is_transfer(disposition),
        service=(encounter.get("serviceType") or {}).get("text"),
        hospital_name=provider.get("display"),
        gp=_general_practitioner(patient),
    )


def _contained_patient(encounter: dict[str, Any]) -> dict[str, Any]:
    reference = str((encounter.get("subject") or {}).get("reference") or "")
    if not reference.startswith("#"):
        return {}
    for resource in encounter.get("contained") or []:
        if resource.get("resourceType") == "Patient" and resource.get("id") == reference[1:]:
            return dict(resource)
    raise BadRequest(f"Encounter.subject {reference} names no contained Patient")


def _ins(encounter: dict[str, Any], patient: dict[str, Any]) -> tuple[str, str]:
    candidates = [(encounter.get("subject") or {}).get("identifier") or {},
                  *(patient.get("identifier") or [])]
    for identifier in candidates:
        if identifier.get("system") in ins_systems() and identifier.get("value"):
            return str(identifier["system"]), str(identifier["value"])
    raise BadRequest("the patient is named by INS (subject.identifier, or the contained "
                     "Patient's identifier): the care team is found by it")


def _general_practitioner(patient: dict[str, Any]) -> GeneralPractitioner | None:
    for reference in patient.get("generalPractitioner") or []:
        idnat = next(iter(national_ids([reference.get("identifier") or {}], "professional")),
                     None)
        if idnat:
            display = str(reference.get("display") or "").split()
            return GeneralPractitioner(idnat=idnat, family=display[-1] if display else None,
                                       given=tuple(display[:-1]))
    return None
