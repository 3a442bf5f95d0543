"""What coordination reads from the shared record: a patient's care teams and their members.

Two implementations, chosen by where letters go (`shared_care_teams`): the embedded record
(`record_reader.RecordCareTeams`, a few indexed look-ups in its tables) and any FHIR R4 server
over REST (`rest_record.RestCareTeams`, searches with `_include`). The care-team merge
(`careteam_merge.known_carers`) sees only this protocol, so it merges the same way whichever
record holds the earlier stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

# "Practitioner/1" → the resource; None: referenced but not (or no longer) in the record
Members = dict[str, dict[str, Any] | None]


class CareTeamSource(Protocol):
    def patient_ids(self, identifiers: Iterable[tuple[str, str]]) -> list[str]:
        """Ids of the Patients holding any of `identifiers` (system, value), sorted."""
        ...

    def care_teams(self, patient_ids: list[str]) -> tuple[list[dict[str, Any]], Members]:
        """The CareTeams of `patient_ids` (patient by patient, in record order) and their
        members: every Practitioner / PractitionerRole they reference, and the Practitioner of
        each PractitionerRole."""
        ...


def member_key(reference: Any) -> str | None:
    """"Practitioner/1" for a reference to a Practitioner or PractitionerRole of the record
    (relative, or absolute on the record's base URL: the last two segments)."""
    if not isinstance(reference, str):
        return None
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] not in ("Practitioner", "PractitionerRole") or not parts[-1]:
        return None
    return f"{parts[-2]}/{parts[-1]}"


def in_patient_order(teams: list[dict[str, Any]], patient_ids: list[str]) -> list[dict[str, Any]]:
    """Each patient's teams in turn, in the record's order within a patient (a stable sort)."""
    order = {f"Patient/{patient_id}": rank for rank, patient_id in enumerate(patient_ids)}
    return sorted(teams, key=lambda t: order.get(
        (t.get("subject") or {}).get("reference") or "", 0))
