"""What coordinators wrote on a stay's plan survives the stay's corrected letter.

A corrected version of a letter rewrites the stay's CarePlan and its requests (conditional
updates by their identifiers). The notes a coordinator added from the page, the progress they
recorded on an item and the item they marked done are no letter's: `keep_plan_work` carries
them from the record's current CarePlan into the corrected letter's bundle before it is
stored, so a reader never sees a done item become "à organiser" again.
"""

from __future__ import annotations

from typing import Any

from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.rules import CoordinationRules
from adapter.record.repository import Repository


def keep_plan_work(bundle: dict[str, Any], repository: Repository,
                   rules: CoordinationRules) -> int:
    """Carry the coordinators' notes, progress and done items of the record's version of the
    bundle's CarePlan into it; how many were carried."""
    view = BundleView(bundle)
    plan = view.first("CarePlan")
    identifier = next(iter((plan or {}).get("identifier") or []), None)
    if plan is None or not identifier:
        return 0
    found = repository.search("CarePlan", [
        ("identifier", f"{identifier['system']}|{identifier['value']}")])
    current = next((e["resource"] for e in found.get("entry") or []
                    if e["resource"].get("resourceType") == "CarePlan"), None)
    if current is None:
        return 0
    carried = 0
    for note in current.get("note") or []:
        # a person's note has an author and a time; the letter's own notes have neither
        if note.get("time") and note.get("authorString") and note not in (plan.get("note") or []):
            plan.setdefault("note", []).append(note)
            carried += 1
    done_status = rules.section("page").get("done_status") or {}
    earlier = {key: (activity, target) for activity in current.get("activity") or []
               if (key := _key(activity, target := _record_target(repository, activity)))}
    for activity in plan.get("activity") or []:
        target = view.by_reference((activity.get("reference") or {}).get("reference"))
        key = _key(activity, target)
        if key not in earlier:
            continue
        before, before_target = earlier[key]
        if not before.get("progress"):
            continue
        activity["progress"] = [*before["progress"], *(p for p in activity.get("progress")
                                                        or [] if p not in before["progress"])]
        carried += 1
        if (before.get("detail") or {}).get("status") == done_status.get("detail") \
                and activity.get("detail"):
            activity["detail"]["status"] = done_status["detail"]
        kind = (target or {}).get("resourceType")
        if target is not None and before_target and kind in done_status \
                and before_target.get("status") == done_status[kind]:
            target["status"] = done_status[kind]
    return carried


def _record_target(repository: Repository, activity: dict[str, Any]) -> dict[str, Any] | None:
    kind, _, target_id = str((activity.get("reference") or {}).get("reference", "")).partition(
        "/")
    if not kind or not target_id or "/" in target_id:
        return None
    try:
        return repository.read(kind, target_id)
    except Exception:  # gone from the record: nothing to carry
        return None


def _key(activity: dict[str, Any], target: dict[str, Any] | None) -> str | None:
    """The same item across versions: the identifier of the request it points to, or the
    words of an inline item."""
    if target is not None:
        return next((f"{i.get('system')}|{i.get('value')}" for i in target.get("identifier")
                     or [] if i.get("value")), None)
    detail = activity.get("detail") or {}
    words = detail.get("description") or (detail.get("code") or {}).get("text")
    return f"detail|{words}" if words else None
