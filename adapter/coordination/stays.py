"""One stay, one Encounter: the key a discharge notice and the letter of the same stay share.

A hospital numbers its stays (the letter's encompassingEncounter/id, the ADT's PV1-19); liaison
keys the stay's Encounter by that number *and the organisation it was accepted from*, so the
letter updates the Encounter its notice created, and a hospital naming another's stay number
reaches an Encounter of its own, never the other's.
"""

from __future__ import annotations

from typing import Any

from adapter.coordination.bundle_tools import BundleView
from adapter.mapping.identity import identifier_query
from adapter.mapping.knowledge import knowledge


def stay_identifier(organization: str, stay: tuple[str, str]) -> dict[str, str]:
    """liaison's identifier of the stay `stay` (system, number) of `organization`."""
    system = knowledge().liaison_system("stay")
    return {"system": system, "value": f"{organization}/{stay[0]}|{stay[1]}"}


def key_letter_stay(bundle: dict[str, Any], organization: str | None,
                    stay: tuple[str, str] | None) -> dict[str, str] | None:
    """The letter's Encounter written as the stay's (conditional update by `stay_identifier`),
    when the letter numbers its stay and was accepted for `organization`; the identifier."""
    if not organization or stay is None:
        return None
    view = BundleView(bundle)
    encounter = view.first("Encounter")
    if encounter is None:
        return None
    identifier = stay_identifier(organization, stay)
    encounter.setdefault("identifier", []).insert(0, identifier)
    entry = view.entry_of(encounter)
    if entry is not None:
        entry["request"] = {"method": "PUT", "url": f"Encounter?{identifier_query(identifier)}"}
    return identifier


def review_key(encounter: dict[str, Any]) -> str | None:
    """The key the stay's D+7 review is filed under (`review.add_review`) as a stay written by
    liaison says it: its stay identifier, else its letter's setId ("root|extension")."""
    values = {i.get("system"): str(i.get("value") or "") for i in encounter.get("identifier") or []}
    stay = values.get(knowledge().liaison_system("stay"))
    if stay:
        return stay
    set_key = values.get(knowledge().liaison_system("encounter"))  # "root^extension"
    if not set_key:
        return None
    root, _, extension = set_key.partition("^")
    return f"{root}|{extension}"
