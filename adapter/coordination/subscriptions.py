"""FHIR R4 Subscriptions (channel `rest-hook`), delivered through the durable outbox.

A community system subscribes with criteria such as `CarePlan?patient.identifier=sys|val`,
`Communication?recipient=Practitioner/123` or `CommunicationRequest?event-type=SOR`. Once a
letter's bundle has been accepted by the shared record (`after_push`, called by the pusher with
the transaction-response locations), every matching resource becomes one outbox entry of kind
`subscription-notification`, keyed by subscription: the pusher then delivers it (`deliver`) with
the same retries, backoff, dead-letter and replay as the push itself, and in order per subscriber.

Notification shape (R4 rest-hook): with a `payload` MIME type, the resource is PUT to
`<endpoint>/<type>/<id>`; without, an empty POST to `<endpoint>` tells the subscriber to search.
Consent: a resource restricted to named readers is never sent to a subscriber outside them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from adapter.coordination import consent
from adapter.coordination.bundle_tools import IDNAT_PS, BundleView
from adapter.coordination.rules import CoordinationRules, load_rules
from adapter.errors import (
    BadRequest,
    NotFound,
    TargetRejected,
    TargetUnavailable,
    operation_outcome,
)
from adapter.record.access import read_filter
from adapter.store import outbox
from adapter.store.coordination_tables import SubscriptionRecord
from adapter.store.record_tables import RESTRICTED_READER_TAG

OUTBOX_KIND = "subscription-notification"
_RETRYABLE = {408, 425, 429}


# -- criteria -------------------------------------------------------------------------------


def parse_criteria(criteria: str, rules: CoordinationRules) -> tuple[str, list[tuple[str, str]]]:
    """(resource type, [(param, value)]) from `Type?param=value&…`, checked against the rules."""
    resource_type, _, query = criteria.strip().partition("?")
    allowed = (rules.section("subscriptions").get("criteria") or {}).get(resource_type)
    if allowed is None:
        raise BadRequest(f"Subscription.criteria: resource type {resource_type!r} is not supported")
    params = parse_qsl(query, keep_blank_values=True)
    for name, value in params:
        if name not in allowed:
            raise BadRequest(
                f"Subscription.criteria: {resource_type} cannot be watched by {name!r} "
                f"(supported: {', '.join(allowed)})"
            )
        if not value:
            raise BadRequest(f"Subscription.criteria: parameter {name!r} has no value")
    return resource_type, params


def _token_matches(wanted: str, identifiers: Iterable[dict[str, Any]]) -> bool:
    system, bar, value = wanted.rpartition("|")
    for identifier in identifiers:
        if identifier.get("value") != value:
            continue
        if not bar or identifier.get("system") == system:
            return True
    return False


def _referenced_identifiers(view: BundleView, reference: str | None) -> list[dict[str, Any]]:
    resource = view.by_reference(reference)
    return list((resource or {}).get("identifier") or [])


class MatchContext:
    """What matching needs beyond the resource: its bundle and the server ids given to entries."""

    def __init__(self, bundle: dict[str, Any], locations: list[str]) -> None:
        self.view = BundleView(bundle)
        self.server_refs: dict[str, str] = {}
        for entry, location in zip(self.view.entries, locations, strict=False):
            parts = location.split("/")
            if entry.get("fullUrl") and len(parts) >= 2:
                self.server_refs[entry["fullUrl"]] = f"{parts[0]}/{parts[1]}"

    def server_ref(self, reference: str | None) -> str | None:
        return self.server_refs.get(reference or "", reference)


def _param_matches(name: str, wanted: str, resource: dict[str, Any], ctx: MatchContext) -> bool:
    alternatives = wanted.split(",")
    if name in ("patient.identifier", "subject.identifier"):
        subject = (resource.get("subject") or resource.get("patient") or {}).get("reference")
        identifiers = _referenced_identifiers(ctx.view, subject)
        return any(_token_matches(w, identifiers) for w in alternatives)
    if name == "identifier":
        return any(_token_matches(w, resource.get("identifier") or []) for w in alternatives)
    if name == "status":
        return resource.get("status") in alternatives
    if name.split(".")[0] in ("recipient", "participant"):
        by_identifier = name.endswith(".identifier")
        references = (
            [r.get("reference") for r in resource.get("recipient") or []]
            if name.startswith("recipient")
            else [
                (p.get("member") or {}).get("reference") for p in resource.get("participant") or []
            ]
        )
        for reference in references:
            if not by_identifier and ctx.server_ref(reference) in alternatives:
                return True
            pairs = [{"system": IDNAT_PS, "value": v} for v in ctx.view.idnats_of(reference)]
            if by_identifier and any(_token_matches(w, pairs) for w in alternatives):
                return True
        return False
    if name == "event-type":
        codes = {
            coding.get("code")
            for extension in resource.get("extension") or []
            if extension.get("url", "").endswith("/event-type")
            for coding in (extension.get("valueCodeableConcept") or {}).get("coding") or []
        }
        return bool(codes & set(alternatives))
    return False


def matches(
    resource_type: str, params: list[tuple[str, str]], resource: dict[str, Any], ctx: MatchContext
) -> bool:
    if resource.get("resourceType") != resource_type:
        return False
    return all(_param_matches(name, value, resource, ctx) for name, value in params)


# -- the Subscription resource ----------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def create(
    session: Session,
    resource: dict[str, Any],
    principal: Any = None,
    rules: CoordinationRules | None = None,
) -> SubscriptionRecord:
    """Check and store a Subscription; it is active at once."""
    record = _checked(resource, principal, rules or load_rules())
    session.add(record)
    return record


def replace(
    session: Session,
    subscription_id: str,
    resource: dict[str, Any],
    principal: Any = None,
    rules: CoordinationRules | None = None,
) -> SubscriptionRecord:
    """Update a Subscription (FHIR update): the new content, checked as on create, same id."""
    record = get(session, subscription_id)
    if resource.get("id") not in (None, subscription_id):
        raise BadRequest(f"the body's id is not {subscription_id}")
    fresh = _checked(resource, principal, rules or load_rules())
    for name in ("criteria", "resource_type", "endpoint", "payload", "headers_json", "end"):
        setattr(record, name, getattr(fresh, name))
    record.status = "off" if resource.get("status") == "off" else "active"
    record.error = None
    record.updated_at = _now()
    session.add(record)
    return record


def _checked(
    resource: dict[str, Any], principal: Any, rules: CoordinationRules
) -> SubscriptionRecord:
    if resource.get("resourceType") != "Subscription":
        raise BadRequest("the body must be a FHIR Subscription")
    channel = resource.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise BadRequest("Subscription.channel.type must be rest-hook (the only channel supported)")
    endpoint = channel.get("endpoint") or ""
    if urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).netloc:
        raise BadRequest("Subscription.channel.endpoint must be an http(s) URL")
    criteria = resource.get("criteria") or ""
    resource_type, _ = parse_criteria(criteria, rules)
    headers = [h for h in channel.get("header") or [] if isinstance(h, str) and ":" in h]
    end = resource.get("end")
    return SubscriptionRecord(
        id=uuid.uuid4().hex,
        status="active",
        criteria=criteria,
        resource_type=resource_type,
        endpoint=endpoint,
        payload=channel.get("payload") or None,
        headers_json=orjson.dumps(headers).decode(),
        owner_kind=getattr(principal, "kind", None),
        owner_idnat=getattr(principal, "idnat", None),
        owner_organization=getattr(principal, "organization", None),
        owner_cpts=getattr(principal, "cpts", None),
        end=datetime.fromisoformat(end).astimezone(UTC) if end else None,
    )


def search_filter(params: list[tuple[str, str]]) -> Callable[[SubscriptionRecord], bool]:
    """The Subscription search parameters the CapabilityStatement declares (`_id`, `status`,
    `type`, `criteria` — a string: case-insensitive prefix); anything else is a 400."""
    tests = [_search_test(name, value.split(",")) for name, value in params
             if name not in ("_count", "_format")]
    return lambda record: all(test(record) for test in tests)


def _search_test(name: str, wanted: list[str]) -> Callable[[SubscriptionRecord], bool]:
    if name == "_id":
        return lambda r: r.id in wanted
    if name == "status":
        return lambda r: r.status in wanted
    if name == "type":
        return lambda r: "rest-hook" in wanted
    if name == "criteria":
        return lambda r: any(r.criteria.casefold().startswith(x.casefold()) for x in wanted)
    raise BadRequest(f"unknown search parameter {name!r} for Subscription")


def as_fhir(record: SubscriptionRecord) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": record.endpoint}
    if record.payload:
        channel["payload"] = record.payload
    headers = orjson.loads(record.headers_json)
    if headers:
        channel["header"] = headers
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": record.id,
        "status": record.status,
        "reason": "liaison rest-hook subscription",
        "criteria": record.criteria,
        "channel": channel,
    }
    if record.error:
        resource["error"] = record.error
    if record.end:
        resource["end"] = record.end.astimezone(UTC).isoformat(timespec="seconds")
    return resource


def get(session: Session, subscription_id: str) -> SubscriptionRecord:
    record = session.get(SubscriptionRecord, subscription_id)
    if record is None:
        raise NotFound(f"Subscription/{subscription_id} is not known")
    return record


def deactivate(session: Session, subscription_id: str) -> None:
    record = get(session, subscription_id)
    record.status = "off"
    record.updated_at = _now()
    session.add(record)


@dataclass(frozen=True)
class _Reader:
    kind: str
    idnat: str | None


def _visible_to_owner(
    resource: dict[str, Any], record: SubscriptionRecord, tag_system: str
) -> bool:
    """A subscriber reads like its owner; an anonymous one like an outside professional."""
    reader = _Reader(record.owner_kind or "professional", record.owner_idnat)
    return consent.reader_may_see(resource, reader, tag_system)


def _granted_to_owner(session: Session, record: SubscriptionRecord, server_ref: str) -> bool:
    """A Subscription is told only of what the record lets its owner read (a professional: as
    an active care-team member or a Communication recipient; a hospital: its patients; a
    coordinator: its CPTS's): criteria such as `CarePlan?status=active` must not become a feed
    of every patient's care plan. What is not in this database (an external target) cannot be
    checked here, so it is withheld. System-owned (and internal) subscriptions see all."""
    if record.owner_kind in (None, "system"):
        return True
    from sqlalchemy import false
    from sqlalchemy import select as sql_select

    from adapter.auth.principal import DEFAULT_SCOPES, Principal
    from adapter.record.storage import RESOURCES

    resource_type, _, resource_id = server_ref.partition("/")
    if not resource_id:
        return False
    reader = Principal(kind=record.owner_kind, idnat=record.owner_idnat,
                       organization=record.owner_organization, cpts=record.owner_cpts,
                       scopes=DEFAULT_SCOPES.get(record.owner_kind, ()))
    clause = read_filter(reader, RESOURCES)
    query = sql_select(RESOURCES.c.pk).where(
        RESOURCES.c.resource_type == resource_type,
        RESOURCES.c.resource_id == resource_id,
        RESOURCES.c.deleted == false(),
        *([clause] if clause is not None else []),
    )
    with _record_engine(session).connect() as connection:
        return connection.execute(query).first() is not None


def _record_engine(session: Session) -> Engine:
    """The embedded record's database for liaison's (`session`'s): it may be a file of its own,
    which the Repository resolves."""
    from adapter.record.repository import Repository

    bind = session.get_bind()
    return Repository(bind.engine).engine


# -- from an accepted bundle to outbox entries -------------------------------------------------


def _withhold(session: Session, subscription: SubscriptionRecord, reason: str) -> None:
    """Audit a notification not sent (no patient data: the endpoint and why)."""
    consent.audit(session, letter_id=None, patient_value=None, action="notify",
                  target=subscription.endpoint, outcome="withheld", reason=reason)


def _active_subscriptions(session: Session) -> list[SubscriptionRecord]:
    """The active Subscriptions, read once per session: the pusher passes the letters of a
    batch through one session, and each would otherwise ask again."""
    if "liaison.subscriptions" not in session.info:
        now = _now()
        session.info["liaison.subscriptions"] = [
            s for s in session.exec(
                select(SubscriptionRecord).where(SubscriptionRecord.status == "active"))
            if s.end is None or s.end > now
        ]
    return session.info["liaison.subscriptions"]


def after_push(
    session: Session,
    bundle: dict[str, Any],
    locations: list[str],
    rules: CoordinationRules | None = None,
    only: str | None = None,
) -> int:
    """Enqueue one notification per (active subscription, matching resource); returns how many.
    `only`: the fullUrl of the one entry to tell about (the others are what it references).

    Called in the caller's transaction, so notifications are durable exactly when it commits.
    """
    active = [s for s in _active_subscriptions(session) if s.status == "active"]
    if not active:
        return 0
    rules = rules or load_rules()
    tag_system = RESTRICTED_READER_TAG
    ctx = MatchContext(bundle, locations)
    queued = 0
    for subscription in active:
        try:
            resource_type, params = parse_criteria(subscription.criteria, rules)
        except BadRequest as error:  # the rules changed under an old Subscription: stop it
            subscription.status, subscription.error = "error", error.message
            session.add(subscription)
            continue
        for entry in ctx.view.entries:
            resource = entry.get("resource") or {}
            if only is not None and entry.get("fullUrl") != only:
                continue
            if not matches(resource_type, params, resource, ctx):
                continue
            if not _visible_to_owner(resource, subscription, tag_system):
                _withhold(session, subscription,
                          "restricted resource: the subscriber is not one of its allowed readers")
                continue
            server_ref = ctx.server_ref(entry.get("fullUrl")) or resource_type
            if not _granted_to_owner(session, subscription, server_ref):
                _withhold(session, subscription,
                          "the subscriber's owner may not read this resource in the record")
                continue
            payload = {
                "subscription": subscription.id,
                "endpoint": subscription.endpoint,
                "payload": subscription.payload,
                "headers": orjson.loads(subscription.headers_json),
                "reference": server_ref,
                "resource": _with_id(resource, server_ref) if subscription.payload else None,
            }
            outbox.enqueue(session, OUTBOX_KIND, payload, key=f"subscription:{subscription.id}")
            queued += 1
    return queued


def _with_id(resource: dict[str, Any], server_ref: str) -> dict[str, Any]:
    parts = server_ref.split("/")
    return {**resource, "id": parts[1]} if len(parts) == 2 else dict(resource)


# -- delivery (an outbox handler) -------------------------------------------------------------


def deliver(payload: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """Send one notification; raises TargetUnavailable (retry) or TargetRejected (park)."""
    headers = {"User-Agent": "liaison-subscriptions"}
    for header in payload.get("headers") or []:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    endpoint = payload["endpoint"].rstrip("/")
    try:
        with httpx.Client(timeout=timeout) as client:
            if payload.get("payload") and payload.get("resource"):
                headers["Content-Type"] = payload["payload"]
                answer = client.put(
                    f"{endpoint}/{payload['reference']}",
                    content=orjson.dumps(payload["resource"]),
                    headers=headers,
                )
            else:
                answer = client.post(payload["endpoint"], headers=headers)
    except httpx.HTTPError as error:
        raise TargetUnavailable(
            f"subscriber unreachable: {type(error).__name__}",
            outcome=operation_outcome(
                f"subscriber unreachable: {type(error).__name__}", code="transient"
            ),
        ) from error
    if answer.is_success:
        return {"status": answer.status_code, "reference": payload.get("reference")}
    outcome = operation_outcome(f"subscriber answered HTTP {answer.status_code}", code="exception")
    if answer.status_code >= 500 or answer.status_code in _RETRYABLE:
        retry_after = answer.headers.get("Retry-After")
        raise TargetUnavailable(
            f"subscriber answered {answer.status_code}",
            status=answer.status_code,
            outcome=outcome,
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    raise TargetRejected(
        f"subscriber refused: {answer.status_code}", status=answer.status_code, outcome=outcome
    )
