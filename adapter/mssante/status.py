"""The Communication's status after its message, as a transaction bundle for the shared record.

The Communication was written by the letter's bundle, whose references between entries are
`urn:uuid:` fullUrls that mean nothing outside that bundle. The copy kept with the message
(`portable`) names what it references by the same conditions the letter's bundle used
(`Patient?identifier=…`: FHIR conditional references), resolved on the target just before the
update is sent (`adapter.push.references`), so it lands on any FHIR server that searches; the
letter's own tag (the organisation it was accepted for) travels with it, as liaison's own
writes carry it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapter.mapping.identity import derived_uuid, identifier_query
from adapter.mssante.rules import mssante_rules


def portable(communication: dict[str, Any], entries: dict[str, dict[str, Any]]
             ) -> dict[str, Any]:
    """`communication` with each reference to an entry of its bundle replaced by that entry's
    conditional reference; a reference to an entry without a condition is left out."""
    result = _portable(communication, entries)
    assert isinstance(result, dict)
    return result


def _condition(entry: dict[str, Any]) -> str | None:
    request = entry.get("request") or {}
    resource_type = (entry.get("resource") or {}).get("resourceType")
    query = request.get("ifNoneExist") or str(request.get("url", "")).partition("?")[2]
    return f"{resource_type}?{query}" if resource_type and query else None


_DROP = object()


def _portable(node: Any, entries: dict[str, dict[str, Any]]) -> Any:
    if isinstance(node, list):
        kept = [_portable(item, entries) for item in node]
        return [item for item in kept if item is not _DROP]
    if not isinstance(node, dict):
        return node
    reference = node.get("reference")
    if isinstance(reference, str) and reference in entries:
        condition = _condition(entries[reference])
        if condition is None:
            return _DROP
        return {**node, "reference": condition}
    result = {}
    for key, value in node.items():
        converted = _portable(value, entries)
        if converted is not _DROP and converted != []:
            result[key] = converted
    return result


def status_bundle(message: dict[str, Any], status: str, *, when: datetime,
                  reason: str | None = None, read_at: datetime | None = None) -> dict[str, Any]:
    """A transaction updating the message's Communication: `status`, and `received` (the
    moment the recipient's server took it) or a `statusReason` (why it was not); `read_at`:
    the recipient's software said it was displayed. Where the message is, is also a tag
    (`mssante.yaml: status.state_tag_system`), so a search finds who has not read it."""
    rules = mssante_rules()["status"]
    communication = dict(message["communication"])
    identifier = communication["identifier"][0]
    communication["status"] = status
    if reason:
        communication["statusReason"] = {"text": reason}
        state = "not-delivered"
    else:
        communication["received"] = when.isoformat(timespec="seconds")
        state = "received"
    if read_at is not None:
        state = "read"
        communication["extension"] = [
            *(e for e in communication.get("extension") or []
              if e.get("url") != rules["read_extension"]),
            {"url": rules["read_extension"],
             "valueDateTime": read_at.isoformat(timespec="seconds")}]
    meta = dict(communication.get("meta") or {})
    tags = [tag for tag in meta.get("tag") or [] if tag.get("system") != rules["state_tag_system"]]
    meta["tag"] = [*tags, {"system": rules["state_tag_system"], "code": state}]
    communication["meta"] = meta
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "fullUrl": f"urn:uuid:{derived_uuid('mssante-status', identifier['value'])}",
            "resource": communication,
            "request": {"method": "PUT",
                        "url": f"Communication?{identifier_query(identifier)}"},
        }],
    }
    if message.get("tags"):
        bundle["meta"] = {"tag": message["tags"]}
    return bundle
