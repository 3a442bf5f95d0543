"""Directory rows as FHIR R4 resources, shaped like the ANS Annuaire Santé ones (identifiers,
profession and specialty codings, MSSanté mailboxes typed with the FR Core e-mail type and the
as-ext-mailbox-mss-metadata extension)."""

from __future__ import annotations

from typing import Any

from adapter.directory import codes

Resource = dict[str, Any]
IDENTIFIER_TYPE_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"


def mailbox_telecom(address: str, mailbox_type: str | None = None) -> Resource:
    """An MSSanté mailbox as the Annuaire Santé writes it on ContactPoint (as-mailbox-mss)."""
    mailbox = codes.code_systems()["mailbox"]
    extensions: list[Resource] = [
        {
            "url": mailbox["email_type_extension"],
            "valueCoding": {
                "system": mailbox["email_type_system"],
                "code": mailbox["email_type_code"],
            },
        }
    ]
    if mailbox_type:
        extensions.append(
            {
                "url": mailbox["metadata_extension"],
                "extension": [
                    {
                        "url": "type",
                        "valueCodeableConcept": {
                            "coding": [{"system": mailbox["type_system"], "code": mailbox_type}]
                        },
                    }
                ],
            }
        )
    return {"extension": extensions, "system": "email", "value": address, "use": "work"}


def _coding(system: str | None, code: str | None, display: str | None) -> Resource | None:
    if not code:
        return None
    coding: Resource = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _address(row: Any) -> Resource | None:
    """The FHIR Address of a directory row's address columns (None when it has none)."""
    if not (row.address_line or row.postcode or row.city):
        return None
    address: Resource = {}
    if row.address_line:
        address["line"] = [row.address_line]
    if row.city:
        address["city"] = row.city
    if row.postcode:
        address["postalCode"] = row.postcode
    address["country"] = "FR"
    return address


def _identifier(system: str, value: str, type_code: str | None = None) -> Resource:
    identifier: Resource = {"use": "official", "system": system, "value": value}
    if type_code:
        identifier["type"] = {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": type_code}]}
    return identifier


def practitioner_identifiers(row: Any) -> list[Resource]:
    systems = codes.identifiers()["professional"]
    if row.id_type == "LOCAL":
        return [{"system": systems["local"], "value": row.idnat}]
    identifiers = [_identifier(systems["idnat_ps"], row.idnat, "IDNPS")]
    if row.id_type == "RPPS":
        identifiers.append(_identifier(systems["rpps"], row.rpps or row.idnat[1:], "RPPS"))
    elif row.id_type == "ADELI":
        identifiers.append(_identifier(systems["adeli"], row.idnat[1:], "ADELI"))
    return identifiers


def practitioner_id(idnat: str) -> str:
    return idnat


def practitioner_resource(row: Any, mailboxes: list[Any]) -> Resource:
    systems = codes.code_systems()
    resource: Resource = {
        "resourceType": "Practitioner",
        "id": practitioner_id(row.idnat),
        "meta": {"profile": [systems["profiles"]["Practitioner"]]},
        "identifier": practitioner_identifiers(row),
        "active": bool(row.active),
    }
    name: Resource = {"use": "official"}
    if row.family:
        name["family"] = row.family
    if row.given:
        name["given"] = row.given.split()
    if row.prefix:
        name["prefix"] = [row.prefix]
    if len(name) > 1:
        resource["name"] = [name]
    if mailboxes:
        resource["telecom"] = [mailbox_telecom(box.address, box.mailbox_type) for box in mailboxes]
    profession = _coding(systems["profession"], row.profession_code, row.profession_display)
    if profession:
        resource["qualification"] = [{"code": {"coding": [profession]}}]
    return resource


def role_id(row: Any) -> str:
    return f"role-{row.id}"


def role_resource(row: Any, practitioner: Any | None) -> Resource:
    systems = codes.code_systems()
    resource: Resource = {
        "resourceType": "PractitionerRole",
        "id": role_id(row),
        "meta": {"profile": [systems["profiles"]["PractitionerRole"]]},
        "active": bool(row.active),
        "practitioner": {"reference": f"Practitioner/{practitioner_id(row.practitioner_idnat)}"},
    }
    if practitioner is not None:
        name = " ".join(
            part for part in (practitioner.prefix, practitioner.given, practitioner.family) if part
        )
        if name:
            resource["practitioner"]["display"] = name
    if row.organization_idnat:
        resource["organization"] = {"reference": f"Organization/{row.organization_idnat}"}
        if row.organization_name:
            resource["organization"]["display"] = row.organization_name
    codings = [
        coding
        for coding in (
            _coding(systems["profession"], row.profession_code, row.profession_display),
            _coding(systems["practice_mode"], row.practice_mode, None),
            _coding(systems["local_role"], row.local_role, row.local_role),
        )
        if coding
    ]
    if codings:
        resource["code"] = [{"coding": [coding]} for coding in codings]
    specialty = _coding(
        row.specialty_system or systems["default_specialty"],
        row.specialty_code,
        row.specialty_display,
    )
    if specialty:
        resource["specialty"] = [{"coding": [specialty]}]
    telecom = []
    if row.phone:
        telecom.append({"system": "phone", "value": row.phone, "use": "work"})
    if row.mssante:
        telecom.append(mailbox_telecom(row.mssante))
    if telecom:
        resource["telecom"] = telecom
    # the site's address: PractitionerRole has no address, a contained Location carries it
    address = _address(row)
    if address is not None:
        resource["contained"] = [{"resourceType": "Location", "id": "site",
                                  "address": {"use": "work", **address}}]
        resource["location"] = [{"reference": "#site"}]
    extensions = []
    if row.cpts_id:
        extensions.append({"url": "urn:liaison:cpts-id", "valueString": row.cpts_id})
    if row.territory_postcodes:
        extensions.append(
            {"url": "urn:liaison:territory-postcodes", "valueString": row.territory_postcodes}
        )
    if extensions:
        resource["extension"] = extensions
    return resource


def organization_resource(row: Any, mailboxes: list[Any]) -> Resource:
    ids = codes.identifiers()["organization"]
    systems = codes.code_systems()
    identifiers = [_identifier(ids["idnat_struct"], row.idnat_struct, "IDNST")]
    if row.finess:
        identifiers.append(_identifier(ids["finess"], row.finess, "FINEG"))
    if row.siret:
        identifiers.append(_identifier(ids["siret"], row.siret, "SIRET"))
    resource: Resource = {
        "resourceType": "Organization",
        "id": row.idnat_struct,
        "meta": {"profile": [systems["profiles"]["Organization"]]},
        "identifier": identifiers,
        "active": bool(row.active),
    }
    if row.name:
        resource["name"] = row.name
    telecom = []
    if row.phone:
        telecom.append({"system": "phone", "value": row.phone, "use": "work"})
    telecom.extend(mailbox_telecom(box.address, box.mailbox_type) for box in mailboxes)
    if telecom:
        resource["telecom"] = telecom
    address = _address(row)
    if address is not None:
        resource["address"] = [address]
    return resource
