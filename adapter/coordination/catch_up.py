"""Coordinators declared after letters arrived join the care teams of their territory.

At ingestion, a letter's care team gets the pathway coordinator the rules give for the patient's
address. A coordinator declared later (a CPTS that joins, a local list imported after) would
never see the patients already discharged: `catch_up` goes through the active CareTeams of the
embedded record, and for each one a coordinator of its patient's territory is missing from, it
queues a transaction through liaison's outbox (so it is delivered, retried and audited like a
letter): the CareTeam with the coordinator acting for its territory, and a Communication
telling the coordinator. Patients who opposed sharing, and restricted care teams, are left
alone. Sending it twice changes nothing (the coordinator is then in the team).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from adapter.coordination import consent, review
from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.coordinators import DirectoryCoordinators
from adapter.coordination.resources import (
    coordinator_participant,
    coordinator_practitioner,
    ensure_practitioner,
    ensure_territory_organization,
)
from adapter.coordination.rules import CoordinationRules, Coordinator, load_rules
from adapter.coordination.stays import review_key
from adapter.errors import Misconfigured
from adapter.mapping.identity import create_if_absent, full_url, identifier_query
from adapter.mapping.knowledge import knowledge
from adapter.national_ids import national_ids
from adapter.store.db import session_scope
from adapter.store.record_tables import RESTRICTED_READER_TAG

_PAGE = 200


@dataclass
class CatchUp:
    teams: int = 0  # active CareTeams looked at
    joined: int = 0  # care teams a coordinator was added to (transactions queued)


def catch_up(engine: Engine, *, now: datetime | None = None) -> CatchUp:
    """Add the missing coordinators to the active care teams of the embedded record."""
    from adapter.coordination import embedded_record
    from adapter.push.worker import FHIR_TRANSACTION, notify
    from adapter.store import outbox
    from adapter.store.letters import patient_key

    repository = embedded_record(engine)
    if repository is None:
        raise Misconfigured("the coordinators' catch-up reads liaison's embedded record; with "
                            "another shared record (LIAISON_TARGET_URL) it is not available")
    rules = load_rules()
    result = CatchUp()
    if not rules.coordinator.enabled:
        return result
    source = DirectoryCoordinators(engine, rules)
    moment = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    members: dict[str, dict[str, Any] | None] = {}
    for team in _active_teams(repository):
        result.teams += 1
        patient = _read(repository, (team.get("subject") or {}).get("reference"), members)
        if patient is None or _restricted(team):
            continue
        address: dict[str, Any] = next(iter(patient.get("address") or []), {})
        present = _idnats(repository, team, members)
        missing = [c for c in rules.coordinators_for(address.get("postalCode"),
                                                      address.get("city"), source)
                   if c.identifier[1] not in present]
        identifiers = [(i["system"], i["value"]) for i in patient.get("identifier") or []
                       if i.get("system") and i.get("value")]
        if not missing or not identifiers:
            continue
        with session_scope(engine) as session:
            if consent.is_opposed(session, identifiers):
                continue
            plans = repository.search("CarePlan", [("care-team", f"CareTeam/{team['id']}")])
            encounter = _read(repository, (team.get("encounter") or {}).get("reference"),
                              members)
            bundle = _joining(team, patient, missing, rules, moment,
                              [e["resource"] for e in plans.get("entry") or []], encounter)
            outbox.enqueue(session, FHIR_TRANSACTION, bundle, patient_key(identifiers))
        result.joined += 1
    if result.joined:
        notify()
    return result


def _active_teams(repository: Any) -> Any:
    params = [("status", "active"), ("_count", str(_PAGE))]
    while True:
        page = repository.search("CareTeam", params)
        yield from (e["resource"] for e in page.get("entry") or []
                    if e["resource"]["resourceType"] == "CareTeam")
        following = next((link["url"] for link in page.get("link") or []
                          if link["relation"] == "next"), None)
        if following is None:
            return
        params = [("status", "active"), ("_count", str(_PAGE)),
                  ("_cursor", following.rpartition("_cursor=")[2])]


def _read(repository: Any, reference: str | None,
          cache: dict[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    if not reference or "/" not in reference:
        return None
    if reference not in cache:
        try:
            cache[reference] = repository.read(*reference.split("/")[:2])
        except Exception:  # gone from the record: it names nobody
            cache[reference] = None
    return cache[reference]


def _idnats(repository: Any, team: dict[str, Any],
            cache: dict[str, dict[str, Any] | None]) -> set[str]:
    found: set[str] = set()
    for participant in team.get("participant") or []:
        member = _read(repository, (participant.get("member") or {}).get("reference"), cache)
        if member is not None and member["resourceType"] == "PractitionerRole":
            member = _read(repository, (member.get("practitioner") or {}).get("reference"),
                           cache)
        if member is not None:
            found |= national_ids(member.get("identifier"), "professional")
    return found


def _restricted(team: dict[str, Any]) -> bool:
    return any(tag.get("system") == RESTRICTED_READER_TAG
               for tag in (team.get("meta") or {}).get("tag") or [])


def _joining(team: dict[str, Any], patient: dict[str, Any], coordinators: list[Coordinator],
             rules: CoordinationRules, moment: str, plans: list[dict[str, Any]],
             encounter: dict[str, Any] | None) -> dict[str, Any]:
    """The transaction adding `coordinators` to `team`, each told by a Communication, and the
    stay's D+7 review owned by the first one's territory when the stay has ended."""
    view = BundleView({"resourceType": "Bundle", "type": "transaction", "entry": []})
    updated = {k: v for k, v in team.items() if k not in ("meta", "text")}
    source = next(((i["system"], i["value"]) for i in team.get("identifier") or []
                   if i.get("system") and i.get("value")), None)
    for coordinator in coordinators:
        member_url = ensure_practitioner(view, coordinator_practitioner(coordinator, rules))
        territory_url = ensure_territory_organization(view, coordinator, rules)
        updated.setdefault("participant", []).append(coordinator_participant(
            coordinator, rules, member_url=member_url, territory_url=territory_url,
            source=source, since=moment))
        _tell(view, rules, team, patient, plans, coordinator, member_url, moment)
    # owned by the first coordinator's territory, as a letter's review
    _review(view, rules, encounter, patient, plans,
            ensure_territory_organization(view, coordinators[0], rules))
    if source is not None:
        kind_query = identifier_query({"system": source[0], "value": source[1]})
        request = {"method": "PUT", "url": f"CareTeam?{kind_query}"}
    else:
        request = {"method": "PUT", "url": f"CareTeam/{team['id']}"}
    view.entries.append({"fullUrl": f"CareTeam/{team['id']}", "resource": updated,
                         "request": request})
    return view.bundle


def _review(view: BundleView, rules: CoordinationRules, encounter: dict[str, Any] | None,
            patient: dict[str, Any], plans: list[dict[str, Any]], owner_url: str) -> None:
    ended = ((encounter or {}).get("period") or {}).get("end")
    key = review_key(encounter) if encounter else None
    if not ended or not key:
        return
    try:
        discharged = datetime.fromisoformat(ended)
    except ValueError:
        return
    assert encounter is not None
    review.add_review(view, rules, stay=key, discharged=discharged, authored="",
                      owner_url=owner_url, references={
                          "focus": f"CarePlan/{plans[0]['id']}" if plans else None,
                          "for": f"Patient/{patient['id']}",
                          "encounter": f"Encounter/{encounter['id']}"})


def _tell(view: BundleView, rules: CoordinationRules, team: dict[str, Any],
          patient: dict[str, Any], plans: list[dict[str, Any]], coordinator: Coordinator,
          member_url: str, moment: str) -> None:
    section = rules.section("communication")
    identifier = {"system": section["identifier_system"],
                  "value": f"catch-up/{team['id']}/{coordinator.identifier[1]}"}
    reason = section.get("reason_coordinator", "Sortie")
    communication = {
        "resourceType": "Communication",
        "meta": {"profile": [knowledge().identifiers["profiles"]["Communication"]]},
        "identifier": [identifier], "status": "completed",
        "category": [{"coding": [section["category"]]}],
        "subject": {"reference": f"Patient/{patient['id']}"},
        "about": [{"reference": f"CarePlan/{plan['id']}"} for plan in plans],
        "recipient": [{"reference": member_url}], "sent": moment,
        "payload": [{"contentString": f"{reason} (coordination de parcours déclarée après "
                                      "la sortie)"}],
    }
    view.add(communication, full_url("Communication", identifier["system"], identifier["value"]),
             create_if_absent("Communication", identifier))
