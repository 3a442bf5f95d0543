"""The care teams of a patient in the embedded record, in as few queries as it can.

Every accepted letter asks the record for the patient's earlier CareTeams, and most letters are
about patients the record has no CareTeam for. So: one indexed token look-up finds the patient
(nothing more is asked when there is none), then one search gives the CareTeams and two
look-ups by id their members (PractitionerRoles, then their Practitioners), cheaper than the
generic `_include` machinery for the same rows. Reads are unfiltered: liaison reads for itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session

from adapter.coordination.record_port import Members, in_patient_order, member_key
from adapter.record.repository import Repository
from adapter.record.search import token_matches
from adapter.record.storage import loads, stored_rows

_PAGE = 50  # what one search page gave before: Patients per identifier, CareTeams per patient


class RecordCareTeams:
    """The patient's CareTeams in the embedded record (a `record_port.CareTeamSource`)."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    def patient_ids(self, identifiers: Iterable[tuple[str, str]]) -> list[str]:
        """Ids of the Patients holding any of `identifiers` (system, value), sorted."""
        keys = {("Patient", "identifier", s, v) for s, v in identifiers if s and v}
        if not keys:
            return []
        with Session(self.repository.engine) as session:
            found = token_matches(session, keys, limit=_PAGE)
        return sorted({patient_id for ids in found.values() for patient_id in ids})

    def care_teams(self, patient_ids: list[str]) -> tuple[list[dict[str, Any]], Members]:
        """The CareTeams of `patient_ids` (patient by patient, in record order) and their
        members: every Practitioner / PractitionerRole they reference, and the Practitioner of
        each PractitionerRole."""
        if not patient_ids:
            return [], {}
        subjects = ",".join(f"Patient/{patient_id}" for patient_id in patient_ids)
        params = [("subject", subjects), ("_count", str(_PAGE * len(patient_ids)))]
        found = self.repository.search("CareTeam", params)
        teams = [e["resource"] for e in found.get("entry") or []
                 if (e.get("resource") or {}).get("resourceType") == "CareTeam"]
        teams = in_patient_order(teams, patient_ids)
        wanted = {member_key((p.get("member") or {}).get("reference"))
                  for team in teams for p in team.get("participant") or []}
        members: Members = {}
        with Session(self.repository.engine) as session:
            self._read_into(session, members, wanted)
            roles = [r for k, r in members.items() if r and k.startswith("PractitionerRole/")]
            self._read_into(session, members, {
                member_key((role.get("practitioner") or {}).get("reference")) for role in roles})
        return teams, members

    @staticmethod
    def _read_into(session: Session, members: Members, keys: set[str | None]) -> None:
        wanted = {tuple(k.split("/", 1)) for k in keys if k and k not in members}
        if not wanted:
            return
        rows = stored_rows(session, wanted)  # type: ignore[arg-type]
        for kind, resource_id in wanted:
            row = rows.get((kind, resource_id))
            # absent or deleted: None, as reading it would have been refused (404 / 410)
            body = row.body if row is not None and not row.deleted else None
            members[f"{kind}/{resource_id}"] = loads(body) if body is not None else None
