"""The coordinator's page: recent discharges of the territory, what to organise, who is in the
care team (phone, MSSanté), which roles are missing, and whether the messages went out.

Everything is read from the record *as the coordinator* (the record only shows patients whose
CareTeam belongs to the coordinator's CPTS) and filtered again by the consent labels, then
rendered server-side with jinja2 — no front-end build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from adapter.config import get_settings
from adapter.coordination import review
from adapter.coordination.consent import reader_may_see
from adapter.coordination.french_dates import french_birth, french_moment
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
    stay: dict[str, str] = field(default_factory=dict)  # discharge, hospital, destination
    address: str = ""  # where the patient lives

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


def _human_name(resource: dict[str, Any]) -> str:
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
        name=_human_name(resource) if kind != "Organization" else resource.get("name", "?"),
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
            member.name = _human_name(resource)
            member.key = practitioner_ref
    qualifications = [q.get("code") or {} for q in resource.get("qualification") or []]
    qualification_labels, qualification_codes = _codes(qualifications)
    member.codes |= qualification_codes
    member.profession = member.profession or (", ".join(qualification_labels) or None)
    _telecom(resource, member)
    member.is_pcp = "pcp" in member.codes
    member.is_coordinator = rules.coordinator.role.code.casefold() in member.codes
    return member


def _activity_texts(repository: Any, care_plan: dict[str, Any]) -> list[str]:
    """What the plan asks for: inline details, or the requests its activities point at."""
    texts = []
    for activity in care_plan.get("activity") or []:
        detail = activity.get("detail") or {}
        reference = (activity.get("reference") or {}).get("reference") or ""
        target: dict[str, Any] = {}
        kind, _, resource_id = reference.partition("/")
        if kind and resource_id and "/" not in resource_id:
            try:
                target = repository.read(kind, resource_id)
            except Exception:  # a request the coordinator may not read is simply not listed
                target = {}
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
        if text:
            texts.append(text)
    return texts


def _fills(token: str, codes: set[str]) -> bool:
    # short tokens are codes ("60" = infirmier in TRE_G15): exact; words match inside labels
    return any(token == code or (len(token) >= 4 and token in code) for code in codes)


def missing_roles(
    activities: list[str], members: list[Member], rules: tuple[MissingRoleRule, ...]
) -> list[str]:
    """Roles the plan needs (by its words) that nobody in the team fills (by their codes)."""
    planned = " ".join(activities).casefold()
    team_codes: set[str] = set().union(*(m.codes for m in members)) if members else set()
    missing = []
    for rule in rules:
        needed = any(word in planned for word in rule.when_any)
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
            found.append({"received": received, "status": status, "model": row.model})
    return found


def discharges(
    repository: Any,
    principal: Any,
    rules: CoordinationRules | None = None,
    limit: int = 20,
    *,
    letters_engine: Any = None,
) -> list[Discharge]:
    """The territory's recent discharges as the coordinator may see them; `letters_engine`:
    liaison's database, where received letters are (the record may have a database of its
    own; default: the configured one)."""
    if letters_engine is None:
        from adapter.store.db import get_engine

        letters_engine = get_engine()
    rules = rules or load_rules()
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
        patient_id = subject.split("/", 1)[1]
        try:
            patient = repository.read("Patient", patient_id)
        except Exception:
            continue
        plans = _entries(
            repository.search("CarePlan", [("subject", subject)], principal), principal
        )
        activities = [text for plan in plans for text in _activity_texts(repository, plan)]
        members = _one_row_per_person(
            [m for p in team.get("participant") or [] if (m := _member(repository, p, rules))]
        )
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
        found.append(
            Discharge(
                patient_name=_human_name(patient),
                patient_birth=patient.get("birthDate"),
                patient_id=patient_id,
                last_updated=(team.get("meta") or {}).get("lastUpdated"),
                activities=activities,
                members=members,
                missing_roles=missing_roles(activities, members, rules.missing_roles),
                communications=communications,
                letters=letter_statuses(letters_engine, patient),
                reviews=[_review_line(task) for task in
                         review.reviews(repository, subject, principal, rules)],
                stay=_stay(repository, subject, principal),
                address=_address(patient),
            )
        )
        if len(found) >= limit:
            break
    return found


def _stay(repository: Any, subject: str, principal: Any) -> dict[str, str]:
    """The latest stay: when the patient left, from which hospital, to where (a transfer to
    another establishment is said as such)."""
    found = repository.search("Encounter", [("subject", subject), ("_sort", "-_lastUpdated"),
                                            ("_count", "1")], principal)
    encounter = next((e["resource"] for e in found.get("entry") or []
                      if e["resource"].get("resourceType") == "Encounter"), None)
    if encounter is None:
        return {}
    hospital = ""
    provider = str((encounter.get("serviceProvider") or {}).get("reference", ""))
    if provider.startswith("Organization/"):
        try:
            hospital = str(repository.read("Organization", provider.split("/", 1)[1],
                                           principal).get("name") or "")
        except Exception:  # not readable by this caller: left out
            hospital = ""
    disposition = (encounter.get("hospitalization") or {}).get("dischargeDisposition") or {}
    codes = {c.get("code") for c in disposition.get("coding") or []}
    transfers = {code for model in knowledge().section_models.values()
                 for code in model.get("transfer_dispositions") or []}
    return {"discharged": str((encounter.get("period") or {}).get("end", "")),
            "hospital": hospital,
            "destination": str(disposition.get("text") or ""),
            "transfer": "yes" if codes & transfers else ""}


def _address(patient: dict[str, Any]) -> str:
    for address in patient.get("address") or []:
        parts = [" ".join(address.get("line") or []), " ".join(
            part for part in (address.get("postalCode"), address.get("city")) if part)]
        text = ", ".join(part for part in parts if part)
        if text:
            return text
    return ""


def _review_line(task: dict[str, Any]) -> dict[str, Any]:
    """A review as the page says it: done (when, by whom), overdue, or due (on which day),
    and its checks (code, words) for the form that completes it."""
    due = str(((task.get("restriction") or {}).get("period") or {}).get("end", ""))
    last = (task.get("note") or [{}])[-1]
    overdue = bool(due) and task.get("status") != "completed" and \
        due[:10] < datetime.now(UTC).date().isoformat()
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
                    return _human_name(repository.read("Practitioner", practitioner[13:]))
                except Exception:
                    return practitioner
        return resource.get("name") if kind == "Organization" else _human_name(resource)
    return recipient.get("display") or reference


def render(discharges_: list[Discharge], principal: Any, repository: Any = None,
           csrf: str = "", person: str = "") -> str:
    """The page; `csrf`: what its forms carry in their hidden `csrf` field; `person`: who is
    logged in (a login session; '' for a bearer token)."""
    template = _TEMPLATES.get_template("coordinator.html")
    return template.render(
        discharges=discharges_,
        territory=territory_name(repository, principal),
        count=len(discharges_),
        csrf_token=csrf,
        person=person,
    )


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
