"""The coordinator's review a week after discharge (D+7), as a FHIR Task.

Created with the letter (`task_for_stay`, on the accept path, when a coordinator joins the care
team): one per stay (a conditional create on the stay's setId, so a corrected letter does not
reset a review under way), owned by the CPTS Organization (any of its coordinators completes
it), focus the CarePlan, for the patient, due `review.days` after the discharge, the checks it
covers as `input`. Completed by a coordinator of that CPTS (`complete`): status `completed`,
the answers as `output`, who and when in `note` and `executionPeriod.end`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from adapter.auth import Principal
from adapter.auth.rules import require_review_completer
from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.rules import CoordinationRules
from adapter.errors import BadRequest, Conflict, NotFound
from adapter.mapping.identity import create_if_absent, full_url
from adapter.mapping.summary import LetterSummary
from adapter.record.repository import Repository
from adapter.record.transaction import Result


def task_for_stay(view: BundleView, letter: LetterSummary, rules: CoordinationRules,
                  owner_url: str) -> None:
    """Add the stay's review to the letter's bundle (once per stay)."""
    section = rules.section("review")
    if not section.get("enabled") or _review_in(view, section) is not None:
        return
    discharged = _discharge_moment(view, letter)
    if discharged is None:
        return
    references = {element: view.full_url_of(resource) for element, resource_type in
                  (("focus", "CarePlan"), ("for", "Patient"), ("encounter", "Encounter"))
                  if (resource := view.first(resource_type)) is not None}
    # one per stay: a notice of the discharge and the letter of the stay share it
    add_review(view, rules, stay=letter.stay_key or "|".join(letter.set_id),
               discharged=discharged, authored=letter.effective_time, owner_url=owner_url,
               references=references)


def add_review(view: BundleView, rules: CoordinationRules, *, stay: str, discharged: datetime,
               authored: str, owner_url: str, references: dict[str, str | None]) -> None:
    """The review of `stay` (a conditional create: once per stay), due `review.days` after
    `discharged`; `references`: its focus (CarePlan), for (Patient) and encounter."""
    section = rules.section("review")
    if not section.get("enabled"):
        return
    identifier = {"system": section["identifier_system"], "value": stay}
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [identifier],
        "status": "requested",
        "intent": "plan",
        "code": {"coding": [section["code"]], "text": section["code"]["display"]},
        "description": section["description"],
        "authoredOn": authored or _fhir_moment(discharged),
        "owner": {"reference": owner_url},
        "restriction": {"period": {
            "end": _fhir_moment(discharged + timedelta(days=int(section["days"])))}},
        "input": [{"type": {"coding": [{"system": section["check_system"], "code": code}],
                            "text": text}, "valueBoolean": False}
                  for code, text in section["checks"].items()],
    }
    for element, reference in references.items():
        if reference:
            task[element] = {"reference": reference}
    view.add(task, full_url("Task", identifier["system"], identifier["value"]),
             create_if_absent("Task", identifier))


def _fhir_moment(moment: datetime) -> str:
    """A FHIR dateTime: with its time when the letter gave a time zone, else the day alone (a
    time without zone is not valid FHIR)."""
    if moment.tzinfo is None:
        return moment.date().isoformat()
    return moment.isoformat(timespec="seconds")


def _review_in(view: BundleView, section: dict[str, Any]) -> dict[str, Any] | None:
    return next((task for task in view.resources("Task") if _is_review(task, section)), None)


def _discharge_moment(view: BundleView, letter: LetterSummary) -> datetime | None:
    encounter = view.first("Encounter") or {}
    moment = (encounter.get("period") or {}).get("end") or letter.effective_time
    try:
        return datetime.fromisoformat(moment) if moment else None
    except ValueError:
        return None


def complete(repository: Repository, principal: Principal, task_id: str, answers: Any,
             rules: CoordinationRules, *, now: Callable[[], datetime]) -> Result:
    """The review done: `answers` is {"checks": {code: true/false}, "note": text}."""
    section = rules.section("review")
    try:
        task = repository.read("Task", task_id)
    except NotFound:
        task = None
    if task is None or not _is_review(task, section):
        raise NotFound("no review with this id")
    require_review_completer(principal, lambda: _owned_by(repository, task, principal, rules))
    if task.get("status") == "completed":
        raise Conflict("this review is already completed")
    if not isinstance(answers, dict):
        raise BadRequest("give the review's answers: {'checks': {code: true|false}, 'note': …}")
    checks = answers.get("checks") or {}
    unknown = sorted(set(checks) - set(section["checks"]))
    if not isinstance(checks, dict) or unknown or \
            not all(isinstance(value, bool) for value in checks.values()):
        raise BadRequest(f"checks are among {', '.join(section['checks'])}, each true or false")
    moment = now().isoformat(timespec="seconds")
    done = dict(task)
    done["status"] = "completed"
    done["lastModified"] = moment
    done["executionPeriod"] = {**(task.get("executionPeriod") or {}), "end": moment}
    done["output"] = [{"type": {"coding": [{"system": section["check_system"], "code": code}],
                                "text": text}, "valueBoolean": bool(checks.get(code, False))}
                      for code, text in section["checks"].items()]
    note = str(answers.get("note") or "").strip()
    done["note"] = [*(task.get("note") or []), {
        "authorString": f"Coordination {principal.cpts}" if principal.cpts else principal.kind,
        "time": moment, "text": note or "Revue faite"}]
    return repository.update("Task", task_id, done)  # by liaison, after the checks above


def _is_review(task: dict[str, Any], section: dict[str, Any]) -> bool:
    return any(i.get("system") == section["identifier_system"]
               for i in task.get("identifier") or [])


def _owned_by(repository: Repository, task: dict[str, Any], principal: Principal,
              rules: CoordinationRules) -> bool:
    """Whether the review's owner is the CPTS the coordinator token acts for."""
    kind, _, owner_id = str((task.get("owner") or {}).get("reference", "")).partition("/")
    if kind != "Organization" or not principal.cpts:
        return False
    try:
        owner = repository.read("Organization", owner_id)
    except NotFound:
        return False
    system = rules.section("coordinator").get("territory_identifier_system")
    return any(i.get("system") == system and i.get("value") == principal.cpts
               for i in owner.get("identifier") or [])


def reviews(repository: Repository, patient_reference: str, principal: Any,
            rules: CoordinationRules) -> list[dict[str, Any]]:
    """The patient's reviews the caller may read."""
    section = rules.section("review")
    code = section["code"]
    found = repository.search("Task", [("patient", patient_reference),
                                       ("code", f"{code['system']}|{code['code']}")], principal)
    return [e["resource"] for e in found.get("entry") or []
            if e["resource"].get("resourceType") == "Task"]
