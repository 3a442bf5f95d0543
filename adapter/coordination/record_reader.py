"""What the care-team merge reads from the embedded record, in as few queries as it can.

Every accepted letter asks the record for the patient's earlier CareTeams. Through the generic
search that was two searches and one read per member (≈1.5 ms per letter, a sixth of accepting
it); most letters are about patients the record has no CareTeam for. So: one indexed token
look-up finds the patient (nothing more is asked when there is none), then one search gives the
CareTeams and two look-ups by id their members (PractitionerRoles, then their Practitioners):
the generic `_include` machinery cost twice as much for the same rows.

Only the record's public surface is used (`Repository.engine` / `.search`, `token_matches` and
`stored_rows`): the record may live in a database of its own. Reads are unfiltered, as the
merge's `Repository.read` (a trusted in-process caller) were.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session

_PAGE = 50  # what one search page gave before: Patients per identifier, CareTeams per patient
_MEMBER_KINDS = ("Practitioner", "PractitionerRole")

Members = dict[str, dict[str, Any] | None]  # "Practitioner/1" → the resource, None: not current


def _member_key(reference: Any) -> str | None:
    """"Practitioner/1" for a reference to a Practitioner or PractitionerRole of the record."""
    if not isinstance(reference, str):
        return None
    kind, _, rest = reference.partition("/")
    resource_id = rest.split("/")[0]
    return f"{kind}/{resource_id}" if kind in _MEMBER_KINDS and resource_id else None


class RecordCareTeams:
    """The patient's CareTeams in the embedded record (`adapter.record.repository.Repository`)."""

    def __init__(self, repository: Any) -> None:
        self.repository = repository

    def patient_ids(self, identifiers: Iterable[tuple[str, str]]) -> list[str]:
        """Ids of the Patients holding any of `identifiers` (system, value), sorted."""
        from adapter.record.search import token_matches

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
        order = {f"Patient/{patient_id}": rank for rank, patient_id in enumerate(patient_ids)}
        # one search per patient gave each patient's teams in turn: keep that order (stable)
        teams.sort(key=lambda t: order.get((t.get("subject") or {}).get("reference") or "", 0))
        wanted = {_member_key((p.get("member") or {}).get("reference"))
                  for team in teams for p in team.get("participant") or []}
        members: Members = {}
        with Session(self.repository.engine) as session:
            self._read_into(session, members, wanted)
            roles = [r for k, r in members.items() if r and k.startswith("PractitionerRole/")]
            self._read_into(session, members, {
                _member_key((role.get("practitioner") or {}).get("reference")) for role in roles})
        return teams, members

    @staticmethod
    def _read_into(session: Session, members: Members, keys: set[str | None]) -> None:
        from adapter.record.storage import loads, stored_rows

        wanted = {tuple(k.split("/", 1)) for k in keys if k and k not in members}
        if not wanted:
            return
        rows = stored_rows(session, wanted)  # type: ignore[arg-type]
        for kind, resource_id in wanted:
            row = rows.get((kind, resource_id))
            # absent or deleted: None, as reading it would have been refused (404 / 410)
            body = row.body if row is not None and not row.deleted else None
            members[f"{kind}/{resource_id}"] = loads(body) if body is not None else None


def care_team_reader(record: Any) -> RecordCareTeams | None:
    """The fast reader where `record` is the embedded record, else None (generic search)."""
    try:
        from adapter.record.repository import Repository
    except ModuleNotFoundError:
        return None
    return RecordCareTeams(record) if isinstance(record, Repository) else None
