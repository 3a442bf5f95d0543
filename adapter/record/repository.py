"""The record's operations, for the HTTP API, the CLI and other parts of liaison.

`principal=None` means a trusted in-process caller (the embedded push target, the CLI as the
local system); otherwise every read is filtered by `access.read_filter` and writes follow
`adapter.auth.rules.require_record_write` (liaison and system tokens only).

A transaction bundle liaison writes for an accepted letter names the organisation the letter
was accepted for (`SOURCE_TAG` on the Bundle's meta): that organisation is granted the
resources the bundle wrote, and the shared identity and care team of its patient. Only a
trusted caller's tag counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from sqlmodel import select as model_select

from adapter.auth.principal import Principal
from adapter.auth.rules import require_record_write
from adapter.config import get_settings
from adapter.errors import BadRequest, Conflict, Gone, LiaisonError, NotFound
from adapter.ids import new_id
from adapter.record import access, audit, feed, grants, search
from adapter.record.database import record_engine
from adapter.record.indexing import index_rows
from adapter.record.search import TokenKey
from adapter.record.storage import (
    RESOURCES,
    current,
    dumps,
    insert_index,
    insert_resources,
    insert_versions,
    instant,
    loads,
    patient_of,
    utcnow,
)
from adapter.record.transaction import (
    SOURCE_TAG,
    Entry,
    Plan,
    Result,
    UnlockedCreate,
    Writer,
    parse_criteria,
    parse_entry,
)
from adapter.record.validation import check_id, check_type
from adapter.record.write_locks import locked_write, within_lock_budget
from adapter.store.engine import reading
from adapter.store.locking import write_session
from adapter.store.record_tables import RecordResource, RecordVersion

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def _audited_write(principal: Principal | None, entry: Entry, result: Result) -> dict[str, Any]:
    """The audit row of one write of a transaction."""
    return audit.row(principal, entry.method.lower(), resource_type=result.resource_type,
                     resource_id=result.resource_id, outcome=result.status)


def _version_body(stored: RecordVersion, current: RecordResource) -> str:
    """The body of a version that is not a deletion: its history row's, or, while it is the
    current version, the resource row's (`storage.write_version` keeps it there only)."""
    if stored.body is not None:
        return stored.body
    if stored.version_id != current.version_id:
        raise RuntimeError(f"version {stored.version_id} of {current.resource_type}/"
                           f"{current.resource_id} has no body")
    return current.body


class Repository:
    def __init__(self, engine: Engine | None = None, base_url: str | None = None) -> None:
        if engine is None:
            from adapter.store.db import get_engine

            engine = get_engine()
        self.engine = record_engine(engine)  # on SQLite, a file of its own (see database.py)
        self.base_url = (base_url or get_settings().public_base_url.rstrip("/") + "/fhir")

    # --- reads ----------------------------------------------------------------------------

    def _session(self) -> Session:
        """A session for reads only."""
        return Session(reading(self.engine), expire_on_commit=False)

    @staticmethod
    def _visible(session: Session, row: RecordResource, principal: Principal | None) -> bool:
        clause = access.read_filter(principal, RESOURCES)
        if clause is None:
            return True
        query = select(RESOURCES.c.pk).where(RESOURCES.c.pk == row.pk, clause)
        return session.execute(query).first() is not None

    def _readable_row(self, session: Session, resource_type: str, resource_id: str,
                      principal: Principal | None) -> RecordResource:
        check_type(resource_type)
        check_id(resource_id)
        row = current(session, resource_type, resource_id)
        if row is None or not self._visible(session, row, principal):
            raise access.unknown(resource_type, resource_id)
        return row

    def _read(self, session: Session, resource_type: str, resource_id: str,
              principal: Principal | None) -> dict[str, Any]:
        row = self._readable_row(session, resource_type, resource_id, principal)
        if row.deleted:
            raise Gone(f"{resource_type}/{resource_id} was deleted")
        return loads(row.body)

    def read(self, resource_type: str, resource_id: str,
             principal: Principal | None = None) -> dict[str, Any]:
        with self._session() as session:
            return self._read(session, resource_type, resource_id, principal)

    def _vread(self, session: Session, resource_type: str, resource_id: str, version: str,
               principal: Principal | None) -> dict[str, Any]:
        row = self._readable_row(session, resource_type, resource_id, principal)
        if not version.isdigit():
            raise NotFound(f"{resource_type}/{resource_id} has no version {version!r}")
        stored = session.exec(model_select(RecordVersion).where(
            RecordVersion.resource_type == resource_type,
            RecordVersion.resource_id == resource_id,
            RecordVersion.version_id == int(version),
        )).first()
        if stored is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version}")
        if stored.deleted:
            raise Gone(f"version {version} of {resource_type}/{resource_id} is a deletion")
        return loads(_version_body(stored, row))

    def vread(self, resource_type: str, resource_id: str, version: str,
              principal: Principal | None = None) -> dict[str, Any]:
        with self._session() as session:
            return self._vread(session, resource_type, resource_id, version, principal)

    def _history(self, session: Session, resource_type: str, resource_id: str,
                 principal: Principal | None, base_url: str) -> dict[str, Any]:
        row = self._readable_row(session, resource_type, resource_id, principal)
        versions = session.exec(model_select(RecordVersion).where(
            RecordVersion.resource_type == resource_type,
            RecordVersion.resource_id == resource_id,
        ).order_by(col(RecordVersion.version_id).desc())).all()
        entries = []
        for stored in versions:
            entry: dict[str, Any] = {
                "fullUrl": f"{base_url}/{resource_type}/{resource_id}",
                "request": {"method": stored.method,
                            "url": resource_type if stored.method == "POST"
                            else f"{resource_type}/{resource_id}"},
                "response": {"status": "204" if stored.deleted else
                             ("201" if stored.version_id == 1 else "200"),
                             "etag": f'W/"{stored.version_id}"',
                             "lastModified": instant(stored.last_updated)},
            }
            if not stored.deleted:
                entry["resource"] = loads(_version_body(stored, row))
            entries.append(entry)
        return {"resourceType": "Bundle", "type": "history", "total": len(entries),
                "link": [{"relation": "self",
                          "url": f"{base_url}/{resource_type}/{resource_id}/_history"}],
                "entry": entries}

    def history(self, resource_type: str, resource_id: str, principal: Principal | None = None,
                *, base_url: str | None = None) -> dict[str, Any]:
        with self._session() as session:
            return self._history(session, resource_type, resource_id, principal,
                                 base_url or self.base_url)

    def search(self, resource_type: str, params: list[tuple[str, str]],
               principal: Principal | None = None, *, lenient: bool = False,
               base_url: str | None = None) -> dict[str, Any]:
        check_type(resource_type)
        request = search.parse(resource_type, params, lenient=lenient)
        with self._session() as session:
            return search.execute(session, request, principal, base_url or self.base_url)

    def changes(self, principal: Principal | None, *, cursor: str | None = None,
                since: str | None = None, types: tuple[str, ...] = (), count: int = 100,
                base_url: str | None = None) -> dict[str, Any]:
        """One page of the change feed (feed.py) as a FHIR history Bundle: what changed for
        `principal` after `cursor` (or, for a first pull, after the instant `since`; neither:
        from the start). Links: `next` while more is committed now, `resume` always — the
        cursor to pull from next time."""
        for kind in types:
            check_type(kind)
        base_url = base_url or self.base_url
        with reading(self.engine).connect() as connection:
            if cursor:
                position = feed.Cursor.decode(cursor)
            else:
                position = feed.Cursor(feed.position_before(connection, since) if since else 0)
            page = feed.read_page(connection, principal, position, types, count)
        resume = page.cursor.encode()
        query = "&".join([*([f"_type={','.join(types)}"] if types else []),
                          f"_count={count}", f"_cursor={resume}"])
        links = [{"relation": "self", "url": f"{base_url}/_history"},
                 {"relation": "resume", "url": f"{base_url}/_history?{query}"}]
        if not page.caught_up:
            links.insert(1, {"relation": "next", "url": f"{base_url}/_history?{query}"})
        return {"resourceType": "Bundle", "type": "history", "link": links,
                "entry": [_change_entry(row, base_url) for row in page.rows]}

    def _get(self, session: Session, entry: Entry, principal: Principal | None,
             base_url: str) -> Result:
        """A GET entry of a transaction / batch: read, vread, history or search."""
        parts = (entry.resource_id or "").split("/") if entry.resource_id else []
        kind = entry.resource_type
        if not parts:
            request = search.parse(kind, parse_criteria(entry.query))
            return Result(200, kind, resource=search.execute(session, request, principal,
                                                             base_url))
        if len(parts) == 1:
            return Result(200, kind, parts[0], resource=self._read(session, kind, parts[0],
                                                                   principal))
        if len(parts) == 2 and parts[1] == "_history":
            return Result(200, kind, parts[0],
                          resource=self._history(session, kind, parts[0], principal, base_url))
        if len(parts) == 3 and parts[1] == "_history":
            return Result(200, kind, parts[0],
                          resource=self._vread(session, kind, parts[0], parts[2], principal))
        raise BadRequest(f"GET {kind}/{entry.resource_id} is not supported")

    # --- writes ---------------------------------------------------------------------------

    def _run(self, entries: list[Entry], principal: Principal | None,
             base_url: str, source: str | None = None) -> list[Result]:
        """Run entries as ONE database transaction (all or nothing)."""
        if any(e.method not in ("GET", "HEAD") for e in entries):
            require_record_write(principal)
        try:
            return self._run_locked(entries, principal, base_url, source)
        except IntegrityError as error:  # a concurrent writer won a race the locks don't cover
            raise Conflict("a concurrent change conflicts with this one; retry") from error

    def _run_locked(self, entries: list[Entry], principal: Principal | None,
                    base_url: str, source: str | None) -> list[Result]:
        def work(session: Session, unlocked: frozenset[TokenKey]) -> list[Result]:
            writer = Writer(session)
            results = self._write_entries(writer, entries, source, unlocked)
            writer.finish()
            for entry in entries:
                if entry.method in ("GET", "HEAD"):
                    results[entry.index] = self._get(session, entry, principal, base_url)
            # every write is on the trail, whoever the caller is, committed with it
            audit.write(session, [_audited_write(principal, entry, results[entry.index])
                                  for entry in entries if not _is_get(entry)])
            return [results[e.index] for e in entries]

        try:
            return locked_write(self.engine, entries, work)
        except UnlockedCreate:  # stopped while deciding ids, before any entry was rewritten
            return locked_write(self.engine, entries, work, frozenset())

    @staticmethod
    def _write_entries(writer: Writer, entries: list[Entry], source: str | None,
                       unlocked: frozenset[TokenKey]) -> dict[int, Result]:
        """Plan one bundle's entries and run its writes (grants and reads come after);
        `source`: the organisation the bundle was written for, granted what it wrote;
        `unlocked`: the conditional creates whose keys the transaction did not lock."""
        plan = Plan(writer.session, entries, unlocked)
        plan.decide_ids()
        plan.resolve_references()
        writer.prefetch(entries)
        results: dict[int, Result] = {}
        for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
            if entry.method not in ("GET", "HEAD"):
                results[entry.index] = plan.execute_write(writer, entry)
                if source is not None and entry.method != "DELETE":
                    writer.grant_source(source, results[entry.index])
        return results

    def _one(self, raw_entry: dict[str, Any], principal: Principal | None) -> Result:
        _may_write([raw_entry], principal)
        result = self._run([parse_entry(0, raw_entry)], principal, self.base_url)[0]
        result.stored()  # the caller answers with the resource
        return result

    def create(self, resource: dict[str, Any], *, principal: Principal | None = None,
               if_none_exist: str | None = None) -> Result:
        """POST (201), or with `if_none_exist` a conditional create (200 when it matches)."""
        request: dict[str, Any] = {"method": "POST", "url": str(resource.get("resourceType"))}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        return self._one({"resource": resource, "request": request}, principal)

    def update(self, resource_type: str, resource_id: str, resource: dict[str, Any], *,
               principal: Principal | None = None, if_match: str | None = None) -> Result:
        request = {"method": "PUT", "url": f"{resource_type}/{resource_id}", "ifMatch": if_match}
        return self._one({"resource": resource, "request": request}, principal)

    def conditional_update(self, resource_type: str, criteria: list[tuple[str, str]],
                           resource: dict[str, Any], *, principal: Principal | None = None
                           ) -> Result:
        request = {"method": "PUT", "url": f"{resource_type}?{urlencode(criteria)}"}
        return self._one({"resource": resource, "request": request}, principal)

    def delete(self, resource_type: str, resource_id: str, *,
               principal: Principal | None = None) -> Result:
        request = {"method": "DELETE", "url": f"{resource_type}/{resource_id}"}
        return self._one({"request": request}, principal)

    def conditional_delete(self, resource_type: str, criteria: list[tuple[str, str]], *,
                           principal: Principal | None = None) -> Result:
        """Delete the one resource matching `criteria` (none: nothing to do; several: 412)."""
        request = {"method": "DELETE", "url": f"{resource_type}?{urlencode(criteria)}"}
        return self._one({"request": request}, principal)

    def transaction(self, bundle: dict[str, Any], principal: Principal | None = None, *,
                    base_url: str | None = None, return_resources: bool = False,
                    validated: bool = False) -> dict[str, Any]:
        """Process a transaction (atomic) or batch (entry by entry) Bundle; the response Bundle.

        A transaction that fails raises the failing entry's error, and nothing is written.
        `validated`: a trusted caller (no principal: liaison's pusher) vouches that every
        resource already passed the FHIR model check; only types and ids are checked again."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequest("POST to the base takes a Bundle")
        base_url = base_url or self.base_url
        raw_entries = bundle.get("entry") or []
        if bundle.get("type") == "batch":
            return self._batch(raw_entries, principal, base_url, return_resources)
        if bundle.get("type") != "transaction":
            raise BadRequest("the Bundle type must be transaction or batch")
        validated = validated and principal is None
        _may_write(raw_entries, principal)
        entries = [parse_entry(i, raw, validated=validated) for i, raw in enumerate(raw_entries)]
        results = self._run(entries, principal, base_url, bundle_source(bundle, principal))
        return _transaction_response(entries, results, return_resources)

    def transactions(self, bundles: list[dict[str, Any]], principal: Principal | None = None,
                     *, base_url: str | None = None, validated: Sequence[bool] | None = None
                     ) -> list[dict[str, Any] | LiaisonError]:
        """Several transaction Bundles (e.g. the letters a pusher holds) in ONE database
        transaction (or a few, each within `store.locking.MAX_KEYS` lock keys): one grants
        refresh, one commit for all. Each answer is what `transaction(bundle)` would have
        given — its response Bundle, or its error.

        Each bundle keeps its own plan, and sees what the earlier ones wrote (same order as one
        by one). If any of them fails, the group is rolled back and each bundle is applied on
        its own, so one bad bundle costs the others nothing but time. Bundles that read (GET
        entries), batches and callers with a principal go one by one: their answers depend on
        what is visible between bundles. `validated`: for each bundle, as in `transaction`.
        """
        base_url = base_url or self.base_url
        trusted = [bool(flag) and principal is None
                   for flag in (validated or [False] * len(bundles))]
        answers: list[dict[str, Any] | LiaisonError | None] = [None] * len(bundles)
        run: list[tuple[int, list[Entry]]] = []  # consecutive bundles that can go together
        for number, bundle in enumerate(bundles):
            entries = None
            if principal is None and isinstance(bundle, dict) \
                    and bundle.get("resourceType") == "Bundle" \
                    and bundle.get("type") == "transaction":
                try:
                    entries = [parse_entry(i, raw, validated=trusted[number])
                               for i, raw in enumerate(bundle.get("entry") or [])]
                except LiaisonError as error:
                    answers[number] = error  # refused before anything is written
                    continue
            if entries is not None and not any(_is_get(e) for e in entries):
                run.append((number, entries))
                continue
            self._answer_group(run, bundles, answers, base_url, trusted)
            run = []
            answers[number] = self._answer_alone(bundle, principal, base_url, trusted[number])
        self._answer_group(run, bundles, answers, base_url, trusted)
        assert None not in answers  # every bundle was answered, in its place
        return answers  # type: ignore[return-value]

    def _answer_alone(self, bundle: dict[str, Any], principal: Principal | None,
                      base_url: str, validated: bool) -> dict[str, Any] | LiaisonError:
        try:
            return self.transaction(bundle, principal, base_url=base_url, validated=validated)
        except LiaisonError as error:
            return error

    def _answer_group(self, run: list[tuple[int, list[Entry]]], bundles: list[dict[str, Any]],
                      answers: list[dict[str, Any] | LiaisonError | None], base_url: str,
                      trusted: list[bool]) -> None:
        parts, matched = within_lock_budget(self.engine, run, lambda item: item[1])
        for part in parts:
            self._answer_together(part, bundles, answers, base_url, trusted, matched)

    def _answer_together(self, run: list[tuple[int, list[Entry]]],
                         bundles: list[dict[str, Any]],
                         answers: list[dict[str, Any] | LiaisonError | None], base_url: str,
                         trusted: list[bool], matched: frozenset[TokenKey] | None) -> None:
        if len(run) == 1:  # nothing to share: the ordinary path (same statements, same answer)
            number, entries = run[0]
            try:
                answers[number] = _transaction_response(
                    entries, self._run(entries, None, base_url,
                                       bundle_source(bundles[number], None)), False)
            except LiaisonError as error:
                answers[number] = error
            return
        if not run:
            return
        try:
            grouped = self._run_group([(entries, bundle_source(bundles[number], None))
                                       for number, entries in run], matched)
        except (LiaisonError, IntegrityError, UnlockedCreate):
            # rolled back as a whole: each alone, as received (the earlier bundles' entries
            # were rewritten), so the failing one gets its own error
            for number, _ in run:
                answers[number] = self._answer_alone(bundles[number], None, base_url,
                                                     trusted[number])
            return
        for (number, entries), results in zip(run, grouped, strict=True):
            answers[number] = _transaction_response(entries, results, False)

    def _run_group(self, group: list[tuple[list[Entry], str | None]],
                   matched: frozenset[TokenKey] | None) -> list[list[Result]]:
        """The write-only bundles of `group` (entries, source), one after the other, in one
        database transaction (trusted caller: no principal). Raises the first failure; nothing
        is then written. `matched`: as in `write_locks.locked_write`."""
        def work(session: Session, unlocked: frozenset[TokenKey]) -> list[list[Result]]:
            answers = []
            writer = Writer(session)
            for number, (entries, source) in enumerate(group):
                if number:
                    # a later bundle's conditionals must match what the earlier ones created
                    writer.batch.flush(session)
                    session.expire_all()  # ORM rows read earlier may have changed since
                results = self._write_entries(writer, entries, source, unlocked)
                answers.append([results[e.index] for e in entries])
            writer.finish()
            audit.write(session, [  # on the trail with the writes, in the same commit
                _audited_write(None, entry, result)
                for (entries, _), results in zip(group, answers, strict=True)
                for entry, result in zip(entries, results, strict=True)])
            return answers

        # PostgreSQL: every bundle's advisory locks at the start, in one sorted pass (no cycle)
        return locked_write(self.engine, [e for entries, _ in group for e in entries], work,
                            matched)

    def _batch(self, raw_entries: list[Any], principal: Principal | None, base_url: str,
               return_resources: bool) -> dict[str, Any]:
        answers = []
        for index, raw in enumerate(raw_entries):
            try:
                entry = parse_entry(index, raw)
                if _is_get(entry):
                    with self._session() as session:
                        result = self._get(session, entry, principal, base_url)
                else:
                    result = self._run([entry], principal, base_url)[0]
                answers.append(result.response(return_resources or _is_get(entry)))
            except LiaisonError as error:
                answers.append({"response": {"status": _status_line(error.http_status),
                                             "outcome": error.operation_outcome()}})
        return {"resourceType": "Bundle", "type": "batch-response", "entry": answers}

    # --- bulk load ------------------------------------------------------------------------

    def import_resources(self, resources: list[dict[str, Any]], batch_size: int = 2000) -> int:
        """Store many already-valid resources fast (seeding, benchmarks): ids kept if given,
        no validation, no conditional logic; grants recomputed at the end."""
        patients: set[str] = set()
        communications: set[int] = set()
        for start in range(0, len(resources), batch_size):
            chunk = resources[start:start + batch_size]
            with write_session(self.engine) as session:
                now = utcnow()
                stored = []
                for resource in chunk:
                    resource = {**resource, "id": resource.get("id") or new_id()}
                    resource["meta"] = {**(resource.get("meta") or {}), "versionId": "1",
                                        "lastUpdated": instant(now)}
                    stored.append(resource)
                rows = [{"resource_type": r["resourceType"], "resource_id": r["id"],
                         "patient_id": patient_of(session, r), "body": dumps(r)} for r in stored]
                found = insert_resources(session, [
                    (r["resource_type"], r["resource_id"], 1, now, False, r["patient_id"],
                     r["body"]) for r in rows])
                insert_versions(session, [
                    (r["resource_type"], r["resource_id"], 1, now, "PUT", False, r["body"])
                    for r in rows])
                pks = [found[(r["resource_type"], r["resource_id"])] for r in rows]
                insert_index(session, [(pk, r["resourceType"], index_rows(r))
                                       for pk, r in zip(pks, stored, strict=True)])
                feed.stamp(session, list(pks), feed.reserve(session, len(pks)))
                for pk, row in zip(pks, rows, strict=True):
                    if row["resource_type"] == "CareTeam" and row["patient_id"]:
                        patients.add(row["patient_id"])
                    elif row["resource_type"] == "Communication":
                        communications.add(pk)
        with write_session(self.engine) as session:
            grants.refresh(session, patients, communications)
        if self.engine.dialect.name == "postgresql":  # plans made for what is there now
            with self.engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
        return len(resources)


def _change_entry(row: Any, base_url: str) -> dict[str, Any]:
    """A history entry for the current state of a changed resource (a deletion has none)."""
    path = f"{row.resource_type}/{row.resource_id}"
    method, status = ("DELETE", "204") if row.deleted else (
        ("POST", "201") if row.version_id == 1 else ("PUT", "200"))
    entry: dict[str, Any] = {
        "fullUrl": f"{base_url}/{path}",
        "request": {"method": method, "url": row.resource_type if method == "POST" else path},
        "response": {"status": status, "etag": f'W/"{row.version_id}"',
                     "lastModified": instant(row.last_updated)}}
    if not row.deleted:
        entry["resource"] = loads(row.body)
    return entry


def bundle_source(bundle: Any, principal: Principal | None) -> str | None:
    """The organisation a bundle liaison wrote for an accepted letter names (`SOURCE_TAG`);
    None for any other bundle, and for any caller but liaison itself (in process, or another
    liaison delivering here with a system token)."""
    trusted = principal is None or principal.kind == "system"
    if not trusted or not isinstance(bundle, dict):
        return None
    for tag in (bundle.get("meta") or {}).get("tag") or []:
        if isinstance(tag, dict) and tag.get("system") == SOURCE_TAG and tag.get("code"):
            return str(tag["code"])
    return None


def _transaction_response(entries: list[Entry], results: list[Result],
                          return_resources: bool) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction-response",
            "entry": [r.response(return_resources or (r.status == 200 and _is_get(e)))
                      for r, e in zip(results, entries, strict=True)]}


def _is_get(entry: Entry) -> bool:
    return entry.method in ("GET", "HEAD")


def _may_write(raw_entries: list[Any], principal: Principal | None) -> None:
    """Who may not write hears so before anything of what they sent is looked at (a 403, not
    a validation error that would tell them about the record's checks)."""
    if any(str(((raw or {}).get("request") or {}).get("method", "")).upper()
           not in ("GET", "HEAD") for raw in raw_entries if isinstance(raw, dict)):
        require_record_write(principal)
