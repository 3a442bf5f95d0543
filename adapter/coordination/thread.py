"""The patient's thread: messages the care team writes about the patient, as FHIR Communications
(`POST /fhir/Communication` with a professional or coordinator token).

Who writes is decided by `adapter.auth.rules.require_thread_writer`: a professional listed in an
active CareTeam of the patient, a coordinator who may read the patient (its CPTS), the system.
What liaison checks before writing, and why:
- the subject is one Patient of the record (`Patient/<id>`);
- every recipient is a member of the patient's active care team: a message reaches no one
  else, and so tells no one else about the patient (no recipient: the whole team but the writer);
- `inResponseTo` names Communications about the same patient;
- the sender is the writer: liaison sets it, and a sender naming someone else is refused;
- only the elements a message needs are taken (`thread.accepted_elements` of the coordination
  rules); the identifier, status, category, `sent` and `meta` are liaison's, so a tag or a
  security label from a client never reaches the record and cannot change who reads.
Who reads: whoever may read the patient (its care team, its CPTS coordinator); a hospital reads
the letters it sent, not the thread; outsiders nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapter.auth import Principal
from adapter.auth.rules import require_thread_writer
from adapter.coordination.bundle_tools import IDNAT_PS
from adapter.coordination.record_port import Members, member_key
from adapter.coordination.record_reader import RecordCareTeams
from adapter.coordination.rules import CoordinationRules
from adapter.errors import BadRequest, Forbidden, InvalidResource, NotFound
from adapter.record.repository import Repository
from adapter.record.transaction import Result


@dataclass(frozen=True)
class Posted:
    result: Result  # the record's answer (id, version), the message as kept in `resource`
    # the message and the resources it names, keyed by their references: what Subscriptions
    # match against (`subscriptions.after_push`)
    bundle: dict[str, Any]
    location: str


def post_message(repository: Repository, principal: Principal, submitted: Any,
                 rules: CoordinationRules, *, now: Callable[[], datetime]) -> Posted:
    section = rules.section("thread")
    if not isinstance(submitted, dict) or submitted.get("resourceType") != "Communication":
        raise BadRequest("a message is a Communication resource")
    extra = sorted(set(submitted) - set(section["accepted_elements"]))
    if extra:
        raise BadRequest(f"a message takes {', '.join(section['accepted_elements'])}; "
                         f"liaison sets or refuses the others: {', '.join(extra)}")
    patient_id = _patient_id(submitted.get("subject"))
    team = _CareTeam(repository, patient_id)
    own = team.references_of(principal)
    require_thread_writer(principal, lambda: bool(own) if principal.kind == "professional"
                          else _may_read_patient(repository, principal, patient_id))
    recipients = _recipients(submitted.get("recipient"), team, own)
    message: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": section["identifier_system"], "value": str(uuid.uuid4())}],
        "status": "completed",
        "category": [{"coding": [section["category"]]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "recipient": [{"reference": reference} for reference in recipients],
        "sent": now().isoformat(timespec="seconds"),
        "sender": _sender(submitted.get("sender"), principal, own),
        "payload": _payload(submitted.get("payload"), section),
    }
    answers = _in_response_to(repository, submitted.get("inResponseTo"), patient_id)
    if answers:
        message["inResponseTo"] = answers
    for element in ("topic", "priority"):
        if submitted.get(element) is not None:
            message[element] = submitted[element]
    result = repository.create(message)  # written by liaison, after the checks above
    stored = result.stored() or message
    location = f"Communication/{result.resource_id}/_history/{result.version}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"Communication/{result.resource_id}", "resource": stored},
        *({"fullUrl": reference, "resource": resource}
          for reference, resource in team.named([*recipients, *own[:1]], patient_id,
                                                repository).items()),
    ]}
    return Posted(result, bundle, location)


def member_by_mailbox(repository: Repository, patient_id: str, address: str) -> str | None:
    """The idNat_PS of the member of the patient's active care team whose mail address is
    `address` (a reply by mail is written in the thread as theirs, and only then)."""
    team = _CareTeam(repository, patient_id)
    wanted = address.strip().lower()
    for reference in team.references:
        member = team.members.get(reference) or {}
        practitioner = team.members.get(
            member_key((member.get("practitioner") or {}).get("reference")) or "") or {}
        mailboxes = {str(point.get("value", "")).lower()
                     for holder in (member, practitioner) for point in holder.get("telecom") or []
                     if point.get("system") == "email"}
        idnats = team.idnats(reference)
        if wanted in mailboxes and idnats:
            return sorted(idnats)[0]
    return None


class _CareTeam:
    """The members of the patient's active CareTeams, as the record holds them."""

    def __init__(self, repository: Repository, patient_id: str) -> None:
        teams, self.members = RecordCareTeams(repository).care_teams([patient_id])
        self.references: list[str] = []
        for team in teams:
            if team.get("status") != "active":
                continue
            for participant in team.get("participant") or []:
                key = member_key((participant.get("member") or {}).get("reference"))
                if key and key not in self.references and self.members.get(key):
                    self.references.append(key)

    def idnats(self, reference: str) -> set[str]:
        return _idnats(self.members, reference)

    def references_of(self, principal: Principal) -> list[str]:
        """The writer's own member references (a professional listed in the team)."""
        if principal.kind != "professional" or not principal.idnat:
            return []
        return [r for r in self.references if principal.idnat in self.idnats(r)]

    def named(self, references: list[str], patient_id: str, repository: Repository
              ) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for reference in references:
            resource = self.members.get(reference)
            if resource:
                found[reference] = resource
                practitioner = member_key((resource.get("practitioner") or {}).get("reference"))
                practitioner_resource = self.members.get(practitioner or "")
                if practitioner and practitioner_resource:
                    found[practitioner] = practitioner_resource
        with contextlib.suppress(NotFound):
            found[f"Patient/{patient_id}"] = repository.read("Patient", patient_id)
        return found


def _idnats(members: Members, reference: str | None) -> set[str]:
    resource = members.get(reference or "") if reference else None
    if not resource:
        return set()
    found = {i.get("value") for i in resource.get("identifier") or []
             if i.get("system") == IDNAT_PS and i.get("value")}
    practitioner = member_key((resource.get("practitioner") or {}).get("reference"))
    return {v for v in found if v} | (_idnats(members, practitioner) if practitioner else set())


def _patient_id(subject: Any) -> str:
    reference = subject.get("reference") if isinstance(subject, dict) else None
    kind, _, patient_id = str(reference or "").partition("/")
    if kind != "Patient" or not patient_id or "/" in patient_id:
        raise BadRequest("a message's subject is the patient: {'reference': 'Patient/<id>'}")
    return patient_id


def _may_read_patient(repository: Repository, principal: Principal, patient_id: str) -> bool:
    found = repository.search("Patient", [("_id", patient_id), ("_summary", "count")], principal)
    return bool(found.get("total"))


def _recipients(given: Any, team: _CareTeam, own: list[str]) -> list[str]:
    if given is None:
        chosen = [r for r in team.references if r not in own]
    elif isinstance(given, list) and all(isinstance(r, dict) for r in given):
        chosen = []
        for recipient in given:
            key = member_key(recipient.get("reference"))
            if key is None or key not in team.references:
                raise InvalidResource(f"recipient {recipient.get('reference')!r} is not a member "
                                      "of the patient's care team")
            if key not in chosen:
                chosen.append(key)
    else:
        raise BadRequest("recipient is a list of references")
    if not chosen:
        raise InvalidResource("nobody in the patient's care team to write to")
    return chosen


def _sender(given: Any, principal: Principal, own: list[str]) -> dict[str, Any]:
    mine = {"reference": own[0]} if own else {"display": _display(principal)}
    if given is None:
        return mine
    key = member_key(given.get("reference")) if isinstance(given, dict) else None
    if key is None or key not in own:
        raise Forbidden("a message is sent as its writer: leave out 'sender', or name yourself")
    return {"reference": key}


def _display(principal: Principal) -> str:
    if principal.kind == "coordinator":
        return f"Coordination {principal.cpts}"
    return "liaison" if principal.kind == "system" else principal.kind


def _payload(given: Any, section: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(given, list) or not given:
        raise BadRequest("a message needs a payload: text (contentString) or attachments")
    payload = []
    for part in given:
        if not isinstance(part, dict):
            raise BadRequest("each payload is an object")
        if isinstance(part.get("contentString"), str) and part["contentString"].strip():
            if len(part["contentString"]) > section["max_text_characters"]:
                raise InvalidResource(f"a message's text is at most "
                                      f"{section['max_text_characters']} characters")
            payload.append({"contentString": part["contentString"]})
        elif isinstance(part.get("contentAttachment"), dict):
            payload.append({"contentAttachment": _attachment(part["contentAttachment"], section)})
        else:
            raise BadRequest("a payload is contentString (text) or contentAttachment (data)")
    return payload


def _attachment(attachment: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    kind = attachment.get("contentType")
    if kind not in section["attachment_types"]:
        raise InvalidResource(f"attachments may be {', '.join(section['attachment_types'])}")
    try:
        data = base64.b64decode(str(attachment.get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("an attachment's data is base64") from None
    if not data or len(data) > section["max_attachment_bytes"]:
        raise InvalidResource(f"an attachment holds 1 to {section['max_attachment_bytes']} bytes")
    kept = {"contentType": kind, "data": attachment["data"], "size": len(data)}
    if isinstance(attachment.get("title"), str):
        kept["title"] = attachment["title"]
    return kept


def _in_response_to(repository: Repository, given: Any, patient_id: str) -> list[dict[str, Any]]:
    if given is None:
        return []
    if not isinstance(given, list):
        raise BadRequest("inResponseTo is a list of references")
    answers = []
    for item in given:
        reference = item.get("reference") if isinstance(item, dict) else None
        kind, _, message_id = str(reference or "").partition("/")
        earlier = None
        if kind == "Communication" and message_id:
            try:
                earlier = repository.read("Communication", message_id)
            except NotFound:
                earlier = None
        if earlier is None or (earlier.get("subject") or {}).get("reference") \
                != f"Patient/{patient_id}":
            raise InvalidResource(f"inResponseTo {reference!r} is not a message about this "
                                  "patient")
        answers.append({"reference": f"Communication/{message_id}"})
    return answers
