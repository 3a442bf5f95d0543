"""Versions of a letter: the latest version of a setId alone is current.

When version N+1 of a letter arrives, its bundle is made to leave the record in the state of
N+1 alone, whatever the target (embedded record or any FHIR server), with conditional writes
only:
- an item (prescription, request, appointment…) of N+1 that N held too is the same resource,
  updated: it takes N's identifier (matched by the hospital's entry id, else by the item's
  business key, see `match`);
- an item of N that N+1 no longer holds leaves the active state (`mappings/versions.yaml`:
  a prescription `stopped`, a request `revoked`, an appointment `cancelled`…);
- N's DocumentReference becomes `superseded`, and N+1's `relatesTo` replaces it.
A version older than the one already received (arriving late) changes nothing current: its
bundle records its document, superseded, and nothing else.

What N held is read back from N itself: its CDA is kept with its receipt, and mapping it again
gives the same items (deterministic identity), so no target needs to be queried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapter.cda import datatypes as cda
from adapter.mapping.identity import identifier_query
from adapter.mapping.items import business_key
from adapter.mapping.knowledge import knowledge
from adapter.store.engine import reading
from adapter.store.letters import ReceivedLetter, story_of

ITEM_SYSTEM = "urn:liaison:entry"
DOCUMENT_SYSTEM = "urn:liaison:document-version"
HOSPITAL_ID_SYSTEM = "urn:ietf:rfc:3986"  # the CDA entry's own id, as a URI


def _rules() -> dict[str, Any]:
    return knowledge().versions


@dataclass(frozen=True)
class Previous:
    """The version of a setId received before this letter."""

    version: int
    received_at: datetime
    content: bytes


def previous_version(engine: Engine, set_id: str) -> Previous | None:
    """The latest version received of `set_id` (None: this letter starts the story)."""
    with Session(reading(engine)) as session:
        story = story_of(session, set_id)
        if story is None or not story.letter_id:
            return None
        letter = session.get(ReceivedLetter, story.letter_id)
        if letter is None:
            return None
        return Previous(story.version, letter.received_at, letter.content)


@dataclass
class Item:
    """One item of a letter's bundle: an entry keyed by `urn:liaison:entry`."""

    entry: dict[str, Any]
    key: str  # its identifier value
    entry_key: str | None = None  # the hospital's own id of the CDA entry, if any
    business_key: str | None = None  # what the item is (e.g. a drug and its route)

    @property
    def resource(self) -> dict[str, Any]:
        return self.entry["resource"]


@dataclass
class Changes:
    """What version N+1 changed, for the message telling carers."""

    previous: Previous
    previous_date: str | None = None  # the replaced version's date (FHIR dateTime)
    added: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


def items_of(bundle: dict[str, Any]) -> list[Item]:
    """The items of a bundle, with what tells them apart across versions."""
    found = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        value = next((i.get("value") for i in resource.get("identifier") or []
                      if i.get("system") == ITEM_SYSTEM and i.get("value")), None)
        if value is None:
            continue
        own_id = next((i.get("value") for i in resource.get("identifier") or []
                       if i.get("system") == HOSPITAL_ID_SYSTEM), None)
        found.append(Item(entry, value, own_id, business_key(knowledge(), resource)))
    return found


def match(new: list[Item], old: list[Item]) -> list[tuple[Item, Item | None]]:
    """Each item of the new version with the old version's item it continues (None: new):
    first by identifier (the same hospital entry id gives the same identifier), then by the
    hospital's entry id, then by business key. An old item continues at most one new item."""
    pairs: dict[int, Item | None] = {}
    unmatched = list(old)
    for attribute in ("key", "entry_key", "business_key"):
        for index, item in enumerate(new):
            value = getattr(item, attribute)
            if index in pairs or value is None:
                continue
            found = next((o for o in unmatched if getattr(o, attribute) == value
                          and o.resource.get("resourceType") == item.resource.get(
                              "resourceType")), None)
            if found is not None:
                pairs[index] = found
                unmatched.remove(found)
    return [(item, pairs.get(index)) for index, item in enumerate(new)]


def _label(resource: dict[str, Any]) -> str:
    kind = resource.get("resourceType", "")
    what = (_rules().get("labels") or {}).get(kind, kind)
    for name in ("medicationCodeableConcept", "code", "type", "serviceType", "deviceName"):
        value = resource.get(name)
        value = value[0] if isinstance(value, list) and value else value
        if isinstance(value, dict):
            text = value.get("text") or next(
                (c.get("display") for c in value.get("coding") or [] if c.get("display")), None)
            if text:
                return f"{what} « {text} »"
        if isinstance(value, str) and value:
            return f"{what} « {value} »"
    if resource.get("description"):
        return f"{what} « {resource['description']} »"
    return what


# An item's identity and bookkeeping, and the dates it takes from its letter: a new version
# (written later) does not change the item by itself.
_NOT_CONTENT = frozenset({"identifier", "id", "meta", "authoredOn", "recordedDate",
                          "recordedOn", "created", "dateAsserted"})


def _content(resource: dict[str, Any]) -> bytes:
    """What a carer reads of an item."""
    kept = {k: v for k, v in resource.items() if k not in _NOT_CONTENT}
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


def _continue(item: Item, old: Item) -> None:
    """The new item updates the old one's resource: same identifier, conditional update."""
    resource = item.resource
    kind = resource["resourceType"]
    identifier = {"system": ITEM_SYSTEM, "value": old.key}
    resource["identifier"] = [identifier if i.get("system") == ITEM_SYSTEM else i
                              for i in resource.get("identifier") or []]
    item.entry["request"] = {"method": "PUT", "url": f"{kind}?{identifier_query(identifier)}"}


def _referenced_urls(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["reference"]} if isinstance(node.get("reference"), str) else set()
        for value in node.values():
            found |= _referenced_urls(value)
        return found
    if isinstance(node, list):
        found = set()
        for value in node:
            found |= _referenced_urls(value)
        return found
    return set()


def _bring(bundle: dict[str, Any], previous: dict[str, Any], entry: dict[str, Any]) -> None:
    """Add `entry` of the previous version's bundle, with the shared entries it references
    that this bundle lacks (conditional creates: they match what is stored)."""
    present = {e.get("fullUrl") for e in bundle["entry"]}
    by_url = {e.get("fullUrl"): e for e in previous.get("entry") or []}
    wanted = [entry]
    while wanted:
        current = wanted.pop()
        if current.get("fullUrl") in present:
            continue
        bundle["entry"].append(current)
        present.add(current.get("fullUrl"))
        wanted += [by_url[url] for url in _referenced_urls(current.get("resource"))
                   if url in by_url and url not in present]


def _retire(item: Item) -> dict[str, Any]:
    """The previous version's item, out of the active state, as a conditional update."""
    resource = orjson.loads(orjson.dumps(item.resource))
    rule = (_rules().get("retired") or {}).get(resource["resourceType"]) or {}
    resource.update(rule.get("patch") or {"status": "entered-in-error"})
    identifier = {"system": ITEM_SYSTEM, "value": item.key}
    return {**item.entry, "resource": resource,
            "request": {"method": "PUT",
                        "url": f"{resource['resourceType']}?{identifier_query(identifier)}"}}


def _document(bundle: dict[str, Any]) -> dict[str, Any] | None:
    return next((e for e in bundle.get("entry") or []
                 if (e.get("resource") or {}).get("resourceType") == "DocumentReference"), None)


def _supersede_document(entry: dict[str, Any]) -> dict[str, Any]:
    resource = {**entry["resource"], **(_rules().get("superseded_document") or {})}
    identifier = next(i for i in resource["identifier"] if i.get("system") == DOCUMENT_SYSTEM)
    return {**entry, "resource": resource,
            "request": {"method": "PUT",
                        "url": f"DocumentReference?{identifier_query(identifier)}"}}


def supersede(bundle: dict[str, Any], items: list[Item], previous_bundle: dict[str, Any],
              previous_items: list[Item], previous: Previous,
              previous_date: str | None = None) -> Changes:
    """Make `bundle` (version N+1) replace `previous_bundle` (version N, of `previous_date`)
    in the record."""
    changes = Changes(previous, previous_date)
    pairs = match(items, previous_items)
    for item, old in pairs:
        if old is None:
            changes.added.append(_label(item.resource))
            continue
        if _content(item.resource) != _content(old.resource):
            changes.changed.append(_label(item.resource))
        _continue(item, old)
    continued = {id(old) for _, old in pairs if old is not None}
    for old in previous_items:
        if id(old) not in continued:
            changes.stopped.append(_label(old.resource))
            _bring(bundle, previous_bundle, _retire(old))
    old_document, new_document = _document(previous_bundle), _document(bundle)
    if old_document is not None and new_document is not None:
        _bring(bundle, previous_bundle, _supersede_document(old_document))
        old_id = next(i for i in old_document["resource"]["identifier"]
                      if i.get("system") == DOCUMENT_SYSTEM)
        relates = new_document["resource"].setdefault("relatesTo", [])
        if not any((r.get("target") or {}).get("identifier") == old_id for r in relates):
            relates.append({"code": "replaces", "target": {"type": "DocumentReference",
                                                           "identifier": old_id}})
    return changes


def record_late(bundle: dict[str, Any]) -> None:
    """A version older than the one received: its bundle keeps only its document, recorded as
    superseded (with what it references), so nothing current changes."""
    document = _document(bundle)
    everything = {"entry": list(bundle.get("entry") or [])}
    bundle["entry"] = []
    if document is not None:
        _bring(bundle, everything, _supersede_document(document))


def correction_notice(version: int, changes: Changes) -> str:
    """What carers read first in the message of a corrected letter (French)."""
    if changes.previous_date:
        when = f"du {cda.french_date(changes.previous_date)}"
    else:
        when = f"reçue le {changes.previous.received_at.strftime('%d/%m/%Y')}"
    lines = [f"Lettre corrigée : la version {version} remplace la version "
             f"{changes.previous.version} {when}."]
    for heading, labels in (("Arrêté ou retiré", changes.stopped),
                            ("Ajouté", changes.added), ("Modifié", changes.changed)):
        if labels:
            lines.append(f"{heading} : {', '.join(labels)}.")
    if not (changes.stopped or changes.added or changes.changed):
        lines.append("Traitements et suivi inchangés.")
    return " ".join(lines)


def tell_correction(bundle: dict[str, Any], version: int, changes: Changes) -> None:
    """Every message of the letter opens with the correction notice."""
    notice = correction_notice(version, changes)
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Communication":
            resource.setdefault("payload", []).insert(0, {"contentString": notice})
