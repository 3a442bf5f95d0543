"""Transaction bundles shaped like the ones liaison's mapping sends (see contracts.md):
urn:uuid fullUrls, conditional creates for shared data, conditional updates for per-letter
resources, a Provenance found again by `_tag`."""

from __future__ import annotations

import uuid
from typing import Any

from adapter.record.transaction import SOURCE_TAG

INS = "urn:oid:1.2.250.1.213.1.4.10"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
RPPS = "https://rpps.esante.gouv.fr"
IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"
PCP = "801984758437"
AUTHOR = "801234567897"
HOSPITAL = "1750000001"


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join(parts))}"


def _conditional(resource: dict[str, Any], system: str, value: str) -> dict[str, Any]:
    return {"fullUrl": _urn(resource["resourceType"], system, value), "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"],
                        "ifNoneExist": f"identifier={system}|{value}"}}


def _upsert(resource: dict[str, Any], system: str, value: str) -> dict[str, Any]:
    kind = resource["resourceType"]
    return {"fullUrl": _urn(kind, system, value), "resource": resource,
            "request": {"method": "PUT", "url": f"{kind}?identifier={system}|{value}"}}


def practitioner(idnat: str, *, rpps_only: bool = False) -> dict[str, Any]:
    identifier = ([{"system": RPPS, "value": idnat[1:]}] if rpps_only
                  else [{"system": IDNAT_PS, "value": idnat}])
    return {"resourceType": "Practitioner", "identifier": identifier,
            "name": [{"family": f"Doc{idnat[-3:]}", "prefix": ["Dr"]}]}


def letter_bundle(
    *,
    ins: str = "279035121518989",
    set_id: str = "set-1",
    version: int = 1,
    team: tuple[str, ...] = (PCP,),
    recipients: tuple[str, ...] = (PCP,),
    hospital: str = HOSPITAL,
    via_role: bool = False,
    rpps_only: bool = False,
    plan_status: str = "active",
    ended: tuple[str, ...] = (),
    family: str = "Durand",
) -> dict[str, Any]:
    """One discharge letter of patient `ins`: Patient, hospital, author, care team members
    (`team`, their period ended for those in `ended`), CareTeam, CarePlan, Communication to
    `recipients`, DocumentReference, Provenance."""
    patient_urn = _urn("Patient", INS, ins)
    org_urn = _urn("Organization", IDNAT_STRUCT, hospital)
    entries = [
        _conditional({"resourceType": "Patient", "identifier": [{"system": INS, "value": ins}],
                      "name": [{"family": family, "given": ["Jeanne"]}], "gender": "female",
                      "birthDate": "1979-03-05"}, INS, ins),
        _conditional({"resourceType": "Organization", "name": "CH Test",
                      "identifier": [{"system": IDNAT_STRUCT, "value": hospital}]},
                     IDNAT_STRUCT, hospital),
    ]
    members: dict[str, str] = {}
    for idnat in dict.fromkeys((AUTHOR, *team, *recipients)):
        system, value = (RPPS, idnat[1:]) if rpps_only else (IDNAT_PS, idnat)
        entries.append(_conditional(practitioner(idnat, rpps_only=rpps_only), system, value))
        members[idnat] = entries[-1]["fullUrl"]
        if via_role:
            role = {"resourceType": "PractitionerRole",
                    "identifier": [{"system": "urn:liaison:practitioner-role",
                                    "value": f"role-{idnat}"}],
                    "practitioner": {"reference": members[idnat]}}
            entries.append(_conditional(role, "urn:liaison:practitioner-role", f"role-{idnat}"))
            members[idnat] = entries[-1]["fullUrl"]
    participants = []
    for idnat in team:
        participant: dict[str, Any] = {"member": {"reference": members[idnat]}}
        if idnat in ended:
            participant["period"] = {"start": "2020-01-01", "end": "2021-01-01"}
        participants.append(participant)
    care_team = {"resourceType": "CareTeam", "status": "active",
                 "identifier": [{"system": "urn:liaison:careteam", "value": set_id}],
                 "subject": {"reference": patient_urn}, "participant": participants,
                 "managingOrganization": [{"reference": org_urn}]}
    entries.append(_upsert(care_team, "urn:liaison:careteam", set_id))
    care_team_urn = entries[-1]["fullUrl"]
    care_plan = {"resourceType": "CarePlan", "status": plan_status, "intent": "plan",
                 "identifier": [{"system": "urn:liaison:careplan", "value": set_id}],
                 "title": f"Sortie v{version}",
                 "category": [{"coding": [{"system": "http://loinc.org", "code": "18776-5"}]}],
                 "period": {"start": "2024-03-05"},
                 "subject": {"reference": patient_urn}, "careTeam": [{"reference": care_team_urn}],
                 "author": {"reference": members[AUTHOR]}}
    entries.append(_upsert(care_plan, "urn:liaison:careplan", set_id))
    doc_id = f"{set_id}.{version}"
    document = {"resourceType": "DocumentReference", "status": "current",
                "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{doc_id}"}],
                "type": {"coding": [{"system": "http://loinc.org", "code": "11490-0"}]},
                "subject": {"reference": patient_urn}, "date": "2024-03-05T10:00:00+01:00",
                "custodian": {"reference": org_urn},
                "author": [{"reference": members[AUTHOR]}],
                "content": [{"attachment": {"contentType": "text/xml", "title": "LDL-SES"}}]}
    entries.append(_conditional(document, "urn:ietf:rfc:3986", f"urn:oid:{doc_id}"))
    document_urn = entries[-1]["fullUrl"]
    communication = {"resourceType": "Communication", "status": "completed",
                     "identifier": [{"system": "urn:liaison:communication", "value": doc_id}],
                     "subject": {"reference": patient_urn}, "sent": "2024-03-05T11:00:00Z",
                     "recipient": [{"reference": members[r]} for r in recipients],
                     "sender": {"reference": org_urn},
                     "payload": [{"contentReference": {"reference": document_urn}}]}
    entries.append(_conditional(communication, "urn:liaison:communication", doc_id))
    provenance = {"resourceType": "Provenance",
                  "meta": {"tag": [{"system": "urn:liaison:provenance", "code": doc_id}]},
                  "target": [{"reference": patient_urn}, {"reference": care_team_urn}],
                  "recorded": "2024-03-05T11:00:00Z",
                  "agent": [{"who": {"reference": org_urn}}],
                  "entity": [{"role": "source", "what": {"reference": document_urn}}]}
    entries.append({"fullUrl": _urn("Provenance", doc_id), "resource": provenance,
                    "request": {"method": "POST", "url": "Provenance",
                                "ifNoneExist": f"_tag=urn:liaison:provenance|{doc_id}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries,
            "meta": {"tag": [{"system": SOURCE_TAG, "code": hospital}]}}


def post_bundle(client, bundle: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.post("", json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    return response.json()


def location(answer: dict[str, Any], kind: str) -> str:
    """`Type/id` of the first resource of `kind` a transaction's answer says it wrote."""
    return next(e["response"]["location"].split("/_history")[0] for e in answer["entry"]
                if e["response"]["location"].startswith(f"{kind}/"))
