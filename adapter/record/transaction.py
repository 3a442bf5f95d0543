"""Processing FHIR interactions that write: one entry or a whole transaction, all or nothing.

A transaction is planned before anything is written: every entry gets its final id (a
conditional create that matches takes the existing resource's id), every `urn:uuid:` fullUrl
is mapped to `Type/id`, and all references in the bundle are rewritten; then the writes run in
FHIR order (DELETE, POST, PUT, GET) in one database transaction, and the read grants of the
patients touched are recomputed before the commit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlmodel import Session

from adapter.errors import BadRequest, Conflict, LiaisonError, PreconditionFailed
from adapter.ids import new_id
from adapter.record import feed, grants, search
from adapter.record.params import is_supported
from adapter.record.storage import (
    Stored,
    WriteBatch,
    Written,
    current,
    instant,
    loads,
    stored_rows,
    write_deletion,
    write_version,
)
from adapter.record.validation import check_id, check_type, validate_resource

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}
# On a transaction Bundle liaison writes for an accepted letter: the organisation (idNat_Struct)
# the letter was accepted for, who is then granted what the bundle wrote (see repository.py).
SOURCE_TAG = "urn:liaison:source-organization"
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass
class Entry:
    """One planned interaction."""

    index: int
    method: str
    resource_type: str
    resource_id: str | None = None
    criteria: list[tuple[str, str]] | None = None  # conditional create / update / delete
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    if_match: str | None = None
    query: str = ""  # GET: the query string
    # decided while planning
    matched: bool = False  # a conditional create found an existing resource: nothing to write
    fresh: bool = False  # the id was just minted here: no stored resource can have it


@dataclass
class Result:
    status: int
    resource_type: str
    resource_id: str | None = None
    version: int | None = None
    last_updated: str | None = None
    resource: dict[str, Any] | None = None  # what was stored / read (GET: the answer)
    # or the stored JSON of `resource`, parsed only if asked for (`stored()`): a conditional
    # create that matched answers with the existing resource, which a transaction rarely returns
    body: str | None = field(default=None, repr=False)

    def stored(self) -> dict[str, Any] | None:
        if self.resource is None and self.body is not None:
            self.resource, self.body = loads(self.body), None
        return self.resource

    def response(self, with_resource: bool = False) -> dict[str, Any]:
        response: dict[str, Any] = {"status": _STATUS_TEXT.get(self.status, str(self.status))}
        if self.resource_id and self.version:
            response["location"] = (
                f"{self.resource_type}/{self.resource_id}/_history/{self.version}"
            )
            response["etag"] = f'W/"{self.version}"'
        if self.last_updated:
            response["lastModified"] = self.last_updated
        entry: dict[str, Any] = {"response": response}
        if with_resource and self.stored() is not None:
            entry["resource"] = self.resource
        return entry


def criteria_key(resource_type: str, criteria: list[tuple[str, str]]) -> str:
    return f"{resource_type}?{urlencode(sorted(criteria))}"


def parse_criteria(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def parse_entry(index: int, raw: Any, *, validated: bool = False) -> Entry:
    """One entry of a transaction (`validated`: its resource was already checked against the
    FHIR models by liaison, only its type and id are checked here)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise BadRequest(f"entry {index}: a transaction entry needs a request")
    request = raw["request"]
    method = str(request.get("method", "")).upper()
    url = str(request.get("url", "")).strip().lstrip("/")
    if method not in _ORDER or not url:
        raise BadRequest(f"entry {index}: request needs a method (GET/POST/PUT/DELETE) and a url")
    path, _, query = url.partition("?")
    if "://" in path:  # an absolute URL of this server: keep what follows the base
        segments = urlsplit(path).path.split("/")
        start = next((i for i, seg in enumerate(segments) if is_supported(seg)), len(segments))
        path = "/".join(segments[start:])
    parts = path.split("/")
    resource_type = parts[0]
    check_type(resource_type)
    entry = Entry(index, method, resource_type, full_url=raw.get("fullUrl"),
                  if_match=request.get("ifMatch"), query=query)
    if method == "GET":
        entry.resource_id = "/".join(parts[1:]) or None
        return entry
    if len(parts) > 2:
        raise BadRequest(f"entry {index}: {method} {url} is not supported")
    entry.resource_id = parts[1] if len(parts) == 2 else None
    if entry.resource_id:
        check_id(entry.resource_id)
    if method == "POST":
        if entry.resource_id:
            raise BadRequest(f"entry {index}: POST goes to the type, not to {url}")
        if request.get("ifNoneExist"):
            entry.criteria = parse_criteria(str(request["ifNoneExist"]).lstrip("?"))
    elif not entry.resource_id:
        if not query:
            raise BadRequest(f"entry {index}: {method} {url} needs an id or search criteria")
        entry.criteria = parse_criteria(query)
    if method in ("POST", "PUT"):
        try:
            entry.resource = dict(validate_resource(raw.get("resource"), resource_type,
                                                    model=not validated))
        except LiaisonError as error:
            error.message = f"entry {index}: {error.message}"
            raise
        if method == "PUT" and entry.resource_id and entry.resource.get("id") != entry.resource_id:
            raise BadRequest(f"entry {index}: the resource id must be {entry.resource_id}")
    return entry


class UnlockedCreate(Exception):
    """A conditional create left unlocked, because it matched a resource when the locks were
    taken, matches none any more: the transaction must run again with its key locked."""


def lock_keys(entries: list[Entry], matched: frozenset[search.TokenKey] = frozenset()
              ) -> list[str]:
    """The keys two concurrent transactions could race on (PostgreSQL advisory locks).

    A conditional create whose token is in `matched` (`matched_creates`) is left out: it finds
    its resource and writes nothing. Every letter of a hospital names the hospital, its authors
    and practitioners; locking them made a hospital's letters wait for each other."""
    keys = []
    for entry in entries:
        if entry.criteria is not None:
            if entry.method != "POST" or _create_token(entry) not in matched:
                keys.append(criteria_key(entry.resource_type, entry.criteria))
        elif entry.resource_id and entry.method != "GET":
            keys.append(f"{entry.resource_type}/{entry.resource_id}")
    return keys


def _create_token(entry: Entry) -> search.TokenKey | None:
    assert entry.criteria is not None
    return exact_token(entry.resource_type, entry.criteria)


def matched_creates(session: Session, entries: list[Entry]) -> frozenset[search.TokenKey]:
    """The tokens of the conditional creates among `entries` that match one current resource,
    in one query."""
    wanted = {token for entry in entries if entry.method == "POST" and entry.criteria is not None
              and (token := _create_token(entry)) is not None}
    if not wanted:
        return frozenset()
    return frozenset(token for token, ids in search.token_matches(session, wanted).items()
                     if len(ids) == 1)


@dataclass
class Writer:
    """Writes versions in one session and remembers whose read grants must be recomputed."""

    session: Session
    patients: set[str] = field(default_factory=set)
    communications: set[int] = field(default_factory=set)
    parties: set[tuple[str, str]] = field(default_factory=set)
    batch: WriteBatch = field(default_factory=WriteBatch)
    messages: list[Stored] = field(default_factory=list)  # Communications written
    # current rows read (or written) in this transaction; None: known not to exist
    rows: dict[tuple[str, str], Stored | None] = field(default_factory=dict)
    # (organisation, type, id): what a letter's bundle wrote, granted to its organisation
    sourced: list[tuple[str, str, str]] = field(default_factory=list)
    changed: list[Stored] = field(default_factory=list)  # rows written: the feed's changes

    def grant_source(self, organization: str, result: Result) -> None:
        if result.resource_id:
            self.sourced.append((organization, result.resource_type, result.resource_id))

    def prefetch(self, entries: list[Entry]) -> None:
        """Read the current rows the write entries need at once (instead of one per entry)."""
        wanted = []
        for entry in entries:
            if not entry.resource_id or entry.method in ("GET", "HEAD"):
                continue
            key = (entry.resource_type, entry.resource_id)
            if entry.fresh:
                self.rows.setdefault(key, None)
            elif key not in self.rows:
                wanted.append(key)
        found = stored_rows(self.session, wanted)
        for key in wanted:
            self.rows[key] = found.get(key)

    def current(self, resource_type: str, resource_id: str) -> Stored | None:
        key = (resource_type, resource_id)
        if key not in self.rows:
            self.rows[key] = stored_rows(self.session, [key]).get(key)
        return self.rows[key]

    def _touched(self, row: Stored, previous_patient: str | None, fresh: bool = False) -> None:
        if row.resource_type == "CareTeam":
            self.patients |= {p for p in (row.patient_id, previous_patient) if p}
        elif row.resource_type == "Communication":
            self.messages.append(row)  # its pk may come only when the batch is written
        elif row.resource_type in grants.PARTY_TYPES and not fresh:
            # (a party under an id minted by this transaction: nothing stored can point at it,
            # and what in the bundle does is recomputed for its own sake)
            self.parties.add((row.resource_type, row.resource_id))

    def write(self, resource: dict[str, Any], method: str, if_match: str | None = None,
              *, fresh: bool = False) -> Written:
        existing = self.current(resource["resourceType"], resource["id"])
        check_if_match(existing, if_match)
        previous_patient = existing.patient_id if existing is not None else None
        written = write_version(self.session, resource, method=method, existing=existing,
                                batch=self.batch, known=self.rows)
        if written.changed:
            self.rows[(written.row.resource_type, written.row.resource_id)] = written.row
            self.changed.append(written.row)
            self._touched(written.row, previous_patient, fresh)
        return written

    def delete(self, row: Stored) -> Stored:
        deleted = write_deletion(self.session, row, self.batch)
        self.rows[(row.resource_type, row.resource_id)] = deleted
        self.changed.append(deleted)
        self._touched(deleted, row.patient_id)
        return deleted

    def finish(self) -> None:
        self.batch.flush(self.session)  # grants and GET entries read the index
        self.communications |= {row.pk for row in self.messages if row.pk is not None}
        for resource_type, resource_id in sorted(self.parties):
            patients, communications = grants.dependents(self.session, resource_type, resource_id)
            self.patients |= patients
            self.communications |= communications
        changed = list(dict.fromkeys(row.pk for row in self.changed if row.pk is not None))
        if not (changed or self.sourced or self.patients or self.communications):
            return  # nothing written (a read, or a letter sent again): no position taken
        grants.lock(self.session, self.patients, self.communications)
        # last: the feed's position is held until the commit (see feed.py)
        position = feed.reserve(self.session, len(changed))
        grants.refresh(self.session, self.patients, self.communications, self.rows, position,
                       locked=True)
        grants.grant_sources(self.session, [
            (organization, row) for organization, kind, resource_id in self.sourced
            if (row := self.rows.get((kind, resource_id))) is not None], position)
        feed.stamp(self.session, changed, position)


def check_if_match(existing: Stored | None, if_match: str | None) -> None:
    if not if_match:
        return
    expected = if_match.strip().removeprefix("W/").strip('"')
    if existing is None or existing.deleted or str(existing.version_id) != expected:
        raise PreconditionFailed(
            f"If-Match {if_match} does not match the current version "
            f"({'none' if existing is None or existing.deleted else existing.version_id})"
        )


def _written(written: Written) -> Result:
    return Result(
        201 if written.created else 200, written.row.resource_type, written.row.resource_id,
        written.row.version_id, instant(written.row.last_updated), written.resource,
    )


_LINK_KEYS = frozenset({"reference", "url"})


# A conditional reference (FHIR R4 http.html#trules): `Type?criteria`, resolved by a search.
_CONDITIONAL_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+\?.")
ConditionalResolver = Callable[[str], str]


def _rewrite(resource: dict[str, Any], ids: dict[str, str],
             conditional: ConditionalResolver | None = None) -> dict[str, Any]:
    """A copy of `resource` with every reference (or url) naming a fullUrl of the bundle
    replaced by the `Type/id` it was given, and every conditional reference by the `Type/id`
    `conditional` finds for it; a `urn:uuid:` reference to nothing in the bundle is refused.
    The resource itself is left as it was (the pusher matches Subscriptions against the bundle
    as sent)."""
    rewritten = _rewritten(resource, ids, conditional)
    return dict(rewritten) if rewritten is resource else rewritten


def _rewritten(node: dict[str, Any], ids: dict[str, str],
               conditional: ConditionalResolver | None = None) -> dict[str, Any]:
    """`node`, or a copy where something under it changed (copy on write: parts without a
    link are shared, and strings — the 100 KB of a letter's base64 — are never looked into).
    Measured: three times faster than a regex over the serialised resource parsed back."""
    changed: dict[str, Any] | None = None
    new: Any
    for key, value in node.items():
        kind = type(value)
        if kind is str:
            if key not in _LINK_KEYS:
                continue
            new = ids.get(value)
            if new is None:
                if key != "reference":
                    continue
                if value.startswith("urn:uuid:"):
                    raise BadRequest(f"reference {value} matches no fullUrl of the bundle")
                if conditional is None or not _CONDITIONAL_REFERENCE.match(value):
                    continue
                new = conditional(value)
        elif kind is dict:
            new = _rewritten(value, ids, conditional)
        elif kind is list:
            new = _rewritten_list(value, ids, conditional)
        else:
            continue
        if new is not value:
            if changed is None:
                changed = dict(node)
            changed[key] = new
    return node if changed is None else changed


def _rewritten_list(items: list[Any], ids: dict[str, str],
                    conditional: ConditionalResolver | None = None) -> list[Any]:
    changed: list[Any] | None = None
    new: Any
    for index, item in enumerate(items):
        kind = type(item)
        if kind is dict:
            new = _rewritten(item, ids, conditional)
        elif kind is list:
            new = _rewritten_list(item, ids, conditional)
        else:
            continue
        if new is not item:
            if changed is None:
                changed = list(items)
            changed[index] = new
    return items if changed is None else changed


_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_ESCAPE = re.compile(r"\\([\\|,$])")


def exact_token(resource_type: str, criteria: list[tuple[str, str]]) -> search.TokenKey | None:
    """`search.exact_token`, also for a value with FHIR escapes (an escaped pipe in the code,
    as in a discharge event's identifier): one exact token all the same, looked up with the
    bundle's others instead of by a search of its own (a search costs ten times more)."""
    key = search.exact_token(resource_type, criteria)
    if key is not None or len(criteria) != 1 or "\\" not in criteria[0][1]:
        return key
    name, value = criteria[0]
    parts = _UNESCAPED_PIPE.split(value, maxsplit=1)
    if len(parts) != 2 or re.search(r"(?<!\\),", value) or value.endswith("\\"):
        return None  # no system, alternatives, or a dangling escape: the search decides
    if search.exact_token(resource_type, [(name, "s|c")]) is None:
        return None  # not a plain token parameter
    system, code = (_ESCAPE.sub(r"\1", part) for part in parts)
    return (resource_type, name, system, code) if system and code else None


def _exists(session: Session, resource_type: str, resource_id: str) -> bool:
    row = current(session, resource_type, resource_id)
    return row is not None and not row.deleted


class Plan:
    """Ids decided for every entry of a transaction, then the writes."""

    def __init__(self, session: Session, entries: list[Entry],
                 unlocked: frozenset[search.TokenKey] = frozenset()) -> None:
        self.session = session
        self.entries = entries
        self.unlocked = unlocked  # conditional creates whose key this transaction did not lock
        self.ids: dict[str, str] = {}  # fullUrl → Type/id
        self._tokens: dict[search.TokenKey, list[str]] = {}
        self._resolved: dict[str, str] = {}  # conditional reference → Type/id

    def _match(self, entry: Entry) -> list[str]:
        assert entry.criteria is not None
        key = exact_token(entry.resource_type, entry.criteria)
        if key is not None and key in self._tokens:
            return self._tokens[key]
        return search.matching_ids(self.session, entry.resource_type, entry.criteria)

    def decide_ids(self) -> None:
        # every `identifier=system|value` criterion of the bundle looked up in one query
        keys = {exact_token(e.resource_type, e.criteria) for e in self.entries
                if e.criteria is not None and e.method not in ("GET", "HEAD")}
        keys.discard(None)
        self._tokens = search.token_matches(self.session, keys)  # type: ignore[arg-type]
        # conditional key → id, for repeated criteria in one bundle
        chosen: dict[tuple[Any, ...], str] = {}
        # deleted by an earlier entry (DELETEs run first): a later conditional create or update
        # must not match them, or it would answer 200 for a resource the transaction removes
        gone: set[tuple[str, str]] = set()
        for entry in sorted(self.entries, key=lambda e: (_ORDER[e.method], e.index)):
            if entry.method in ("GET", "HEAD"):
                continue
            if entry.criteria is not None:
                key = (entry.resource_type, *sorted(entry.criteria))
                found = [chosen[key]] if key in chosen else self._match(entry)
                found = [i for i in found if (entry.resource_type, i) not in gone]
                if len(found) > 1:
                    raise PreconditionFailed(
                        f"entry {entry.index}: {entry.method} {entry.resource_type} criteria "
                        "match several resources"
                    )
                if entry.method == "POST":
                    if not found and self.unlocked and _create_token(entry) in self.unlocked:
                        raise UnlockedCreate(entry.index)  # gone since: creating it needs the lock
                    entry.matched = bool(found)
                    entry.fresh = not found
                    entry.resource_id = found[0] if found else new_id()
                elif entry.method == "PUT":
                    body_id = (entry.resource or {}).get("id")
                    if found and body_id and body_id != found[0]:
                        raise BadRequest(f"entry {entry.index}: the resource id is not the one "
                                         "the criteria match")
                    if not found and body_id and (entry.resource_type, body_id) not in gone \
                            and _exists(self.session, entry.resource_type, body_id):
                        raise Conflict(f"entry {entry.index}: {entry.resource_type}/{body_id} "
                                       "exists but does not match the criteria")
                    entry.fresh = not (found or body_id)
                    entry.resource_id = found[0] if found else (body_id or new_id())
                else:  # DELETE
                    entry.resource_id = found[0] if found else None
                if entry.resource_id and entry.method != "DELETE":
                    chosen[key] = entry.resource_id
            elif entry.method == "POST":
                entry.resource_id = new_id()
                entry.fresh = True
            if entry.method == "DELETE" and entry.resource_id:
                gone.add((entry.resource_type, entry.resource_id))
            if entry.full_url and entry.resource_id:
                if entry.full_url in self.ids:
                    raise BadRequest(f"entry {entry.index}: fullUrl {entry.full_url} is repeated")
                self.ids[entry.full_url] = f"{entry.resource_type}/{entry.resource_id}"

    def resolve_references(self) -> None:
        for entry in self.entries:
            if entry.resource is not None:
                entry.resource = _rewrite(entry.resource, self.ids, self._conditional_reference)
                entry.resource["id"] = entry.resource_id

    def _conditional_reference(self, reference: str) -> str:
        """The `Type/id` of the one current resource a conditional reference matches; the
        transaction fails if none or several do (as FHIR asks)."""
        if reference in self._resolved:
            return self._resolved[reference]
        resource_type, _, query = reference.partition("?")
        check_type(resource_type)
        found = search.matching_ids(self.session, resource_type, parse_criteria(query))
        if len(found) != 1:
            raise PreconditionFailed(f"conditional reference {resource_type}?… matches "
                                     f"{'no' if not found else 'several'} resources")
        self._resolved[reference] = f"{resource_type}/{found[0]}"
        return self._resolved[reference]

    def execute_write(self, writer: Writer, entry: Entry) -> Result:
        if entry.method == "DELETE":
            row = writer.current(entry.resource_type, entry.resource_id or "")
            if row is None or row.deleted:
                return Result(204, entry.resource_type, entry.resource_id)
            check_if_match(row, entry.if_match)
            deleted = writer.delete(row)
            return Result(204, entry.resource_type, entry.resource_id, deleted.version_id)
        assert entry.resource is not None
        if entry.matched:
            row = writer.current(entry.resource_type, entry.resource_id or "")
            if row is None:  # matched ids come from this very transaction's search
                raise Conflict(f"entry {entry.index}: matched resource disappeared")
            return Result(200, row.resource_type, row.resource_id, row.version_id,
                          instant(row.last_updated), body=row.body)
        return _written(writer.write(entry.resource, entry.method, entry.if_match,
                                     fresh=entry.fresh))
