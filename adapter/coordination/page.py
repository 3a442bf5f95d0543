"""The coordinator's page: recent discharges of the territory, what to organise, who is in the
care team (phone, MSSanté), which roles are missing, and whether the messages went out.

Everything is read from the record *as the coordinator* (the record only shows patients whose
CareTeam belongs to the coordinator's CPTS) and filtered again by the consent labels, then
rendered server-side with jinja2 — no front-end build.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from adapter.config import get_settings
from adapter.coordination import review
from adapter.coordination.consent import reader_may_see
from adapter.coordination.french_dates import PARIS, french_birth, french_moment
from adapter.coordination.notice import notice_rules
from adapter.coordination.rules import CoordinationRules, MissingRoleRule, load_rules
from adapter.mapping.knowledge import knowledge
from adapter.mapping_files import load_mapping_file

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
_TEMPLATES.filters["quand"] = french_moment  # "mardi 3 décembre 2019, 13 h 30"
_TEMPLATES.filters["naissance"] = french_birth
# what became of a received letter, in words (`store.letters.RECEIPT_STATUS`)
LETTER_STATUS_WORDS = {"accepted": "reçue, en cours d'envoi au dossier partagé",
                       "retrying": "reçue, envoi au dossier partagé retenté",
                       "pushed": "dans le dossier partagé",
                       "failed": "reçue, pas encore dans le dossier partagé (à vérifier)"}
_TEMPLATES.globals["letter_status_words"] = LETTER_STATUS_WORDS
MSSANTE_CODE = "MSSANTE"


@dataclass
class Member:
    name: str
    roles: list[str]
    phone: str | None = None
    mssante: str | None = None
    email: str | None = None
    profession: str | None = None
    is_pcp: bool = False
    is_coordinator: bool = False
    codes: set[str] = field(default_factory=set)  # every code/text that says what they do
    key: str = ""  # the person's resource (a PractitionerRole resolves to its Practitioner)

    def absorb(self, other: Member) -> None:
        """Take in what another participation of the same person adds (roles, contacts)."""
        known = {role.casefold() for role in self.roles}
        for role in other.roles:
            if role.casefold() not in known:
                known.add(role.casefold())
                self.roles.append(role)
        self.codes |= other.codes
        self.phone = self.phone or other.phone
        self.mssante = self.mssante or other.mssante
        self.email = self.email or other.email
        self.profession = self.profession or other.profession
        self.is_pcp = self.is_pcp or other.is_pcp
        self.is_coordinator = self.is_coordinator or other.is_coordinator


def _one_row_per_person(members: list[Member]) -> list[Member]:
    """A person listed in several roles (author, recipient, performer…) is shown once."""
    people: dict[str, Member] = {}
    for member in members:
        if member.key in people:
            people[member.key].absorb(member)
        else:
            people[member.key] = member
    return list(people.values())


@dataclass
class Action:
    """One item of the plan as the coordinator acts on it."""

    index: int  # its position in CarePlan.activity (what the "done" form names)
    text: str
    kind: str = "detail"  # the request's resource type, or "detail" (inline in the CarePlan)
    when: str = ""  # FHIR date or dateTime
    from_date: bool = False  # "à partir du" (a requested period) rather than "le"
    urgent: bool = False
    status: str = ""  # in words
    done: bool = False
    done_at: str = ""
    done_by: str = ""
    comment: str = ""


@dataclass
class Discharge:
    patient_name: str
    patient_birth: str | None
    patient_id: str
    last_updated: str | None
    activities: list[str]
    members: list[Member]
    missing_roles: list[str]
    communications: list[dict[str, str]]
    letters: list[dict[str, str]] = field(default_factory=list)  # received letters, push status
    reviews: list[dict[str, Any]] = field(default_factory=list)  # D+7 reviews: due, done, by whom
    stay: dict[str, str] = field(default_factory=dict)  # discharge, hospital, service, destination
    address: str = ""  # where the patient lives
    postcode: str = ""
    care_plan_id: str = ""  # the latest plan: where notes go and actions are marked done
    reason: str = ""  # why the patient was in hospital
    actions: list[Action] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)  # notes added to the plan
    # living-directory candidates for each missing role
    candidates: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    @property
    def pcp(self) -> Member | None:
        return next((m for m in self.members if m.is_pcp), None)


def _entries(bundle: dict[str, Any], principal: Any) -> list[dict[str, Any]]:
    found = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if entry.get("search", {}).get("mode", "match") == "match" and reader_may_see(
            resource, principal
        ):
            found.append(resource)
    return found


def human_name(resource: dict[str, Any]) -> str:
    for name in resource.get("name") or []:
        given = " ".join(name.get("given") or [])
        text = name.get("text") or " ".join(p for p in (given, name.get("family")) if p)
        if text:
            return text
    return "(sans nom)"


def _codes(concepts: list[dict[str, Any]]) -> tuple[list[str], set[str]]:
    """Display labels and every code/display/text (folded) of CodeableConcepts."""
    labels: list[str] = []
    codes: set[str] = set()
    for concept in concepts:
        texts = [concept.get("text")] + [
            c.get("display") or c.get("code") for c in concept.get("coding") or []
        ]
        label = next((t for t in texts if t), None)
        if label:
            labels.append(label)
        for coding in concept.get("coding") or []:
            codes |= {str(v).casefold() for v in (coding.get("code"), coding.get("display")) if v}
            if coding.get("system", "").endswith("snomed.info/sct") and coding.get("code"):
                codes.add(f"snomed:{coding['code']}")
        if concept.get("text"):
            codes.add(concept["text"].casefold())
    return labels, codes


def _telecom(resource: dict[str, Any], member: Member) -> None:
    for point in resource.get("telecom") or []:
        value = point.get("value")
        if not value:
            continue
        is_mssante = (
            any(
                (e.get("valueCoding") or {}).get("code") == MSSANTE_CODE
                for e in point.get("extension") or []
            )
            or ".mssante.fr" in value.casefold()
        )
        if point.get("system") == "phone" and not member.phone:
            member.phone = value
        elif point.get("system") == "email" and is_mssante and not member.mssante:
            member.mssante = value
        elif point.get("system") == "email" and not member.email:
            member.email = value


def _member(
    repository: Any, participant: dict[str, Any], rules: CoordinationRules
) -> Member | None:
    reference = (participant.get("member") or {}).get("reference") or ""
    kind, _, resource_id = reference.partition("/")
    if kind not in ("Practitioner", "PractitionerRole", "RelatedPerson", "Organization"):
        return None
    try:
        resource = repository.read(kind, resource_id)
    except Exception:  # a reference the record cannot resolve is shown by its display
        resource = {}
    labels, codes = _codes(participant.get("role") or [])
    member = Member(
        name=human_name(resource) if kind != "Organization" else resource.get("name", "?"),
        roles=[],
        codes=codes,
        key=reference,
    )
    member.absorb(Member(name=member.name, roles=labels))  # drops labels repeated in other case
    if kind == "PractitionerRole":
        role_labels, role_codes = _codes(
            (resource.get("code") or []) + (resource.get("specialty") or [])
        )
        member.codes |= role_codes
        member.profession = ", ".join(role_labels) or None
        _telecom(resource, member)
        practitioner_ref = (resource.get("practitioner") or {}).get("reference", "")
        if practitioner_ref.startswith("Practitioner/"):
            try:
                resource = repository.read("Practitioner", practitioner_ref.split("/", 1)[1])
            except Exception:
                resource = {}
            member.name = human_name(resource)
            member.key = practitioner_ref
    qualifications = [q.get("code") or {} for q in resource.get("qualification") or []]
    qualification_labels, qualification_codes = _codes(qualifications)
    member.codes |= qualification_codes
    member.profession = member.profession or (", ".join(qualification_labels) or None)
    _telecom(resource, member)
    member.is_pcp = "pcp" in member.codes
    member.is_coordinator = rules.coordinator.role.code.casefold() in member.codes
    if kind == "RelatedPerson":
        # the letter names a relative once per role (trusted person, person to notify), one
        # resource each: the same name and phone are one person
        phone = re.sub(r"\D", "", member.phone or "")
        member.key = f"RelatedPerson|{_folded(member.name)}|{phone}"
    return member


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c))
                    .casefold().split())


def _plan_actions(repository: Any, care_plan: dict[str, Any], principal: Any,
                  section: dict[str, Any]) -> list[Action]:
    """What the plan asks for, with when, how urgent and how far along: inline details, or the
    requests its activities point at (one the coordinator may not read is not listed)."""
    actions = []
    for index, activity in enumerate(care_plan.get("activity") or []):
        detail = activity.get("detail") or {}
        reference = (activity.get("reference") or {}).get("reference") or ""
        target: dict[str, Any] = {}
        kind, _, resource_id = reference.partition("/")
        if kind and resource_id and "/" not in resource_id:
            try:
                target = repository.read(kind, resource_id, principal)
            except Exception:
                continue
        code = detail.get("code") or target.get("code") or target.get("medicationCodeableConcept")
        labels, _ = _codes([code]) if code else ([], set())
        notes = [n.get("text") for n in target.get("note") or [] if n.get("text")]
        text = (
            detail.get("description")
            or target.get("description")
            or (labels[0] if labels else None)
            or (notes[0] if notes else None)
            or (activity.get("reference") or {}).get("display")
        )
        if not text:
            continue
        action = Action(index=index, text=str(text), kind=kind if target else "detail")
        _schedule(action, target or detail)
        status = str((target or detail).get("status") or "")
        action.status = str(section.get("status_words", {}).get(status, ""))
        progress = [n for n in activity.get("progress") or [] if n.get("time")]
        # done: its status says so, or (an appointment, which keeps its own) the coordinator's
        # progress note does
        action.done = status == section.get("done_status", {}).get(action.kind) or bool(
            progress and progress[-1].get("text") == section.get("done_text"))
        action.urgent = str(target.get("priority") or "") in section.get("urgent_priorities", ())
        action.comment = str(target.get("comment") or "")
        if action.done and progress:
            action.done_at = str(progress[-1].get("time", ""))
            action.done_by = str(progress[-1].get("authorString", ""))
        actions.append(action)
    return actions


def _schedule(action: Action, item: dict[str, Any]) -> None:
    """When the item is due: its date or the start of its period (a requested period, an
    appointment not fixed yet, is "from" that day)."""
    for element in ("occurrenceDateTime", "scheduledString", "start"):
        if item.get(element):
            action.when = str(item[element])
            return
    for element in ("occurrencePeriod", "scheduledPeriod"):
        if (item.get(element) or {}).get("start"):
            action.when = str(item[element]["start"])
            return
    if (item.get("scheduledTiming") or {}).get("event"):
        action.when = str(item["scheduledTiming"]["event"][0])
        return
    requested = item.get("requestedPeriod") or []
    if requested and requested[0].get("start"):
        action.when, action.from_date = str(requested[0]["start"]), True


def _fills(token: str, codes: set[str]) -> bool:
    # short tokens are codes ("60" = infirmier in TRE_G15): exact, and a short word ("IDE") a
    # whole word of a label; longer words match inside labels
    return any(token == code or (len(token) >= 4 and token in code)
               or (token.isalpha() and token in re.findall(r"\w+", code)) for code in codes)


def missing_roles(
    activities: list[str], members: list[Member], rules: tuple[MissingRoleRule, ...]
) -> list[str]:
    """Roles the plan needs (by its words) that nobody in the team fills (by their codes)."""
    planned = " ".join(activities).casefold()
    words = set(re.findall(r"\w+", planned))
    team_codes: set[str] = set().union(*(m.codes for m in members)) if members else set()
    missing = []
    for rule in rules:
        # a short word (AMI, IDE) is a whole word: "ami" is inside "examiné"
        needed = any(word in words if len(word) <= 3 else word in planned
                     for word in rule.when_any)
        if needed and not any(_fills(token, team_codes) for token in rule.filled_by):
            missing.append(rule.role)
    return missing


def letter_statuses(engine: Any, patient: dict[str, Any]) -> list[dict[str, str]]:
    """The patient's letters as liaison received them, and whether they reached the record."""
    from sqlmodel import Session, col, select

    from adapter.store import outbox
    from adapter.store.letters import RECEIPT_STATUS, ReceivedLetter, patient_key

    identifiers = [(i["system"], i["value"]) for i in patient.get("identifier") or []
                   if i.get("system") and i.get("value")]
    # a patient with an INS: the letters received under it alone (an IPP the record also lists
    # may name another person's letter sent without INS)
    ins = [pair for pair in identifiers if pair[0] in knowledge().ins_systems]
    keys = [patient_key([pair]) for pair in ins or identifiers]
    if engine is None or not keys:
        return []
    found = []
    with Session(engine) as session:
        rows = session.exec(
            select(ReceivedLetter)
            .where(col(ReceivedLetter.patient_key).in_(keys))
            .order_by(col(ReceivedLetter.received_at).desc())
        ).all()
        for row in rows:
            entry = outbox.get_entry(engine, row.outbox_id) if row.outbox_id else None
            status = RECEIPT_STATUS.get(entry.status, entry.status) if entry else "unknown"
            moment = row.received_at  # kept in UTC (SQLite gives it back without zone)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            received = moment.isoformat(timespec="minutes")
            found.append({"received": received, "status": status, "model": row.model,
                          "id": row.id, "version": str(row.version)})
    return found


@dataclass(frozen=True)
class LetterToRead:
    content: bytes
    version: int
    received: str  # FHIR instant
    model: str


def letter_to_read(engine: Any, repository: Any, principal: Any, letter_id: str
                   ) -> LetterToRead:
    """A received letter for the page's reader, if they may read it: the record must let them
    read that version's DocumentReference (the patient's care team, a coordinator of its CPTS,
    and for a restricted letter its named readers only; the system always). Else, as the record
    answers for what it hides, it is unknown (404)."""
    from sqlmodel import Session

    from adapter.errors import NotFound
    from adapter.store.letters import ReceivedLetter

    with Session(engine) as session:
        row = session.get(ReceivedLetter, letter_id) if len(letter_id) <= 32 else None
    if row is None or not _may_read_letter(repository, principal, row):
        raise NotFound("no letter with this id")
    moment = row.received_at if row.received_at.tzinfo else row.received_at.replace(tzinfo=UTC)
    return LetterToRead(bytes(row.content), row.version,
                        moment.isoformat(timespec="minutes"), row.model)


def _may_read_letter(repository: Any, principal: Any, row: Any) -> bool:
    if getattr(principal, "kind", None) == "system":
        return True
    # the version's identifier as the mapping writes it (mapping.care.map_document_reference):
    # the letter's setId as root^extension (mapping.engine), "/v", the version
    from adapter.cda.datatypes import child, ii
    from adapter.cda.reader import parse_letter

    set_id = ii(child(parse_letter(bytes(row.content), max_bytes=get_settings().max_letter_bytes),
                      "setId"))
    if set_id is None:
        return False
    key = f"{set_id[0]}^{set_id[1]}" if set_id[1] else set_id[0]
    system = knowledge().liaison_system("document_version")
    found = repository.search("DocumentReference", [
        ("identifier", f"{system}|{key}/v{row.version}"), ("_summary", "count")], principal)
    return bool(found.get("total"))


VIEWS = ("prevues", "semaine", "revue", "sans-medecin")


def discharges(
    repository: Any,
    principal: Any,
    rules: CoordinationRules | None = None,
    limit: int = 20,
    *,
    letters_engine: Any = None,
    view: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Discharge]:
    """The territory's recent discharges as the coordinator may see them; `letters_engine`:
    liaison's database, where received letters and the living directory are (the record may
    have a database of its own; default: the configured one); `view`: one of `VIEWS` (planned
    stays, discharged this week, review due, no GP), None for all; `now`: the clock."""
    if letters_engine is None:
        from adapter.store.db import get_engine

        letters_engine = get_engine()
    rules = rules or load_rules()
    moment = now()
    recent = [("_sort", "-_lastUpdated"), ("_count", "100")]
    teams = _entries(repository.search("CareTeam", recent, principal), principal)
    teams.sort(key=lambda t: (t.get("meta") or {}).get("lastUpdated", ""), reverse=True)
    found: list[Discharge] = []
    seen_patients: set[str] = set()
    for team in teams:
        subject = (team.get("subject") or {}).get("reference", "")
        if not subject.startswith("Patient/") or subject in seen_patients:
            continue
        seen_patients.add(subject)
        discharge = _discharge(repository, principal, rules, team, subject, letters_engine,
                               moment)
        if discharge is not None and _in_view(discharge, view, rules, moment):
            found.append(discharge)
        if len(found) >= limit:
            break
    return found


def _discharge(repository: Any, principal: Any, rules: CoordinationRules, team: dict[str, Any],
               subject: str, letters_engine: Any, moment: datetime) -> Discharge | None:
    patient_id = subject.split("/", 1)[1]
    try:
        patient = repository.read("Patient", patient_id)
    except Exception:
        return None
    section = rules.section("page")
    plans = _entries(repository.search("CarePlan", [("subject", subject)], principal), principal)
    plans.sort(key=lambda p: (p.get("meta") or {}).get("lastUpdated", ""), reverse=True)
    actions = [a for plan in plans[:1] for a in _plan_actions(repository, plan, principal,
                                                                section)]
    activities = [a.text for a in actions]
    members = _one_row_per_person(
        [m for p in team.get("participant") or [] if (m := _member(repository, p, rules))]
    )
    stay = _stay(repository, subject, principal, section)
    missing = missing_roles(activities, members, rules.missing_roles)
    discharge = Discharge(
        patient_name=human_name(patient),
        patient_birth=patient.get("birthDate"),
        patient_id=patient_id,
        last_updated=(team.get("meta") or {}).get("lastUpdated"),
        activities=activities,
        members=members,
        missing_roles=missing,
        communications=_communications(repository, subject, principal),
        letters=letter_statuses(letters_engine, patient),
        reviews=[_review_line(task, moment) for task in
                 review.reviews(repository, subject, principal, rules)],
        stay=stay,
        address=_address(patient),
        postcode=postcode_of(patient),
        care_plan_id=str(plans[0].get("id", "")) if plans else "",
        reason=stay.pop("reason", "") or (str(plans[0].get("description") or "") if plans
                                          else ""),
        actions=actions,
        notes=[_note_line(note) for plan in plans[:1] for note in plan.get("note") or []
               if note.get("authorString") and note.get("time")],
    )
    discharge.candidates = {
        role: candidates(letters_engine, rules, role, discharge.postcode) for role in missing}
    return discharge


def _in_view(discharge: Discharge, view: str | None, rules: CoordinationRules,
             moment: datetime) -> bool:
    if view == "prevues":
        return bool(discharge.stay.get("planned"))
    if view == "semaine":
        ended = _moment(discharge.stay.get("discharged", ""))
        days = int(rules.section("page").get("week_days", 7))
        return ended is not None and moment - timedelta(days=days) <= ended <= moment
    if view == "revue":
        return any(r["status"] != "completed" for r in discharge.reviews)
    if view == "sans-medecin":
        return discharge.pcp is None
    return True


def _moment(text: str) -> datetime | None:
    """A FHIR date or dateTime as an aware moment (a day alone, or no zone: Paris time)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=PARIS)
    return moment


def _communications(repository: Any, subject: str, principal: Any) -> list[dict[str, Any]]:
    communications = []
    messages = repository.search("Communication", [("subject", subject)], principal)
    for message in _entries(messages, principal):
        for recipient in message.get("recipient") or []:
            communications.append(
                {
                    "recipient": _recipient_name(repository, recipient),
                    "status": message.get("status", ""),
                    "sent": message.get("sent", ""),
                    # by MSSanté: when the recipient's server took it, or why it did not,
                    # when it was read; or that the recipient has no mailbox
                    "received": message.get("received", ""),
                    "reason": (message.get("statusReason") or {}).get("text", ""),
                    "read": _read_at(message),
                    "no_mailbox": _mailed() and not _mail_state(message),
                }
            )
    return communications


def _note_line(note: dict[str, Any]) -> dict[str, str]:
    return {"text": str(note.get("text", "")), "by": str(note.get("authorString", "")),
            "at": str(note.get("time", ""))}


def candidates(engine: Any, rules: CoordinationRules, role: str, postcode: str
               ) -> list[dict[str, str]]:
    """Who in the living directory could fill `role` for a patient living at `postcode`: their
    profession (or specialty) fills the role, they serve the postcode and take new patients;
    those available within 24 h first."""
    from adapter.coordination import living_directory

    rule = next((r for r in rules.missing_roles if r.role == role), None)
    if rule is None or engine is None:
        return []
    within = int(rules.section("page").get("candidates_within_hours", 24))
    found = []
    for practitioner_role in living_directory.search(engine, skills=rule.skills,
                                                     postcode=postcode or None, rules=rules):
        _, codes = _codes((practitioner_role.get("code") or [])
                          + (practitioner_role.get("specialty") or []))
        if not any(_fills(token, codes) for token in rule.filled_by):
            continue
        delay = next((e["valueDuration"]["value"] for e in practitioner_role.get("extension")
                      or [] if "valueDuration" in e), None)
        practitioner = practitioner_role.get("practitioner") or {}
        found.append({
            "idnat": str((practitioner.get("identifier") or {}).get("value", "")),
            "name": str(practitioner.get("display") or ""),
            "profession": ", ".join(_codes(practitioner_role.get("code") or [])[0]),
            "profession_code": next((str(c.get("code")) for concept in practitioner_role.get(
                "code") or [] for c in concept.get("coding") or [] if c.get("code")), ""),
            "mssante": next((t["value"] for t in practitioner_role.get("telecom") or []
                             if t.get("system") == "email"), ""),
            "delay": "" if delay is None else str(delay),
            "soon": "yes" if delay is not None and delay <= within else "",
            "phone": next((t["value"] for t in practitioner_role.get("telecom") or []
                           if t.get("system") == "phone"), ""),
        })
    found.sort(key=lambda c: (not c["soon"], int(c["delay"] or 10**6)))
    return found


def _stay(repository: Any, subject: str, principal: Any, section: dict[str, Any]
          ) -> dict[str, str]:
    """The latest stay: when the patient left (or is expected to), from which hospital and
    service, to where (a transfer to another establishment is said as such), and why."""
    found = repository.search("Encounter", [("subject", subject), ("_sort", "-_lastUpdated"),
                                            ("_count", "1")], principal)
    encounter = next((e["resource"] for e in found.get("entry") or []
                      if e["resource"].get("resourceType") == "Encounter"), None)
    if encounter is None:
        return {}
    provider = str((encounter.get("serviceProvider") or {}).get("reference", ""))
    hospital = _organization_name(repository, provider, principal)
    disposition = (encounter.get("hospitalization") or {}).get("dischargeDisposition") or {}
    planned = encounter.get("status") in section.get("planned_statuses", ())
    estimated = next((str(e.get("valueDate") or e.get("valueDateTime") or "")
                      for e in encounter.get("extension") or []
                      if e.get("url") == notice_rules()["estimated_discharge_extension"]), "")
    reasons, _ = _codes(encounter.get("reasonCode") or [])
    return {"discharged": "" if planned else str((encounter.get("period") or {}).get("end", "")),
            "planned": "yes" if planned else "",
            "expected": estimated,
            "hospital": hospital,
            "service": _service(repository, encounter, provider, principal),
            "destination": str(disposition.get("text") or ""),
            "transfer": "yes" if knowledge().is_transfer(disposition) else "",
            "reason": "; ".join(reasons)}


def _organization_name(repository: Any, reference: str, principal: Any) -> str:
    if not reference.startswith("Organization/"):
        return ""
    try:
        return str(repository.read("Organization", reference.split("/", 1)[1],
                                   principal).get("name") or "")
    except Exception:  # not readable by this caller: left out
        return ""


def _service(repository: Any, encounter: dict[str, Any], provider: str, principal: Any) -> str:
    """The care unit: the organisation the stay's performer (documentationOf/serviceEvent/
    performer, the letter's "Responsable de la prise en charge") acted for, when it is not the
    hospital itself; else the Encounter's serviceType."""
    for participant in encounter.get("participant") or []:
        reference = str((participant.get("individual") or {}).get("reference", ""))
        if not reference.startswith("PractitionerRole/"):
            continue
        try:
            role = repository.read("PractitionerRole", reference.split("/", 1)[1], principal)
        except Exception:
            continue
        organization = str((role.get("organization") or {}).get("reference", ""))
        if organization and organization != provider:
            name = _organization_name(repository, organization, principal)
            if name:
                return name
    labels, _ = _codes([encounter["serviceType"]]) if encounter.get("serviceType") else ([], None)
    return labels[0] if labels else ""


def postcode_of(patient: dict[str, Any]) -> str:
    return next((str(a["postalCode"]) for a in patient.get("address") or []
                 if a.get("postalCode")), "")


def _address(patient: dict[str, Any]) -> str:
    for address in patient.get("address") or []:
        parts = [" ".join(address.get("line") or []), " ".join(
            part for part in (address.get("postalCode"), address.get("city")) if part)]
        text = ", ".join(part for part in parts if part)
        if text:
            return text
    return ""


def _review_line(task: dict[str, Any], moment: datetime) -> dict[str, Any]:
    """A review as the page says it: done (when, by whom), overdue, or due (on which day),
    and its checks (code, words) for the form that completes it."""
    due = str(((task.get("restriction") or {}).get("period") or {}).get("end", ""))
    last = (task.get("note") or [{}])[-1]
    overdue = bool(due) and task.get("status") != "completed" and \
        due[:10] < moment.date().isoformat()
    return {"id": str(task.get("id", "")), "status": str(task.get("status", "")),
            "due": due, "overdue": "yes" if overdue else "",
            "done_at": str((task.get("executionPeriod") or {}).get("end", "")),
            "done_by": str(last.get("authorString", "")) if task.get("status") == "completed"
            else "",
            "checks": _checks(task)}


def _checks(task: dict[str, Any]) -> list[tuple[str, str]]:
    """The review's checks (code, words)."""
    found = []
    for check in task.get("input") or []:
        concept = check.get("type") or {}
        code = next((c["code"] for c in concept.get("coding") or [] if c.get("code")), None)
        if code:
            found.append((str(code), str(concept.get("text") or code)))
    return found


def _mssante_status() -> dict[str, Any]:
    """How the MSSanté channel marks a Communication (`mappings/mssante.yaml`, read as data)."""
    return _status_rules(get_settings().mappings_dir)


@cache
def _status_rules(folder: Path) -> dict[str, Any]:
    return dict((load_mapping_file(folder / "mssante.yaml") or {}).get("status") or {})


def _mailed() -> bool:
    return get_settings().mssante_enabled


def _mail_state(message: dict[str, Any]) -> str | None:
    system = _mssante_status().get("state_tag_system")
    return next((tag.get("code") for tag in (message.get("meta") or {}).get("tag") or []
                 if tag.get("system") == system), None)


def _read_at(message: dict[str, Any]) -> str:
    url = _mssante_status().get("read_extension")
    return next((str(e.get("valueDateTime", "")) for e in message.get("extension") or []
                 if e.get("url") == url), "")


def _recipient_name(repository: Any, recipient: dict[str, Any]) -> str:
    reference = recipient.get("reference") or ""
    kind, _, resource_id = reference.partition("/")
    if kind in ("Practitioner", "PractitionerRole", "Organization", "RelatedPerson"):
        try:
            resource = repository.read(kind, resource_id)
        except Exception:
            return recipient.get("display") or reference
        if kind == "PractitionerRole":
            practitioner = (resource.get("practitioner") or {}).get("reference", "")
            if practitioner.startswith("Practitioner/"):
                try:
                    return human_name(repository.read("Practitioner", practitioner[13:]))
                except Exception:
                    return practitioner
        return resource.get("name") if kind == "Organization" else human_name(resource)
    return recipient.get("display") or reference


def render(discharges_: list[Discharge], principal: Any, repository: Any = None,
           csrf: str = "", person: str = "", *, view: str | None = None,
           confirmation: str = "", rules: CoordinationRules | None = None) -> str:
    """The page; `csrf`: what its forms carry in their hidden `csrf` field; `person`: who is
    logged in (a login session; '' for a bearer token); `view`: the filter shown;
    `confirmation`: what the last action did, in words."""
    rules = rules or load_rules()
    section = rules.section("page")
    template = _TEMPLATES.get_template("coordinator.html")
    return template.render(
        discharges=discharges_,
        territory=territory_name(repository, principal),
        count=len(discharges_),
        csrf_token=csrf,
        person=person,
        views=list((section.get("views") or {}).items()),
        all_view=section.get("all_view", ""),
        view=view or "",
        confirmation=confirmation,
    )


def confirmation(rules: CoordinationRules, done: str | None) -> str:
    """What an action of the page did, in words (its key comes back in the 303's query)."""
    return str((rules.section("page").get("confirmations") or {}).get(done or "", ""))


def territory_name(repository: Any, principal: Any, rules: CoordinationRules | None = None
                   ) -> str:
    """The coordinator's CPTS (or DAC) by its name, as the record's Organization holds it;
    its identifier when the record has no name for it."""
    cpts = getattr(principal, "cpts", None) or ""
    if not cpts or repository is None:
        return cpts
    system = (rules or load_rules()).section("coordinator").get(
        "territory_identifier_system", "urn:liaison:cpts")
    found = repository.search("Organization", [("identifier", f"{system}|{cpts}")])
    names = [e["resource"].get("name") for e in found.get("entry") or []
             if e["resource"].get("name")]
    return str(names[0]) if names else cpts
