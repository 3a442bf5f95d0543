"""Discharge letters for the coordination tests.

`converted(...)` uses the real mapping (`adapter.mapping.convert_letter`) on the LDL-SES example
when it is available; `synthetic_conversion(...)` builds a bundle of the same contract shape by
hand, so the coordination rules can be tested on letters the official example does not cover
(another hospital, another patient address, R/V confidentiality).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapter.coordination.bundle_tools import BundleView
from adapter.mapping.identity import full_url
from adapter.mapping.summary import LetterSummary

INS = "urn:oid:1.2.250.1.213.1.4.10"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"


@dataclass
class Conversion:
    bundle: dict[str, Any]
    report: dict[str, Any]
    letter: LetterSummary


def _entry(resource: dict[str, Any], url: str, request: dict[str, str]) -> dict[str, Any]:
    return {"fullUrl": url, "resource": resource, "request": request}


def _practitioner(idnat: str, family: str, given: str, profession: str | None = None):
    url = full_url("Practitioner", IDNAT_PS, idnat)
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "identifier": [{"system": IDNAT_PS, "value": idnat}],
        "name": [{"family": family, "given": [given]}],
    }
    if profession:
        resource["qualification"] = [{"code": {"coding": [{"code": profession}]}}]
    request = {
        "method": "POST",
        "url": "Practitioner",
        "ifNoneExist": f"identifier={IDNAT_PS}|{idnat}",
    }
    return url, _entry(resource, url, request)


def synthetic_conversion(
    *,
    ins: str = "279035121518989",
    postal_code: str = "75007",
    set_id: str = "1.2.250.1.999.1",
    hospital: str = "1750803447",
    author: tuple[str, str, str] = ("801234567897", "AUGUIN", "Léon"),
    recipients: tuple[tuple[str, str, str, str | None], ...] = (
        ("801234567896", "DUCOUT", "Elsa", "60"),
    ),
    pcp: tuple[str, str, str] | None = ("801984758437", "MEDIONI", "Stéphane"),
    confidentiality: str = "N",
    activities: tuple[str, ...] = ("Suivi par le psychiatre à prévoir",),
) -> Conversion:
    """A converted letter with the contract's shape: Patient, hospital, author, recipients, PCP,
    Encounter, CareTeam, CarePlan, DocumentReference and a Communication per recipient."""
    document_value = f"{set_id}.1"
    entries: list[dict[str, Any]] = []
    patient_url = full_url("Patient", INS, ins)
    entries.append(
        _entry(
            {
                "resourceType": "Patient",
                "identifier": [{"system": INS, "value": ins}],
                "name": [{"family": "PAT-TROIS", "given": ["DOMINIQUE"]}],
                "address": [{"postalCode": postal_code, "city": "PARIS"}],
            },
            patient_url,
            {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={INS}|{ins}"},
        )
    )
    org_url = full_url("Organization", IDNAT_STRUCT, hospital)
    entries.append(
        _entry(
            {
                "resourceType": "Organization",
                "identifier": [{"system": IDNAT_STRUCT, "value": hospital}],
                "name": f"Hôpital {hospital}",
            },
            org_url,
            {
                "method": "POST",
                "url": "Organization",
                "ifNoneExist": f"identifier={IDNAT_STRUCT}|{hospital}",
            },
        )
    )
    participants = []
    author_url, author_entry = _practitioner(*author)
    entries.append(author_entry)
    participants.append(
        {"role": [{"coding": [{"code": "AUT"}]}], "member": {"reference": author_url}}
    )
    recipient_urls = []
    for idnat, family, given, profession in recipients:
        url, entry = _practitioner(idnat, family, given, profession)
        entries.append(entry)
        recipient_urls.append((idnat, url))
        participants.append(
            {
                "role": [
                    {
                        "coding": [{"code": "IRCP"}],
                        "text": "Infirmier" if profession == "60" else None,
                    }
                ],
                "member": {"reference": url},
                "period": {"start": "2026-11-20T10:00:00+01:00"},
            }
        )
    if pcp:
        url, entry = _practitioner(*pcp)
        entries.append(entry)
        participants.append({"role": [{"coding": [{"code": "PCP"}]}], "member": {"reference": url}})
    encounter_url = full_url("Encounter", "urn:liaison:encounter", set_id)
    entries.append(
        _entry(
            {
                "resourceType": "Encounter",
                "identifier": [{"system": "urn:liaison:encounter", "value": set_id}],
                "status": "finished",
                "class": {"code": "IMP"},
                "subject": {"reference": patient_url},
                "period": {"start": "2026-11-10", "end": "2026-11-20"},
            },
            encounter_url,
            {"method": "PUT", "url": f"Encounter?identifier=urn:liaison:encounter|{set_id}"},
        )
    )
    care_team_url = full_url("CareTeam", "urn:liaison:careteam", set_id)
    entries.append(
        _entry(
            {
                "resourceType": "CareTeam",
                "identifier": [{"system": "urn:liaison:careteam", "value": set_id}],
                "status": "active",
                "subject": {"reference": patient_url},
                "participant": participants,
            },
            care_team_url,
            {"method": "PUT", "url": f"CareTeam?identifier=urn:liaison:careteam|{set_id}"},
        )
    )
    care_plan_url = full_url("CarePlan", "urn:liaison:careplan", set_id)
    entries.append(
        _entry(
            {
                "resourceType": "CarePlan",
                "identifier": [{"system": "urn:liaison:careplan", "value": set_id}],
                "status": "active",
                "intent": "plan",
                "subject": {"reference": patient_url},
                "careTeam": [{"reference": care_team_url}],
                "activity": [
                    {"detail": {"status": "not-started", "description": a}} for a in activities
                ],
            },
            care_plan_url,
            {"method": "PUT", "url": f"CarePlan?identifier=urn:liaison:careplan|{set_id}"},
        )
    )
    document_url = full_url("DocumentReference", "urn:ietf:rfc:3986", document_value)
    entries.append(
        _entry(
            {
                "resourceType": "DocumentReference",
                "identifier": [{"system": "urn:ietf:rfc:3986", "value": document_value}],
                "status": "current",
                "subject": {"reference": patient_url},
                "custodian": {"reference": org_url},
                "content": [{"attachment": {"contentType": "text/xml"}}],
            },
            document_url,
            {
                "method": "POST",
                "url": "DocumentReference",
                "ifNoneExist": f"identifier=urn:ietf:rfc:3986|{document_value}",
            },
        )
    )
    for idnat, url in recipient_urls:
        value = f"{document_value}/{idnat}"
        entries.append(
            _entry(
                {
                    "resourceType": "Communication",
                    "identifier": [{"system": "urn:liaison:letter-communication", "value": value}],
                    "status": "completed",
                    "subject": {"reference": patient_url},
                    "recipient": [{"reference": url}],
                    "payload": [{"contentReference": {"reference": document_url}}],
                },
                full_url("Communication", "urn:liaison:letter-communication", value),
                {
                    "method": "POST",
                    "url": "Communication",
                    "ifNoneExist": f"identifier=urn:liaison:letter-communication|{value}",
                },
            )
        )
    if pcp:
        value = f"{document_value}/{pcp[0]}"
        entries.append(
            _entry(
                {
                    "resourceType": "Communication",
                    "identifier": [{"system": "urn:liaison:letter-communication", "value": value}],
                    "status": "completed",
                    "subject": {"reference": patient_url},
                    "recipient": [{"reference": full_url("Practitioner", IDNAT_PS, pcp[0])}],
                },
                full_url("Communication", "urn:liaison:letter-communication", value),
                {
                    "method": "POST",
                    "url": "Communication",
                    "ifNoneExist": f"identifier=urn:liaison:letter-communication|{value}",
                },
            )
        )
    letter = LetterSummary(
        document_id=("urn:ietf:rfc:3986", document_value),
        set_id=("urn:ietf:rfc:3986", set_id),
        version=1,
        kind="structured",
        model="LDL-SES 2022.01",
        effective_time="2026-11-20T10:00:00+01:00",
        document_key=document_value.removeprefix("urn:oid:"),
        set_key=set_id.removeprefix("urn:oid:"),
        patient_identifiers=[(INS, ins)],
        ins=(INS, ins),
        patient_postal_code=postal_code,
        confidentiality=confidentiality,
        author_idnat=author[0],
        custodian=(IDNAT_STRUCT, hospital),
        recipient_idnats=[r[0] for r in recipients],
        pcp_idnat=pcp[0] if pcp else None,
    )
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return Conversion(bundle, {"resourceType": "OperationOutcome", "issue": []}, letter)


def addressed(bundle: dict[str, Any]) -> set[str]:
    """idNat_PS of everyone a Communication of the bundle is addressed to."""
    view = BundleView(bundle)
    return {
        idnat
        for communication in view.resources("Communication")
        for recipient in communication["recipient"]
        for idnat in view.idnats_of(recipient["reference"])
    }
