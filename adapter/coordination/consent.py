"""Patient consent: what a letter may share, with whom, and who may read it afterwards.

Two inputs decide:
- the letter's confidentialityCode (HL7 v3 N / R / V): R and V letters are *restricted* — their
  per-letter resources are readable only by the letter's named recipients (and its author);
- the opposition registry (`liaison consent oppose|withdraw`, the API; mirrored as FHIR Consent):
  an opposed patient's letter is *restricted* too, and nothing is pushed to anyone beyond the
  named recipients: no coordinator, no carers from earlier stays, no Communication to a médecin
  traitant who is not a named recipient, no subscription notification to others.

Where it is enforced:
- `apply_to_bundle` (ingestion, before the push): drops Communications and recipients beyond the
  named ones, labels per-letter resources with `meta.security` (confidentiality) and one
  `meta.tag` per allowed reader (`urn:liaison:restricted-reader|<idNat_PS>`), so the restriction
  travels with the data to any FHIR server;
- the embedded record's read filter (`adapter.record.access`, same tag system) keeps a tagged
  resource from every professional or coordinator whose idNat_PS is not among its tags, in
  searches (no leak by count) and direct reads (403);
- `reader_may_see` / `filter_searchset`: the same rule for what the coordination part sends
  outside the record (subscription notifications);
- every decision is written to `coordination_audit` with its reason (`audit`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, bindparam, event, insert
from sqlalchemy import select as sa_select
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, select

from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.rules import CoordinationRules, load_rules
from adapter.errors import BadRequest
from adapter.mapping.identity import create_if_absent, full_url
from adapter.mapping.ins import ins_problem
from adapter.mapping.summary import LetterSummary
from adapter.national_ids import ins_systems
from adapter.store.coordination_tables import ConsentDecision, SharingAudit, utcnow
from adapter.store.engine import session_scope, table_of
from adapter.store.record_tables import RESTRICTED_READER_TAG

DECISIONS = ("oppose", "withdraw")

# Readers that write letters or run liaison see everything they are otherwise allowed to.
_UNRESTRICTED_READERS = ("hospital", "system")


@dataclass(frozen=True)
class SharingDecision:
    """What one letter may share."""

    confidentiality: str  # N | R | V
    opposed: bool
    named_recipients: frozenset[str]  # idNat_PS of the letter's informationRecipients
    allowed_readers: frozenset[str] = field(default_factory=frozenset)
    reasons: tuple[str, ...] = ()

    @property
    def restricted(self) -> bool:
        return bool(self.allowed_readers) or self.opposed or self.confidentiality in ("R", "V")

    @property
    def beyond_named_allowed(self) -> bool:
        """May liaison tell people the letter does not name (coordinator, earlier carers…)?"""
        return not self.opposed and self.confidentiality not in ("R", "V")

    def may_reach(self, idnat: str | None) -> bool:
        return self.beyond_named_allowed or (idnat is not None and idnat in self.named_recipients)


def _wanted(identifiers: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The identifiers a decision may be recorded under for this patient."""
    pairs = [(s, v) for s, v in identifiers if s and v]
    if not pairs:
        return set()
    # INS-NIR, test NIR and NIA carry the same matricule: an opposition under one holds for all
    ins_systems = tuple(load_rules().section("consent").get("ins_systems") or ())
    return set(pairs) | {(family, v) for s, v in pairs if s in ins_systems
                         for family in ins_systems}


def current_decision(
    session: Session, identifiers: Iterable[tuple[str, str]]
) -> ConsentDecision | None:
    """The decision in force for a patient known by any of `identifiers` (latest wins)."""
    wanted = _wanted(identifiers)
    if not wanted:
        return None
    # One indexed IN on the values, systems checked here: building an OR of (system AND value)
    # clauses cost more than the query itself on the accept path.
    query = (
        select(ConsentDecision)
        .where(col(ConsentDecision.patient_value).in_({value for _, value in wanted}))
        .order_by(col(ConsentDecision.recorded_at).desc(), col(ConsentDecision.id).desc())
    )
    return next(
        (d for d in session.exec(query) if (d.patient_system, d.patient_value) in wanted), None
    )


def _latest_decisions() -> Select[Any]:
    table = table_of(ConsentDecision)
    return (
        sa_select(table.c.patient_system, table.c.patient_value, table.c.decision)
        .where(table.c.patient_value.in_(bindparam("values", expanding=True)))
        .order_by(table.c.recorded_at.desc(), table.c.id.desc())
    )


# Built once: every accepted letter asks, and building the ORM query and its objects cost more
# (≈0.4 ms) than the indexed look-up itself.
_LATEST_DECISIONS = _latest_decisions()


def is_opposed(session: Session, identifiers: Iterable[tuple[str, str]]) -> bool:
    """Whether the decision in force (as `current_decision` finds it) is an opposition."""
    wanted = _wanted(identifiers)
    if not wanted:
        return False
    rows = session.execute(_LATEST_DECISIONS, {"values": sorted({v for _, v in wanted})})
    latest = next((d for system, value, d in rows if (system, value) in wanted), None)
    return latest == "oppose"


def record_decision(
    session: Session,
    patient: tuple[str, str],
    decision: str,
    *,
    recorded_by: str | None = None,
    source: str = "api",
    note: str | None = None,
) -> ConsentDecision:
    """Store an opposition or its withdrawal (history kept)."""
    if decision not in DECISIONS:
        raise BadRequest(f"consent decision must be one of {DECISIONS}, not {decision!r}")
    system, value = patient
    if not system or not value:
        raise BadRequest("a patient identifier (system and value) is required")
    row = ConsentDecision(
        patient_system=system,
        patient_value=value,
        decision=decision,
        recorded_by=recorded_by,
        source=source,
        note=note,
    )
    session.add(row)
    audit(
        session,
        letter_id=None,
        patient_value=value,
        action="consent",
        target=recorded_by,
        outcome="restricted" if decision == "oppose" else "shared",
        reason=f"patient {'opposed sharing' if decision == 'oppose' else 'withdrew opposition'}"
        f" (recorded via {source}{f': {note}' if note else ''})",
    )
    return row


def register(
    engine: Any,
    patient: tuple[str, str],
    decision: str,
    *,
    recorded_by: str | None,
    source: str,
    note: str | None = None,
) -> dict[str, Any]:
    """Register the decision and queue its FHIR Consent for the record, in one transaction;
    returns the Consent."""
    from adapter.push.worker import FHIR_TRANSACTION, notify
    from adapter.store import outbox
    from adapter.store.letters import patient_key

    if patient[0] in ins_systems() and (problem := ins_problem(patient[1])):
        raise BadRequest(problem)
    with session_scope(engine) as session:
        record_decision(session, patient, decision, recorded_by=recorded_by, source=source,
                        note=note)
        bundle = consent_bundle(patient, decision, load_rules())
        outbox.enqueue(session, FHIR_TRANSACTION, bundle, patient_key([patient]))
    notify()
    return bundle["entry"][1]["resource"]


def decide(letter: LetterSummary, session: Session) -> SharingDecision:
    """The sharing decision for a letter."""
    confidentiality = (letter.confidentiality or "N").upper()
    identifiers = list(letter.patient_identifiers)
    if letter.ins:
        identifiers.append(letter.ins)
    opposed = is_opposed(session, identifiers)
    named = frozenset(letter.recipient_idnats)
    reasons: list[str] = []
    allowed: frozenset[str] = frozenset()
    if confidentiality in ("R", "V"):
        reasons.append(f"letter confidentiality {confidentiality}: named recipients only")
    if opposed:
        reasons.append("patient opposed sharing: named recipients only")
    if reasons:
        author = letter.author_idnat
        allowed = named | ({author} if author else set())
    return SharingDecision(confidentiality, opposed, named, allowed, tuple(reasons))


def apply_to_bundle(
    bundle: dict[str, Any],
    decision: SharingDecision,
    rules: CoordinationRules,
    *,
    session: Session | None = None,
    letter_id: str | None = None,
    patient_value: str | None = None,
) -> dict[str, Any]:
    """Enforce `decision` on the bundle in place (see the module docstring); returns it."""
    view = BundleView(bundle)
    if not decision.beyond_named_allowed:
        for communication in list(view.resources("Communication")):
            _keep_named_recipients(view, communication, decision, session, letter_id, patient_value)
    if decision.opposed:
        # CareTeam membership grants reading the patient's record: only the named stay in it
        for care_team in view.resources("CareTeam"):
            _keep_named_participants(view, care_team, decision, session, letter_id, patient_value)
    if decision.restricted:
        section = rules.section("consent")
        reference_types = set(section.get("reference_types") or ())
        for resource in view.resources():
            if resource.get("resourceType") not in reference_types:
                _label(resource, decision, section)
        if session is not None:
            audit(
                session,
                letter_id=letter_id,
                patient_value=patient_value,
                action="read-restriction",
                target=" ".join(sorted(decision.allowed_readers)) or None,
                outcome="restricted",
                reason="; ".join(decision.reasons),
            )
    return bundle


def _keep_named_recipients(
    view: BundleView,
    communication: dict[str, Any],
    decision: SharingDecision,
    session: Session | None,
    letter_id: str | None,
    patient_value: str | None,
) -> None:
    kept = []
    for recipient in communication.get("recipient") or []:
        idnats = view.idnats_of(recipient.get("reference"))
        if idnats & decision.named_recipients:
            kept.append(recipient)
        elif session is not None:
            audit(
                session,
                letter_id=letter_id,
                patient_value=patient_value,
                action="communication",
                target=" ".join(sorted(idnats)) or recipient.get("reference"),
                outcome="withheld",
                reason="; ".join(decision.reasons) + " — not a named recipient of the letter",
            )
    if kept:
        communication["recipient"] = kept
    else:
        view.remove(communication)


def _keep_named_participants(
    view: BundleView,
    care_team: dict[str, Any],
    decision: SharingDecision,
    session: Session | None,
    letter_id: str | None,
    patient_value: str | None,
) -> None:
    kept = []
    for participant in care_team.get("participant") or []:
        reference = (participant.get("member") or {}).get("reference")
        member = view.by_reference(reference) or {}
        idnats = view.idnats_of(reference)
        professional = member.get("resourceType") in ("Practitioner", "PractitionerRole")
        if not professional or idnats & decision.allowed_readers:
            kept.append(participant)
            continue
        if session is not None:
            audit(
                session,
                letter_id=letter_id,
                patient_value=patient_value,
                action="care-team",
                target=" ".join(sorted(idnats)) or reference,
                outcome="withheld",
                reason="; ".join(decision.reasons) + " — not named by the letter",
            )
    care_team["participant"] = kept


def _label(resource: dict[str, Any], decision: SharingDecision, section: dict[str, Any]) -> None:
    meta = resource.setdefault("meta", {})
    security = meta.setdefault("security", [])
    system = section.get("confidentiality_system")
    code = decision.confidentiality if decision.confidentiality in ("R", "V") else "R"
    if not any(s.get("system") == system for s in security):
        security.append({"system": system, "code": code})
    tags = meta.setdefault("tag", [])
    tag_system = RESTRICTED_READER_TAG
    present = {t.get("code") for t in tags if t.get("system") == tag_system}
    for reader in sorted(decision.allowed_readers - present):
        tags.append({"system": tag_system, "code": reader})
    if not decision.allowed_readers and "none" not in present:
        # restricted with nobody named: a marker tag keeps every outside reader out
        tags.append({"system": tag_system, "code": "none"})


def allowed_readers_of(resource: dict[str, Any], tag_system: str) -> set[str] | None:
    """The readers a resource is restricted to, or None if it is not restricted."""
    all_tags = (resource.get("meta") or {}).get("tag") or []
    tags = [t for t in all_tags if t.get("system") == tag_system]
    if not tags:
        return None
    return {t.get("code") for t in tags if t.get("code")}


def reader_may_see(
    resource: dict[str, Any], principal: Any, tag_system: str = RESTRICTED_READER_TAG
) -> bool:
    """False when `resource` is restricted and the reader is not one of its allowed readers."""
    allowed = allowed_readers_of(resource, tag_system)
    if allowed is None or principal is None:
        return True
    if getattr(principal, "kind", None) in _UNRESTRICTED_READERS:
        return True
    return getattr(principal, "idnat", None) in allowed


def filter_searchset(
    bundle: dict[str, Any], principal: Any, tag_system: str = RESTRICTED_READER_TAG
) -> dict[str, Any]:
    """A copy of a searchset Bundle without the entries the reader may not see."""
    entries = [
        e
        for e in bundle.get("entry") or []
        if reader_may_see(e.get("resource") or {}, principal, tag_system)
    ]
    removed = len(bundle.get("entry") or []) - len(entries)
    filtered = {**bundle, "entry": entries}
    if isinstance(bundle.get("total"), int):
        filtered["total"] = max(0, bundle["total"] - removed)
    return filtered


_PENDING_AUDIT = "liaison.coordination.pending_audit"


def audit(
    session: Session,
    *,
    letter_id: str | None,
    patient_value: str | None,
    action: str,
    target: str | None,
    outcome: str,
    reason: str,
) -> None:
    """Note a sharing decision; written with the session's commit (see `write_audit`)."""
    session.connection()  # in the session's transaction, so that a rollback drops it too
    session.info.setdefault(_PENDING_AUDIT, []).append(
        {"at": utcnow(), "letter_id": letter_id, "patient_value": patient_value,
         "action": action, "target": target, "outcome": outcome, "reason": reason}
    )


def write_audit(session: Session) -> None:
    """Insert the rows `audit` noted in this session, in one statement.

    A letter notes a few decisions; as ORM objects flushed at commit they cost ≈0.4 ms, as one
    multi-row insert ≈0.1 ms. Run just before the commit, so on SQLite the write lock is taken
    at the end of the work, as the ORM flush took it.
    """
    rows = session.info.pop(_PENDING_AUDIT, None)
    if rows:
        session.execute(insert(table_of(SharingAudit)), rows)


@event.listens_for(OrmSession, "before_commit")
def _write_noted_audit(session: OrmSession) -> None:
    write_audit(session)  # type: ignore[arg-type]  # every commit writes what was noted


@event.listens_for(OrmSession, "after_soft_rollback")
def _drop_noted_audit(session: OrmSession, previous: SessionTransaction) -> None:
    if previous.parent is None:  # the whole unit of work is undone: its decisions were not made
        session.info.pop(_PENDING_AUDIT, None)


def consent_resource(
    patient: tuple[str, str], decision: str, rules: CoordinationRules, when: datetime | None = None
) -> dict[str, Any]:
    """The opposition as an R4 Consent (active while opposed, inactive once withdrawn)."""
    section = rules.section("consent")
    system, value = patient
    digest = hashlib.sha256(f"{system}|{value}".encode()).hexdigest()[:32]
    return {
        "resourceType": "Consent",
        "identifier": [{"system": section["consent_identifier_system"], "value": digest}],
        "status": "active" if decision == "oppose" else "inactive",
        "scope": {"coding": [section["scope"]]},
        "category": [{"coding": [section["category"]]}],
        "patient": {"identifier": {"system": system, "value": value}},
        "dateTime": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
        "policyRule": {"coding": [section["policy_rule"]]},
        "provision": {"type": "deny"},
    }


def consent_bundle(
    patient: tuple[str, str], decision: str, rules: CoordinationRules
) -> dict[str, Any]:
    """A transaction writing the Consent by conditional update (one Consent per patient),
    with the Patient as a conditional create so an opposition may precede any letter."""

    system, value = patient
    patient_url = full_url("Patient", system, value)
    consent = consent_resource(patient, decision, rules)
    consent["patient"] = {"reference": patient_url}
    identifier = consent["identifier"][0]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": system, "value": value}],
                },
                "request": create_if_absent("Patient", {"system": system, "value": value}),
            },
            {
                "fullUrl": full_url("Consent", identifier["system"], identifier["value"]),
                "resource": consent,
                "request": {
                    "method": "PUT",
                    "url": f"Consent?identifier={identifier['system']}|{identifier['value']}",
                },
            },
        ],
    }
