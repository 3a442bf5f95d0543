"""Which Communications of a letter's bundle also go by MSSanté mail, and what each message says
(and the mail of a message of the patient's thread, `plan_thread_mail`, and of a discharge
notice, `plan_notice_mail`).

Runs in the conversion, before the 202, on the final bundle (after consent and coordination):
the messages are queued with the letter in one transaction, so none is lost. A Communication
whose recipient has an MSSanté mailbox is marked `in-progress` (it becomes `completed` when
the recipient's server takes the message); one whose recipient has none stays as it was and is
reported on the receipt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapter.cda.datatypes import french_date
from adapter.mapping.identity import derived_uuid
from adapter.mapping.knowledge import knowledge
from adapter.mssante.rules import mssante_rules
from adapter.mssante.status import portable


@dataclass
class MailPlan:
    messages: list[dict[str, Any]] = field(default_factory=list)  # outbox payloads, one each
    unreachable: list[str] = field(default_factory=list)  # one line per recipient without MSSanté


def plan_messages(bundle: dict[str, Any], sender: str) -> MailPlan:
    """The messages of `bundle`'s Communications, sent from the mailbox `sender`; marks their
    Communications `in-progress` in the bundle."""
    rules = mssante_rules()
    entries = {e.get("fullUrl"): e for e in bundle.get("entry") or [] if e.get("fullUrl")}
    resources = {url: e.get("resource") or {} for url, e in entries.items()}
    document = _first(bundle, "DocumentReference")
    patient = _first(bundle, "Patient")
    metadata = _document_metadata(document, patient)  # the letter's: the same for everyone
    plan = MailPlan()
    for entry in bundle.get("entry") or []:
        communication = entry.get("resource") or {}
        if communication.get("resourceType") != "Communication":
            continue
        recipient = resources.get(_reference(communication.get("recipient")), {})
        name = _person_name(recipient, resources)
        address = _mailbox(recipient, resources)
        if address is None:
            plan.unreachable.append(rules["status"]["no_mailbox"].format(
                recipient=name or "un destinataire"))
            continue
        communication["status"] = rules["status"]["queued"]
        identifier = communication["identifier"][0]
        fields = _fields(rules, document, patient, communication, resources)
        plan.messages.append({
            "to": address,
            "message_id": f"<{derived_uuid('mssante', identifier['value'])}@{_domain(sender)}>",
            "subject": rules["message"]["subject"].format(**fields),
            "body": rules["message"]["body"].format(greeting=_greeting(rules, name), **fields),
            "document": metadata,
            "communication": portable(communication, entries),
            "tags": (bundle.get("meta") or {}).get("tag") or [],
        })
    return plan


def plan_thread_mail(bundle: dict[str, Any], sender: str) -> list[dict[str, Any]]:
    """Mail of a thread message (the bundle's first entry; the others are what it names, keyed
    by their references) to each of its recipients with an MSSanté mailbox."""
    rules = mssante_rules()
    resources = {e["fullUrl"]: e.get("resource") or {} for e in bundle["entry"]}
    communication = bundle["entry"][0]["resource"]
    patient = _first(bundle, "Patient")
    writer_resource = resources.get(_reference(communication.get("sender")), {})
    writer = _person_name(writer_resource, resources) \
        or (communication.get("sender") or {}).get("display") \
        or rules["thread_message"]["unknown_writer"]
    text = "\n\n".join(p["contentString"] for p in communication.get("payload") or []
                        if p.get("contentString"))
    messages = []
    for recipient in communication.get("recipient") or []:
        reference = recipient.get("reference") or ""
        address = _mailbox(resources.get(reference, {}), resources)
        if address is None:
            continue
        name = _person_name(resources.get(reference, {}), resources)
        fields = {"writer": writer, "text": text, "greeting": _greeting(rules, name),
                  **_who(rules, patient)}
        identifier = communication["identifier"][0]["value"]
        messages.append({
            **_plain_mail(rules["thread_message"], fields, to=address, message_id=(
                f"<{derived_uuid('mssante', identifier, address)}@{_domain(sender)}>"),
                attachments=[p["contentAttachment"] for p in communication.get("payload")
                             or [] if p.get("contentAttachment")]),
            "thread_message": f"Communication/{communication['id']}",
        })
    return messages


def plan_notice_mail(bundle: dict[str, Any], sender: str) -> list[dict[str, Any]]:
    """Mail of a discharge notice's Communications (each says the notice) to the recipients
    with an MSSanté mailbox. Like a thread message's, its fate is kept with the message: the
    Communication, in the record for everyone, is the notice itself."""
    rules = mssante_rules()
    resources = {e.get("fullUrl"): e.get("resource") or {} for e in bundle.get("entry") or []}
    patient = _first(bundle, "Patient")
    messages = []
    for communication in resources.values():
        if communication.get("resourceType") != "Communication":
            continue
        recipient = resources.get(_reference(communication.get("recipient")), {})
        address = _mailbox(recipient, resources)
        if address is None:
            continue
        text = " ".join(p["contentString"] for p in communication.get("payload") or []
                        if p.get("contentString"))
        fields = {"text": text, "greeting": _greeting(rules, _person_name(recipient, resources)),
                  **_who(rules, patient)}
        identifier = communication["identifier"][0]["value"]
        messages.append(_plain_mail(
            rules["notice_message"], fields, to=address, attachments=[],
            message_id=f"<{derived_uuid('mssante', identifier)}@{_domain(sender)}>"))
    return messages


def _plain_mail(template: dict[str, Any], fields: dict[str, str], *, to: str, message_id: str,
                attachments: list[dict[str, Any]]) -> dict[str, Any]:
    """A mail without the letter (a thread message, a notice): its text from `template`."""
    return {"to": to, "message_id": message_id,
            "subject": template["subject"].format(**fields),
            "body": template["body"].format(**fields), "attachments": attachments}


def _first(bundle: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return next((e["resource"] for e in bundle.get("entry") or []
                 if (e.get("resource") or {}).get("resourceType") == resource_type), {})


def _reference(value: Any) -> str:
    """The reference of a Reference (or of the first of a list of them); "" if none."""
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value.get("reference") or "") if isinstance(value, dict) else ""


def _mailbox(resource: dict[str, Any], resources: dict[str, dict[str, Any]]) -> str | None:
    """The MSSanté address on the recipient (a PractitionerRole, else its Practitioner)."""
    typing = knowledge().identifiers["mssante"]
    practitioner = resources.get(_reference(resource.get("practitioner")), {})
    for candidate in (resource, practitioner):
        for point in candidate.get("telecom") or []:
            if point.get("system") != "email" or not point.get("value"):
                continue
            if any(ext.get("url") == typing["email_type_extension"]
                   and (ext.get("valueCoding") or {}).get("code") == typing["email_type"]["code"]
                   for ext in point.get("extension") or []):
                return str(point["value"])
    return None


def _person_name(resource: dict[str, Any], resources: dict[str, dict[str, Any]]) -> str | None:
    holder = resources.get(_reference(resource.get("practitioner")), resource)
    for name in holder.get("name") or []:
        parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
        text = " ".join(p for p in parts if p).strip()
        if text:
            return text
    return holder.get("name") if isinstance(holder.get("name"), str) else None


def _patient_name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        text = " ".join([*name.get("given", []), str(name.get("family", "")).upper()]).strip()
        if text:
            return text
    return ""


def _hospital(communication: dict[str, Any], resources: dict[str, dict[str, Any]]) -> str:
    sender = resources.get(_reference(communication.get("sender")), {})
    if sender.get("resourceType") == "PractitionerRole":
        sender = resources.get(_reference(sender.get("organization")), {})
    return str(sender.get("name") or "L'établissement")


def _day(document: dict[str, Any], communication: dict[str, Any]) -> str:
    moment = ((document.get("context") or {}).get("period") or {}).get("end") \
        or communication.get("sent") or document.get("date") or ""
    return french_date(moment) if moment else ""


def _who(rules: dict[str, Any], patient: dict[str, Any]) -> dict[str, str]:
    """The patient as a message names them: name and birth date."""
    unknown = rules["message"]["unknown"]
    birth = patient.get("birthDate")
    return {"patient": _patient_name(patient) or unknown,
            "birth": french_date(birth) if birth else unknown}


def _greeting(rules: dict[str, Any], name: str | None) -> str:
    message = rules["message"]
    return str(message["greeting"]).format(recipient=name) if name \
        else str(message["greeting_unnamed"])


def _fields(rules: dict[str, Any], document: dict[str, Any], patient: dict[str, Any],
            communication: dict[str, Any], resources: dict[str, dict[str, Any]]
            ) -> dict[str, str]:
    """What a letter's message says, but the greeting."""
    unknown = rules["message"]["unknown"]
    return {
        "title": str(document.get("description") or "Lettre de liaison"),
        **_who(rules, patient),
        "hospital": _hospital(communication, resources),
        "day": _day(document, communication) or unknown,
        "summary": " ".join(p["contentString"] for p in communication.get("payload") or []
                            if p.get("contentString")),
    }


def _document_metadata(document: dict[str, Any], patient: dict[str, Any]) -> dict[str, Any]:
    """What the XDM package's METADATA.XML says of the letter (from its DocumentReference)."""
    attachment = next((c.get("attachment") or {} for c in document.get("content") or []), {})
    ins_systems = knowledge().ins_systems
    patient_id = next(((i["system"], i["value"]) for i in patient.get("identifier") or []
                       if i.get("system") in ins_systems and i.get("value")), None)
    return {
        "unique_id": str((document.get("masterIdentifier") or {}).get("value", "")),
        "title": attachment.get("title") or document.get("description"),
        "creation": attachment.get("creation") or document.get("date"),
        "language": attachment.get("language"),
        "type": _coding(document.get("type")),
        "class": _coding(next(iter(document.get("category") or []), None)),
        "confidentiality": _coding(next(iter(document.get("securityLabel") or []), None)),
        "facility": _coding((document.get("context") or {}).get("facilityType")),
        "practice": _coding((document.get("context") or {}).get("practiceSetting")),
        "service_start": ((document.get("context") or {}).get("period") or {}).get("start"),
        "service_stop": ((document.get("context") or {}).get("period") or {}).get("end"),
        "patient": list(patient_id) if patient_id else None,
    }


def _coding(concept: Any) -> dict[str, Any] | None:
    if not isinstance(concept, dict):
        return None
    return next(iter(concept.get("coding") or []), None)


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "liaison.invalid"
