"""The coordination step between conversion and push: `enrich(conversion, …) -> Conversion`.

In order: decide what the letter may share (consent), add the territory's pathway coordinator to
the CareTeam with a Communication, carry the carers already in the patient's CareTeam in the
record into the new one and tell them, enforce the consent decision on the whole bundle, emit
the SOR discharge event. Every decision is audited and summarised in the conversion report.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapter.coordination import consent, review
from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.careteam_merge import carry_over, known_carers, team_identifiers
from adapter.coordination.notice import KIND as NOTICE
from adapter.coordination.notifications import discharge_event
from adapter.coordination.record_port import CareTeamSource
from adapter.coordination.record_reader import RecordCareTeams
from adapter.coordination.resources import (
    assigned_by_a_coordinator,
    communicated_idnats,
    communication,
    coordinator_participant,
    coordinator_practitioner,
    ensure_practitioner,
    ensure_territory_organization,
    has_origin,
    origin_extension,
    participant_idnats,
)
from adapter.coordination.rules import CoordinationRules, CoordinatorSource, load_rules
from adapter.errors import TargetError
from adapter.mapping.engine import Conversion
from adapter.mapping.summary import LetterSummary
from adapter.record.repository import Repository
from adapter.store.db import get_engine, session_scope


def _warn(report: dict[str, Any], message: str) -> None:
    report.setdefault("issue", []).append(
        {"severity": "warning", "code": "transient", "diagnostics": message})


def _info(report: dict[str, Any], message: str, expression: str | None = None) -> None:
    issue: dict[str, Any] = {"severity": "information", "code": "informational"}
    issue["diagnostics"] = message
    if expression:
        issue["expression"] = [expression]
    report.setdefault("issue", []).append(issue)


def _patient_address(view: BundleView, letter: LetterSummary) -> tuple[str | None, str | None]:
    postcode = letter.patient_postal_code
    city = None
    patient = view.first("Patient") or {}
    for address in patient.get("address") or []:
        postcode = postcode or address.get("postalCode")
        city = city or address.get("city")
    return postcode, city


def enrich(
    conversion: Conversion,
    directory: CoordinatorSource | None = None,
    record: CareTeamSource | Repository | None = None,
    *,
    rules: CoordinationRules | None = None,
    engine: Engine | None = None,
    now: datetime | None = None,
    in_place: bool = False,
) -> Conversion:
    """A copy of `conversion` with coordination applied.

    `directory` gives the coordinators (`DirectoryCoordinators`: the imported local lists, or
    `CsvCoordinators`); `record` is the shared record to merge the care team with
    (`record_port.CareTeamSource`; the embedded record's Repository is read through its own).
    `in_place`: the caller owns the conversion and drops it (ingestion), so its bundle and
    report are changed rather than deep-copied first (the copy of a ~100 KB bundle is ~2 ms).
    """
    rules = rules or load_rules()
    if isinstance(record, Repository):
        record = RecordCareTeams(record)
    letter = conversion.letter
    if in_place:
        bundle, report = conversion.bundle, conversion.report
    else:
        bundle, report = copy.deepcopy(conversion.bundle), copy.deepcopy(conversion.report)
    report = report or {"resourceType": "OperationOutcome", "issue": []}
    view = BundleView(bundle)
    letter_id, patient_value = _audit_keys(letter)
    with session_scope(engine or get_engine()) as session:
        decision = consent.decide(letter, session)
        for reason in decision.reasons:
            _info(report, f"consent: {reason}")
        care_team = view.first("CareTeam")
        if care_team is not None:
            _mark_origins(view, care_team, letter, rules)
            # carers already known first: a coordinator from an earlier stay keeps their period
            _merge_known_carers(view, care_team, letter, rules, record, decision, session, report)
            _add_coordinators(view, care_team, letter, rules, directory, decision, session, report)
        else:
            _info(report, "coordination: the bundle has no CareTeam; coordinator not added")
        consent.apply_to_bundle(
            bundle,
            decision,
            rules,
            session=session,
            letter_id=letter_id,
            patient_value=patient_value,
        )
        # a notice is not the discharge's SOR event: the letter, or the discharge itself, is
        event = discharge_event(view, letter, rules, now) if letter.kind != NOTICE else None
        if event is not None:
            if decision.restricted:
                consent.apply_to_bundle(bundle, decision, rules)  # labels the event too
            _info(report, "notification: SOR discharge event emitted (CommunicationRequest)")
        consent.write_audit(session)  # the letter's decisions in one insert, then the commit
    return dataclasses.replace(conversion, bundle=bundle, report=report)


def _mark_origins(
    view: BundleView, care_team: dict[str, Any], letter: LetterSummary, rules: CoordinationRules
) -> None:
    """Participants named by this letter: record which letter and hospital added them."""
    custodian = letter.custodian
    added_by = f"letter custodian {custodian[1]}" if custodian else "discharge letter"
    for participant in care_team.get("participant") or []:
        if not has_origin(participant, rules):
            participant.setdefault("extension", []).append(
                origin_extension(
                    rules, source=letter.document_id, added_by=added_by
                )
            )


def _audit_keys(letter: LetterSummary) -> tuple[str | None, str | None]:
    """What the sharing audit records of a letter: its document id and the patient's INS."""
    return letter.document_id[1] or None, (letter.ins or ("", ""))[1] or None


def _audit_care_team(session: Session, letter: LetterSummary, idnat: str, outcome: str,
                     reason: str) -> None:
    letter_id, patient_value = _audit_keys(letter)
    consent.audit(session, letter_id=letter_id, patient_value=patient_value,
                  action="care-team", target=idnat, outcome=outcome, reason=reason)


def _add_coordinators(
    view: BundleView,
    care_team: dict[str, Any],
    letter: LetterSummary,
    rules: CoordinationRules,
    directory: CoordinatorSource | None,
    decision: consent.SharingDecision,
    session: Session,
    report: dict[str, Any],
) -> None:
    if not rules.coordinator.enabled:
        return
    postcode, city = _patient_address(view, letter)
    coordinators = rules.coordinators_for(postcode, city, directory)
    if not coordinators:
        _info(report, "coordination: no pathway coordinator covers the patient's address")
        return
    present = participant_idnats(view, care_team)
    for coordinator in coordinators:
        idnat = coordinator.identifier[1]
        if idnat in present and decision.may_reach(idnat):
            # carried over from an earlier stay: it still acts for its territory's CPTS
            _act_for_territory(view, care_team, idnat,
                               ensure_territory_organization(view, coordinator, rules))
        if not decision.may_reach(idnat):
            _audit_care_team(session, letter, idnat, "withheld",
                             "coordinator not added: " + "; ".join(decision.reasons))
            _info(report, f"coordination: coordinator of {coordinator.territory_id} withheld")
            continue
        member_url = ensure_practitioner(view, coordinator_practitioner(coordinator, rules))
        territory_url = ensure_territory_organization(view, coordinator, rules)
        if idnat not in present:
            care_team.setdefault("participant", []).append(coordinator_participant(
                coordinator, rules, member_url=member_url, territory_url=territory_url,
                source=letter.document_id,
                since=letter.effective_time or None))
        if idnat not in communicated_idnats(view):
            reason = rules.section("communication").get("reason_coordinator", "Sortie")
            communication(
                view,
                rules,
                letter=letter,
                recipient_url=member_url,
                recipient_key=idnat,
                reason=reason,
            )
        _audit_care_team(
            session, letter, idnat, "shared",
            f"pathway coordinator of {coordinator.territory_kind} {coordinator.territory_id}")
        _info(report, f"coordination: coordinator of {coordinator.territory_id} added")
        if letter.kind != NOTICE or _stay_ended(view):
            review.task_for_stay(view, letter, rules, territory_url)


def _stay_ended(view: BundleView) -> bool:
    return bool(((view.first("Encounter") or {}).get("period") or {}).get("end"))


def _act_for_territory(view: BundleView, care_team: dict[str, Any], idnat: str,
                       territory_url: str) -> None:
    """The coordinator's participant acts on behalf of its territory's organisation (its CPTS
    reads the patient through it), whatever stay first added it."""
    for participant in care_team.get("participant") or []:
        if idnat in view.idnats_of((participant.get("member") or {}).get("reference")) \
                and not participant.get("onBehalfOf"):
            participant["onBehalfOf"] = {"reference": territory_url}


def _merge_known_carers(
    view: BundleView,
    care_team: dict[str, Any],
    letter: LetterSummary,
    rules: CoordinationRules,
    record: CareTeamSource | None,
    decision: consent.SharingDecision,
    session: Session,
    report: dict[str, Any],
) -> None:
    section = rules.section("care_team_merge")
    if not section.get("enabled", True) or record is None:
        return
    ins = letter.ins
    if not ins:  # a hospital's local identifier joins nobody: no earlier care team to merge
        _info(report, "coordination: no INS, the care team is not merged with earlier ones")
        return
    present = participant_idnats(view, care_team)
    try:
        carers = known_carers(record, [ins], replacing=team_identifiers(care_team),
                              kept=lambda participant: assigned_by_a_coordinator(participant,
                                                                                 rules))
    except TargetError as unreadable:  # the letter is accepted without the merge
        _warn(report, f"coordination: the care team is not merged with earlier ones: "
                      f"{unreadable.message}")
        return
    for carer in carers:
        if carer.idnat is None or carer.idnat in present:
            continue
        if not decision.may_reach(carer.idnat):
            _audit_care_team(session, letter, carer.idnat, "withheld",
                             "known carer not carried over: " + "; ".join(decision.reasons))
            continue
        member_url = ensure_practitioner(view, carer.practitioner)
        source = carer.care_team_identifier
        origin = origin_extension(rules, source=source, added_by="earlier care team in the record")
        carry_over(view, care_team, carer, member_url, origin)
        present.add(carer.idnat)
        if carer.idnat not in communicated_idnats(view):
            reason = rules.section("communication").get("reason_known_carer", "Sortie")
            communication(
                view,
                rules,
                letter=letter,
                recipient_url=member_url,
                recipient_key=carer.idnat,
                reason=reason,
            )
        _audit_care_team(session, letter, carer.idnat, "shared",
                         "already in the patient's care team: kept and notified")
        _info(
            report, "coordination: a professional of the existing care team was kept and notified"
        )
