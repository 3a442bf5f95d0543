"""The letter as an IHE XDM package (ITI TF-1 §16, TF-3 §4.5.1), the attachment MSSanté client
software imports into the patient's file: IHE_XDM.ZIP holding INDEX.HTM, README.TXT and
IHE_XDM/SUBSET01/ with METADATA.XML (one submission set, one document entry) and the letter,
byte for byte as the hospital sent it."""

from __future__ import annotations

import hashlib
import html
import io
import zipfile
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from adapter.mapping.identity import LIAISON_NAMESPACE, derived_uuid

_LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
_RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
_CLASSIFICATION = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"
_EXTERNAL_ID = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier"
_DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
_SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
# XDS classification schemes and identification schemes (ITI TF-3 §4.2.5)
_SCHEME = {
    "class": "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
    "confidentiality": "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f",
    "format": "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
    "facility": "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1",
    "practice": "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
    "type": "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
    "content_type": "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500",
}
_ENTRY_PATIENT = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
_ENTRY_UNIQUE = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
_SET_PATIENT = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
_SET_UNIQUE = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
_SET_SOURCE = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
_HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
# liaison as an XDS source: the OID of its fixed namespace UUID (ITU-T X.667, arc 2.25)
LIAISON_SOURCE_ID = f"2.25.{LIAISON_NAMESPACE.int}"


def xdm_package(letter: bytes, document: dict[str, Any], *, recipient: str, rules: dict[str, Any],
                now: datetime | None = None) -> bytes:
    """IHE_XDM.ZIP for `letter`, described by `document` (`plan._document_metadata`) and
    addressed to `recipient`."""
    now = now or datetime.now(UTC)
    subset = f"IHE_XDM/{rules['subset']}"
    metadata = _metadata(letter, document, recipient, rules, now)
    title = html.escape(str(document.get("title") or "Lettre de liaison"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("INDEX.HTM", (
            "<html><head><meta charset=\"utf-8\"><title>IHE XDM</title></head><body>"
            f"<p>Envoyé par liaison : <a href=\"{subset}/{rules['document_name']}\">{title}</a>"
            "</p></body></html>").encode())
        archive.writestr("README.TXT", (
            "Paquet IHE XDM (IT Infrastructure Technical Framework, XDM) produit par liaison.\r\n"
            f"Le document est dans {subset}/{rules['document_name']}, décrit par "
            f"{subset}/METADATA.XML.\r\n").encode())
        archive.writestr(f"{subset}/METADATA.XML", metadata)
        archive.writestr(f"{subset}/{rules['document_name']}", letter)
    return buffer.getvalue()


def _metadata(letter: bytes, document: dict[str, Any], recipient: str, rules: dict[str, Any],
              now: datetime) -> bytes:
    unique_id = str(document.get("unique_id") or "").removeprefix("urn:oid:")
    patient = _patient_id(document.get("patient"))
    request = etree.Element(f"{{{_LCM}}}SubmitObjectsRequest", nsmap={"lcm": _LCM, "rim": _RIM})
    objects = etree.SubElement(request, f"{{{_RIM}}}RegistryObjectList")

    entry = _element(objects, "ExtrinsicObject", id="Document01", mimeType=rules["mime_type"],
                     objectType=_DOCUMENT_ENTRY)
    _slot(entry, "creationTime", _dtm(document.get("creation")))
    _slot(entry, "hash", hashlib.sha1(letter).hexdigest())  # XDS asks for SHA-1
    _slot(entry, "size", str(len(letter)))
    _slot(entry, "URI", rules["document_name"])
    _slot(entry, "languageCode", document.get("language"))
    _slot(entry, "serviceStartTime", _dtm(document.get("service_start")))
    _slot(entry, "serviceStopTime", _dtm(document.get("service_stop")))
    _slot(entry, "sourcePatientId", patient)
    _name(entry, document.get("title"))
    codings = {
        "class": document.get("class"),
        "confidentiality": document.get("confidentiality"),
        "format": _format(document, rules),
        "facility": document.get("facility"),
        "practice": document.get("practice") or rules["default_practice"],
        "type": document.get("type"),
    }
    for number, (what, coding) in enumerate(codings.items(), start=1):
        _classification(entry, f"cl{number:02d}", _SCHEME[what], "Document01", coding, rules)
    _external_id(entry, "ei01", _ENTRY_PATIENT, "Document01", patient, "XDSDocumentEntry.patientId")
    _external_id(entry, "ei02", _ENTRY_UNIQUE, "Document01", unique_id,
                 "XDSDocumentEntry.uniqueId")

    package = _element(objects, "RegistryPackage", id="SubmissionSet01")
    _slot(package, "submissionTime", _dtm(now.isoformat()))
    _slot(package, "intendedRecipient", f"^^Internet^{recipient}")
    _name(package, document.get("title"))
    _classification(package, "cl10", _SCHEME["content_type"], "SubmissionSet01",
                    rules["content_type_code"], rules)
    _element(objects, "Classification", id="cl11", classifiedObject="SubmissionSet01",
             classificationNode=_SUBMISSION_SET, objectType=_CLASSIFICATION)
    set_uuid = derived_uuid("xdm-submission", unique_id, recipient)
    set_uid = f"2.25.{int(set_uuid.replace('-', ''), 16)}"  # an OID, as XDS asks
    _external_id(package, "ei03", _SET_UNIQUE, "SubmissionSet01", set_uid,
                 "XDSSubmissionSet.uniqueId")
    _external_id(package, "ei04", _SET_SOURCE, "SubmissionSet01", LIAISON_SOURCE_ID,
                 "XDSSubmissionSet.sourceId")
    _external_id(package, "ei05", _SET_PATIENT, "SubmissionSet01", patient,
                 "XDSSubmissionSet.patientId")

    association = _element(objects, "Association", id="as01", associationType=_HAS_MEMBER,
                           sourceObject="SubmissionSet01", targetObject="Document01")
    _slot(association, "SubmissionSetStatus", "Original")
    return etree.tostring(request, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _element(parent: Any, tag: str, **attributes: str) -> Any:
    return etree.SubElement(parent, f"{{{_RIM}}}{tag}", attributes)


def _slot(parent: Any, name: str, value: str | None) -> None:
    if not value:
        return
    slot = _element(parent, "Slot", name=name)
    values = _element(slot, "ValueList")
    _element(values, "Value").text = value


def _name(parent: Any, text: str | None) -> None:
    if text:
        name = _element(parent, "Name")
        _element(name, "LocalizedString", value=text)


def _classification(parent: Any, ident: str, scheme: str, target: str,
                    coding: dict[str, Any] | None, rules: dict[str, Any]) -> None:
    if not coding or not coding.get("code"):
        return
    node = _element(parent, "Classification", id=ident, classificationScheme=scheme,
                    classifiedObject=target, nodeRepresentation=str(coding["code"]),
                    objectType=_CLASSIFICATION)
    coding_scheme = coding.get("scheme") or rules["coding_schemes"].get(coding.get("system"))
    _slot(node, "codingScheme", coding_scheme or coding.get("system"))
    _name(node, coding.get("display"))


def _external_id(parent: Any, ident: str, scheme: str, target: str, value: str | None,
                 label: str) -> None:
    if not value:
        return
    node = _element(parent, "ExternalIdentifier", id=ident, identificationScheme=scheme,
                    registryObject=target, value=value, objectType=_EXTERNAL_ID)
    _name(node, label)


def _format(document: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    code = (document.get("type") or {}).get("code")
    return dict(rules["format_codes"].get(code) or rules["default_format"])


def _patient_id(patient: list[str] | None) -> str | None:
    """An XDS patient id (CX): `value^^^&OID&ISO`."""
    if not patient:
        return None
    system, value = patient
    return f"{value}^^^&{system.removeprefix('urn:oid:')}&ISO"


def _dtm(moment: str | None) -> str | None:
    """A FHIR instant as an XDS DTM, in UTC (YYYYMMDDhhmmss)."""
    if not moment:
        return None
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment.replace("-", "")[:8] or None
    if parsed.tzinfo is None:
        return parsed.strftime("%Y%m%d%H%M%S")
    return parsed.astimezone(UTC).strftime("%Y%m%d%H%M%S")
