"""Merge a new stay's CareTeam with the patient's care team already in the record.

Professionals already caring for the patient (e.g. the home nurse named by an earlier stay) are
carried into the new CareTeam with their original period and origin (who added them, from which
letter), instead of being dropped when the new letter's CareTeam is written; they are then told
about the new letter like its named recipients.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapter.coordination.bundle_tools import IDNAT_PS, BundleView
from adapter.coordination.record_port import CareTeamSource, Members, member_key


@dataclass
class KnownCarer:
    """A practitioner found in one of the patient's CareTeams in the record."""

    practitioner: dict[str, Any]
    idnat: str | None
    roles: list[dict[str, Any]] = field(default_factory=list)
    period: dict[str, Any] | None = None
    extensions: list[dict[str, Any]] = field(default_factory=list)
    care_team_identifier: tuple[str, str] | None = None
    # the organisation the carer acts for (a coordinator: its CPTS, which reads through it)
    on_behalf_of: dict[str, Any] | None = None


def _idnat(practitioner: dict[str, Any]) -> str | None:
    for identifier in practitioner.get("identifier") or []:
        if identifier.get("system") == IDNAT_PS and identifier.get("value"):
            return identifier["value"]
    return None


def _resolve_member(reference: str, members: Members) -> dict[str, Any] | None:
    """The Practitioner behind a member reference (PractitionerRole → its practitioner)."""
    key = member_key(reference)
    resource = members.get(key) if key else None
    if resource is None:
        return None
    if resource.get("resourceType") == "PractitionerRole":
        practitioner_ref = (resource.get("practitioner") or {}).get("reference")
        return _resolve_member(practitioner_ref, members) if practitioner_ref else None
    return resource


def team_identifiers(team: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i.get("system", ""), i["value"]) for i in team.get("identifier") or []
            if i.get("value")}


def known_carers(
    record: CareTeamSource | None,
    patient_identifiers: list[tuple[str, str]],
    replacing: AbstractSet[tuple[str, str]] = frozenset(),
    kept: Callable[[dict[str, Any]], bool] = lambda _participant: False,
) -> list[KnownCarer]:
    """Practitioners of every CareTeam of the patient in the record, one per person.

    `replacing`: identifiers of the CareTeam being written; its earlier version (the same stay)
    is not an earlier care team: whom a corrected letter drops must not come back from it —
    but the participants `kept` says no letter named (a carer a coordinator assigned) stay."""
    if record is None:
        return []
    teams, members = record.care_teams(record.patient_ids(patient_identifiers))
    carers: dict[str, KnownCarer] = {}
    for team in teams:
        replaced = bool(replacing & team_identifiers(team))
        identifiers = [i for i in team.get("identifier") or [] if i.get("value")]
        team_identifier = (
            (identifiers[0].get("system", ""), identifiers[0]["value"]) if identifiers else None
        )
        for participant in team.get("participant") or []:
            if replaced and not kept(participant):
                continue
            reference = (participant.get("member") or {}).get("reference") or ""
            practitioner = _resolve_member(reference, members)
            if practitioner is None:
                continue
            key = _idnat(practitioner) or reference
            if key in carers:
                continue
            # copies: the new CareTeam gets them, the record reader's objects stay its own
            roles, period, extensions, on_behalf_of = orjson.loads(orjson.dumps(
                [participant.get("role") or [], participant.get("period"),
                 participant.get("extension") or [], participant.get("onBehalfOf")]))
            carers[key] = KnownCarer(
                practitioner=practitioner,
                idnat=_idnat(practitioner),
                roles=roles,
                period=period,
                extensions=extensions,
                care_team_identifier=team_identifier,
                on_behalf_of=on_behalf_of,
            )
    return list(carers.values())


def carry_over(
    view: BundleView,
    care_team: dict[str, Any],
    carer: KnownCarer,
    member_url: str,
    origin: dict[str, Any],
) -> dict[str, Any]:
    """Add a known carer to the new CareTeam keeping their period and origin; returns it."""
    participant: dict[str, Any] = {"member": {"reference": member_url}}
    if carer.roles:
        participant["role"] = carer.roles
    if carer.period:
        participant["period"] = carer.period
    if carer.on_behalf_of:
        participant["onBehalfOf"] = carer.on_behalf_of
    origin_url = origin["url"]
    kept = [e for e in carer.extensions if e.get("url") == origin_url]
    participant["extension"] = kept or [origin]
    care_team.setdefault("participant", []).append(participant)
    return participant
