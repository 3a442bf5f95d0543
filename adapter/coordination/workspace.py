"""What a coordinator does from the page to a patient's plan: add a note, mark an item done, add
a professional of the living directory to the care team (and tell them).

Who may is `adapter.auth.rules.require_plan_keeper`: a coordinator of the CPTS that owns the
patient's care team — the record answers that, since it lets a coordinator read only its own
CPTS's patients — or the system. The plan is read by liaison, the rule asked, then liaison
writes: what the caller sends is a text, an index or a choice among the page's candidates, never
a resource, so it cannot change who reads the patient beyond the professional chosen.

Words and statuses come from `mappings/coordination.yaml` (`page:`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapter.auth import Principal
from adapter.auth.rules import require_plan_keeper
from adapter.coordination import page, thread
from adapter.coordination.bundle_tools import IDNAT_PS
from adapter.coordination.resources import origin_extension
from adapter.coordination.rules import CoordinationRules
from adapter.errors import BadRequest, Conflict, NotFound
from adapter.mapping.knowledge import knowledge
from adapter.record.repository import Repository

PLAN_SCOPES = (("u", "CarePlan"),)
TEAM_SCOPES = (("u", "CareTeam"), ("c", "Communication"))
MAX_NOTE_CHARACTERS = 4000


@dataclass(frozen=True)
class Plan:
    care_plan: dict[str, Any]
    patient_id: str


def kept_plan(repository: Repository, principal: Principal, care_plan_id: str,
              scopes: tuple[tuple[str, str], ...]) -> Plan:
    """The CarePlan, once the caller is known to keep it (403 otherwise, 404 if unknown)."""
    try:
        care_plan = repository.read("CarePlan", care_plan_id)
    except NotFound:
        raise NotFound("no care plan with this id") from None
    kind, _, patient_id = str((care_plan.get("subject") or {}).get("reference", "")).partition("/")
    if kind != "Patient" or not patient_id:
        raise NotFound("this care plan is about no patient")
    require_plan_keeper(principal, lambda: _readable(repository, care_plan_id, principal), scopes)
    return Plan(care_plan, patient_id)


def _readable(repository: Repository, care_plan_id: str, principal: Principal) -> bool:
    try:
        repository.read("CarePlan", care_plan_id, principal)
    except NotFound:
        return False
    return True


def author(repository: Repository, principal: Principal) -> str:
    """Who did it, as the page says it: "Coordination <the CPTS's name>"."""
    if principal.kind != "coordinator":
        return "liaison"
    return f"Coordination {page.territory_name(repository, principal)}"


def add_note(repository: Repository, principal: Principal, care_plan_id: str, text: Any, *,
             now: Callable[[], datetime]) -> Plan:
    """CarePlan.note gets the text, its author and the moment."""
    plan = kept_plan(repository, principal, care_plan_id, PLAN_SCOPES)
    text = str(text or "").strip()
    if not text or len(text) > MAX_NOTE_CHARACTERS:
        raise BadRequest(f"a note is 1 to {MAX_NOTE_CHARACTERS} characters of text")
    care_plan = dict(plan.care_plan)
    care_plan["note"] = [*(care_plan.get("note") or []), {
        "authorString": author(repository, principal),
        "time": now().isoformat(timespec="seconds"), "text": text}]
    repository.update("CarePlan", care_plan_id, care_plan)  # by liaison, after the rule
    return plan


def mark_done(repository: Repository, principal: Principal, care_plan_id: str, index: Any,
              rules: CoordinationRules, *, now: Callable[[], datetime]) -> Plan:
    """The plan's item `index` done: its request's status (or the inline detail's) takes the
    done status of `page.done_status`, and the activity's progress says who and when. An
    appointment keeps its status (FHIR asks a fixed appointment for its start): the progress
    note alone says it is done."""
    plan = kept_plan(repository, principal, care_plan_id, PLAN_SCOPES)
    section = rules.section("page")
    activities = list(plan.care_plan.get("activity") or [])
    try:
        position = int(index)
        activity = dict(activities[position]) if position >= 0 else None
    except (TypeError, ValueError, IndexError):
        activity = None
    if activity is None:
        raise NotFound("this care plan has no such item")
    done_status = section.get("done_status") or {}
    moment = now().isoformat(timespec="seconds")
    entries: list[dict[str, Any]] = []
    reference = str((activity.get("reference") or {}).get("reference", ""))
    kind, _, target_id = reference.partition("/")
    if activity.get("detail"):
        detail = dict(activity["detail"])
        if detail.get("status") == done_status.get("detail"):
            raise Conflict("this item is already done")
        detail["status"] = done_status.get("detail", "completed")
        activity["detail"] = detail
    elif kind and target_id:
        target = repository.read(kind, target_id)
        if (target.get("subject") or target.get("patient") or {}).get("reference") not in (
                None, f"Patient/{plan.patient_id}") or _is_done(activity, target, section):
            raise Conflict("this item is already done")
        if kind in done_status:
            entries.append(_put({**target, "status": done_status[kind]}, kind, target_id))
    activity["progress"] = [*(activity.get("progress") or []), {
        "authorString": author(repository, principal), "time": moment,
        "text": str(section.get("done_text", "Fait"))}]
    activities[position] = activity
    entries.insert(0, _put({**plan.care_plan, "activity": activities}, "CarePlan",
                           care_plan_id))
    repository.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return plan


def _is_done(activity: dict[str, Any], target: dict[str, Any], section: dict[str, Any]) -> bool:
    done_status = section.get("done_status") or {}
    progress = [n for n in activity.get("progress") or [] if n.get("time")]
    return target.get("status") == done_status.get(target.get("resourceType"), "") or bool(
        progress and progress[-1].get("text") == section.get("done_text", "Fait"))


def _put(resource: dict[str, Any], kind: str, resource_id: str) -> dict[str, Any]:
    return {"fullUrl": f"{kind}/{resource_id}", "resource": resource,
            "request": {"method": "PUT", "url": f"{kind}/{resource_id}"}}


def assign(repository: Repository, engine: Any, principal: Principal, care_plan_id: str,
           idnat: Any, role: Any, rules: CoordinationRules, *, now: Callable[[], datetime]
           ) -> thread.Posted:
    """Add the professional `idnat` — one of the page's living-directory candidates for the
    missing `role` — to the patient's active care team with that role, and write them a
    message in the patient's thread (the Subscriptions and MSSanté mail that tell a thread's
    recipients tell them: the caller hands the answer to `ingest.messages.tell`)."""
    plan = kept_plan(repository, principal, care_plan_id, TEAM_SCOPES)
    patient = repository.read("Patient", plan.patient_id)
    offered = page.candidates(engine, rules, str(role or ""), page.postcode_of(patient))
    chosen = next((c for c in offered if c["idnat"] == str(idnat or "")), None)
    if chosen is None:
        raise BadRequest("choose the professional among the living directory's candidates for "
                         "this role near the patient's home")
    team_id, team = _care_team(repository, plan)
    if any(chosen["idnat"] in _member_idnats(repository, p) for p in team.get("participant")
           or []):
        raise Conflict("this professional is already in the patient's care team")
    section = rules.section("page")
    practitioner_url = f"urn:uuid:{uuid.uuid4()}"
    participant = {
        "member": {"reference": practitioner_url, "display": chosen["name"]},
        "role": [_role(chosen, str(role)), {"coding": [section["assigned_role"]],
                                            "text": section["assigned_role"]["display"]}],
        "period": {"start": now().isoformat(timespec="seconds")},
        # a corrected letter of the stay keeps whom the coordinator added
        "extension": [origin_extension(rules, source=None, added_by=(
            f"{rules.section('care_team_merge')['assigned_by']} {principal.actor or ''}"
            ).strip())],
    }
    updated = {**team, "participant": [*(team.get("participant") or []), participant]}
    identifier = {"system": IDNAT_PS, "value": chosen["idnat"]}
    answer = repository.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": practitioner_url, "resource": _practitioner(chosen, identifier),
         "request": {"method": "POST", "url": "Practitioner",
                     "ifNoneExist": f"identifier={IDNAT_PS}|{chosen['idnat']}"}},
        {**_put(updated, "CareTeam", team_id)}]})
    location = str(answer["entry"][0]["response"]["location"])
    practitioner = "/".join(location.split("/_history/")[0].split("/")[-2:])
    text = str(section["assignment_message"]).format(
        territory=page.territory_name(repository, principal) or "", role=role,
        patient=page.human_name(patient))
    message = {"resourceType": "Communication",
               "subject": {"reference": f"Patient/{plan.patient_id}"},
               "recipient": [{"reference": practitioner}],
               "payload": [{"contentString": text}]}
    return thread.post_message(repository, principal, message, rules, now=now)


def _care_team(repository: Repository, plan: Plan) -> tuple[str, dict[str, Any]]:
    """The plan's active care team (the one its careTeam names, else the patient's latest)."""
    for reference in plan.care_plan.get("careTeam") or []:
        kind, _, team_id = str(reference.get("reference", "")).partition("/")
        if kind == "CareTeam":
            team = repository.read("CareTeam", team_id)
            if team.get("status", "active") == "active":
                return team_id, team
    found = repository.search("CareTeam", [("subject", f"Patient/{plan.patient_id}"),
                                           ("status", "active"), ("_sort", "-_lastUpdated")])
    for entry in found.get("entry") or []:
        return str(entry["resource"]["id"]), entry["resource"]
    raise NotFound("this patient has no active care team")


def _member_idnats(repository: Repository, participant: dict[str, Any]) -> set[str]:
    kind, _, member_id = str((participant.get("member") or {}).get("reference", "")).partition(
        "/")
    if kind not in ("Practitioner", "PractitionerRole"):
        return set()
    try:
        member = repository.read(kind, member_id)
        if kind == "PractitionerRole":
            kind, _, member_id = str((member.get("practitioner") or {}).get(
                "reference", "")).partition("/")
            member = repository.read("Practitioner", member_id) if kind == "Practitioner" else {}
    except NotFound:
        return set()
    return {str(i.get("value")) for i in member.get("identifier") or []
            if i.get("system") == IDNAT_PS}


def _role(chosen: dict[str, str], role: str) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": role}
    if chosen.get("profession_code"):
        concept["coding"] = [{"system": knowledge().terminology["profession_code_system"],
                              "code": chosen["profession_code"],
                              "display": chosen["profession"]}]
    return concept


def _practitioner(chosen: dict[str, str], identifier: dict[str, str]) -> dict[str, Any]:
    """The professional as the living directory knows them: name, phone, MSSanté mailbox
    (typed as the Annuaire types it, so their mail goes out), profession."""
    typing = knowledge().identifiers["mssante"]
    telecom: list[dict[str, Any]] = []
    if chosen.get("phone"):
        telecom.append({"system": "phone", "value": chosen["phone"], "use": "work"})
    if chosen.get("mssante"):
        telecom.append({"system": "email", "value": chosen["mssante"], "use": "work",
                        "extension": [{"url": typing["email_type_extension"],
                                       "valueCoding": typing["email_type"]}]})
    resource: dict[str, Any] = {"resourceType": "Practitioner", "identifier": [identifier],
                                "name": [{"text": chosen["name"]}] if chosen["name"] else [],
                                "telecom": telecom}
    role = _role(chosen, chosen.get("profession") or "")
    if role.get("coding"):
        resource["qualification"] = [{"code": role}]
    return {key: value for key, value in resource.items() if value}

