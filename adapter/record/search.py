"""FHIR search: parameters parsed into SQL over the index tables, results as a searchset Bundle.

Every criterion becomes `resource.pk IN (SELECT resource_pk FROM <index> WHERE …)`, so a search
is a few indexed lookups; paging is keyset on a unique key (`pk`, or `last_updated, pk`), so a
page boundary never duplicates or skips a resource even while others are written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import and_, bindparam, false, func, not_, or_, select, text, true
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause
from sqlmodel import Session

from adapter.auth.principal import Principal
from adapter.config import get_settings
from adapter.errors import BadRequest, NotAcceptable
from adapter.record.access import read_filter
from adapter.record.indexing import date_range, normalize_text, parse_reference
from adapter.record.params import (
    RESULT_PARAMETERS,
    SPECIAL_PARAMETERS,
    SearchParam,
    is_supported,
    params_for,
)
from adapter.record.storage import RESOURCES, loads
from adapter.store.engine import table_of
from adapter.store.record_tables import RecordDate, RecordReference, RecordString, RecordToken

DEFAULT_COUNT = 50
_INCLUDE_ROUNDS = 3
_TABLES = {"token": table_of(RecordToken), "reference": table_of(RecordReference),
           "date": table_of(RecordDate), "string": table_of(RecordString)}
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
_SORTS = {"_lastUpdated", "-_lastUpdated", "_id"}
_JSON_FORMATS = {"json", "application/json", "application/fhir+json"}
# FHIR search escapes: \, \| \$ \\ stand for the literal character.
_SPLIT = re.compile(r"(?<!\\),")
_PIPE = re.compile(r"(?<!\\)\|")
_ESCAPED = re.compile(r"\\([\\|,$])")


@dataclass(frozen=True)
class Include:
    source: str
    param: str
    target: str | None
    iterate: bool = False


@dataclass
class SearchRequest:
    resource_type: str
    criteria: list[tuple[str, str]] = field(default_factory=list)  # (name[:modifier], value)
    count: int = DEFAULT_COUNT
    sort: str | None = None
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    summary_count: bool = False
    total: bool = True
    elements: tuple[str, ...] = ()
    cursor: str | None = None
    echo: list[tuple[str, str]] = field(default_factory=list)  # params for self/next links
    clauses: list[ColumnElement[bool]] = field(default_factory=list)  # criteria, built once


def _include(resource_type: str, value: str, iterate: bool, reverse: bool) -> Include:
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise BadRequest(f"_include / _revinclude must be Type:param[:Target], not {value!r}")
    source, param = parts[0], parts[1]
    if not is_supported(source):
        raise BadRequest(f"unknown resource type {source!r} in {value!r}")
    if param != "*":
        definition = params_for(source).get(param)
        if definition is None or definition.type != "reference":
            raise BadRequest(f"{source} has no reference search parameter {param!r}")
    if not reverse and not iterate and source != resource_type:
        raise BadRequest(f"_include={value} does not start with the searched type {resource_type}")
    return Include(source, param, parts[2] if len(parts) == 3 else None, iterate)


def _result_parameter(request: SearchRequest, name: str, value: str) -> None:
    base, _, modifier = name.partition(":")
    if base == "_count":
        if not value.isdigit():
            raise BadRequest("_count must be a non-negative integer")
        # a larger page than the maximum is served as the maximum (FHIR lets a server give
        # fewer); the next link carries the count actually used
        request.count = min(int(value), get_settings().max_page_size)
        request.summary_count = request.summary_count or request.count == 0
    elif base == "_sort":
        if value not in _SORTS:
            raise BadRequest(f"_sort supports {', '.join(sorted(_SORTS))}, not {value!r}")
        request.sort = value
    elif base in ("_include", "_revinclude"):
        reverse = base == "_revinclude"
        found = _include(request.resource_type, value, modifier == "iterate", reverse)
        (request.revincludes if reverse else request.includes).append(found)
    elif base == "_summary":
        if value == "count":
            request.summary_count = True
        elif value != "false":
            raise BadRequest("_summary supports count and false")
    elif base == "_total":
        request.total = value != "none"
    elif base == "_elements":
        request.elements = tuple(v.strip() for v in value.split(",") if v.strip())
    elif base == "_format" and value not in _JSON_FORMATS:
        raise NotAcceptable("this server speaks FHIR JSON only (_format=json)")
    elif base == "_cursor":
        request.cursor = value


def parse(resource_type: str, params: list[tuple[str, str]], *, lenient: bool = False
          ) -> SearchRequest:
    request = SearchRequest(resource_type)
    known = params_for(resource_type)
    for name, value in params:
        base = name.partition(":")[0].partition(".")[0]
        if base in RESULT_PARAMETERS:
            _result_parameter(request, name, value)
            if base != "_cursor":
                request.echo.append((name, value))
        elif base in known or base in SPECIAL_PARAMETERS:
            request.criteria.append((name, value))
            request.echo.append((name, value))
        elif not lenient:
            raise BadRequest(f"unknown search parameter {name!r} for {resource_type}")
    # built now so a malformed value is a 400 before any SQL runs
    request.clauses = [criterion(resource_type, RESOURCES, name, value)
                       for name, value in request.criteria]
    return request


# --- criteria -------------------------------------------------------------------------------


def _values(value: str, *, escaped: bool = False) -> list[str]:
    """The alternatives of a comma-separated value; unescaped unless the caller splits further."""
    values = _SPLIT.split(value)
    return values if escaped else [_unescape(v) for v in values]


def _unescape(text: str) -> str:
    return _ESCAPED.sub(r"\1", text)


def _indexed(table: FromClause, resource_type: str, param: str,
             resources: FromClause, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return resources.c.pk.in_(
        select(table.c.resource_pk).where(
            table.c.resource_type == resource_type, table.c.param == param, condition
        )
    )


def _token_condition(table: FromClause, value: str) -> ColumnElement[bool]:
    """`code`, `system|code`, `|code` or `system|`, with `value` still escaped."""
    parts = _PIPE.split(value, maxsplit=1)
    if len(parts) == 1:
        return table.c.code == _unescape(value)
    system, code = (_unescape(part) for part in parts)
    if not code:
        return table.c.system == system
    return and_(table.c.system == system, table.c.code == code)


def _date_condition(low: Any, high: Any, value: str) -> ColumnElement[bool]:
    prefix = value[:2] if value[:2] in _PREFIXES else "eq"
    bounds = date_range(value[2:] if value[:2] in _PREFIXES else value)
    if bounds is None:
        raise BadRequest(f"{value!r} is not a FHIR date")
    start, end = bounds
    return {
        "eq": and_(low >= start, high <= end),
        "ne": not_(and_(low >= start, high <= end)),
        "gt": high > end,
        "lt": low < start,
        "ge": high >= start,
        "le": low <= end,
        "sa": low > end,
        "eb": high < start,
    }[prefix]


def _reference_condition(table: FromClause, definition: SearchParam, modifier: str,
                         value: str) -> ColumnElement[bool]:
    target = parse_reference(value) if "/" in value else None
    if target:
        return and_(table.c.target_type == target[0], table.c.target_id == target[1])
    target_type = modifier or definition.single_target
    if target_type:
        return and_(table.c.target_type == target_type, table.c.target_id == value)
    return table.c.target_id == value


def _chained(resource_type: str, definition: SearchParam, modifier: str, chain: str,
             value: str, resources: FromClause) -> ColumnElement[bool]:
    sub_name = chain.partition(".")[0].partition(":")[0]
    candidates = [modifier] if modifier else list(definition.targets)
    targets = [t for t in candidates if is_supported(t)
               and (sub_name in params_for(t) or sub_name in SPECIAL_PARAMETERS)]
    if not targets:
        raise BadRequest(f"cannot chain {definition.name}.{chain} on {resource_type}")
    references = _TABLES["reference"]
    alternatives = []
    for target in targets:
        chained = RESOURCES.alias()
        matching_ids = select(chained.c.resource_id).where(
            *_type_clauses(target, chained, [chain]),
            criterion(target, chained, chain, value),
        )
        alternatives.append(and_(references.c.target_type == target,
                                 references.c.target_id.in_(matching_ids)))
    return _indexed(references, resource_type, definition.name, resources, or_(*alternatives))


def _special(name: str, modifier: str, value: str, resources: FromClause) -> ColumnElement[bool]:
    if modifier:
        raise BadRequest(f"modifier :{modifier} is not supported on {name}")
    if name == "_id":
        return resources.c.resource_id.in_(_values(value))
    return or_(*[_date_condition(resources.c.last_updated, resources.c.last_updated, v)
                 for v in _values(value)])


def criterion(resource_type: str, resources: FromClause, name: str, value: str
              ) -> ColumnElement[bool]:
    """The WHERE clause for one `name=value` search parameter on `resources`."""
    head, dot, chain = name.partition(".")
    param_name, _, modifier = head.partition(":")
    if param_name in SPECIAL_PARAMETERS and not dot:
        return _special(param_name, modifier, value, resources)
    definition = params_for(resource_type).get(param_name)
    if definition is None:
        raise BadRequest(f"unknown search parameter {param_name!r} for {resource_type}")
    if dot:
        if definition.type != "reference":
            raise BadRequest(f"{param_name} is not a reference: it cannot be chained")
        return _chained(resource_type, definition, modifier, chain, value, resources)
    table = _TABLES[definition.type]
    if modifier == "missing":
        present = resources.c.pk.in_(select(table.c.resource_pk).where(
            table.c.resource_type == resource_type, table.c.param == param_name))
        return not_(present) if value == "true" else present
    values = _values(value, escaped=definition.type == "token")
    if definition.type == "token":
        if modifier not in ("", "not"):
            raise BadRequest(f"modifier :{modifier} is not supported on token {param_name}")
        found = _indexed(table, resource_type, param_name, resources,
                         or_(*[_token_condition(table, v) for v in values]))
        return not_(found) if modifier == "not" else found
    if definition.type == "reference":
        if modifier and not is_supported(modifier):
            raise BadRequest(f"modifier :{modifier} is not supported on reference {param_name}")
        condition = or_(*[_reference_condition(table, definition, modifier, v) for v in values])
        return _indexed(table, resource_type, param_name, resources, condition)
    if definition.type == "date":
        if modifier:
            raise BadRequest(f"modifier :{modifier} is not supported on date {param_name}")
        condition = or_(*[_date_condition(table.c.low, table.c.high, v) for v in values])
        return _indexed(table, resource_type, param_name, resources, condition)
    return _indexed(table, resource_type, param_name, resources,
                    or_(*[_string_condition(table, modifier, v) for v in values]))


def _string_condition(table: FromClause, modifier: str, value: str) -> ColumnElement[bool]:
    if modifier == "exact":
        return table.c.exact == value
    normalized = normalize_text(value)
    if modifier == "contains":
        return table.c.normalized.contains(normalized, autoescape=True)
    if modifier:
        raise BadRequest(f"modifier :{modifier} is not supported on strings")
    return table.c.normalized.startswith(normalized, autoescape=True)


# --- execution ------------------------------------------------------------------------------


def _restricts_by_index(name: str) -> bool:
    """True if the criterion is `pk IN (index rows of this type)`: the type is implied."""
    head = name.partition(".")[0]
    param, _, modifier = head.partition(":")
    return param not in SPECIAL_PARAMETERS and modifier not in ("not", "missing")


def _type_clauses(resource_type: str, resources: FromClause,
                  names: list[str]) -> list[ColumnElement[bool]]:
    # Without statistics SQLite would walk every resource of the type instead of probing the
    # few pks an index criterion yields; the criterion already restricts the type, so say so
    # only when no criterion does.
    clauses = [resources.c.deleted == false()]
    if not any(_restricts_by_index(n) for n in names):
        clauses.append(resources.c.resource_type == resource_type)
    return clauses


def _where(request: SearchRequest, principal: Principal | None) -> list[ColumnElement[bool]]:
    clauses = _type_clauses(request.resource_type, RESOURCES, [n for n, _ in request.criteria])
    clauses += request.clauses
    access = read_filter(principal, RESOURCES)
    if access is not None:
        clauses.append(access)
    return clauses


def _order_and_cursor(request: SearchRequest) -> tuple[list[Any], ColumnElement[bool]]:
    pk, updated, rid = RESOURCES.c.pk, RESOURCES.c.last_updated, RESOURCES.c.resource_id
    cursor = request.cursor
    try:
        if request.sort == "_id":
            after = rid > cursor if cursor else true()
            return [rid.asc()], after
        if request.sort in ("_lastUpdated", "-_lastUpdated"):
            order = [updated.desc(), pk.desc()] if request.sort[0] == "-" else [updated, pk]
            if not cursor:
                return order, true()
            stamp, _, last_pk = cursor.rpartition("~")
            moment, key = datetime.fromisoformat(stamp), int(last_pk)
            if request.sort[0] == "-":
                return order, or_(updated < moment, and_(updated == moment, pk < key))
            return order, or_(updated > moment, and_(updated == moment, pk > key))
        return [pk.asc()], (pk > int(cursor)) if cursor else true()
    except ValueError as error:
        raise BadRequest("_cursor is not a cursor this server handed out") from error


def _cursor_of(request: SearchRequest, row: Any) -> str:
    if request.sort == "_id":
        return row.resource_id
    if request.sort in ("_lastUpdated", "-_lastUpdated"):
        return f"{row.last_updated.isoformat()}~{row.pk}"
    return str(row.pk)


def count(session: Session, request: SearchRequest, principal: Principal | None) -> int:
    query = select(func.count()).select_from(RESOURCES).where(*_where(request, principal))
    return session.execute(query).scalar_one()


def _columns() -> list[Any]:
    c = RESOURCES.c
    return [c.pk, c.resource_type, c.resource_id, c.last_updated, c.body]


def _rows_by_identity(session: Session, wanted: set[tuple[str, str]],
                      principal: Principal | None) -> list[Any]:
    by_type: dict[str, set[str]] = {}
    for resource_type, resource_id in wanted:
        by_type.setdefault(resource_type, set()).add(resource_id)
    access = read_filter(principal, RESOURCES)
    rows: list[Any] = []
    for resource_type, ids in sorted(by_type.items()):
        query = select(*_columns()).where(
            RESOURCES.c.resource_type == resource_type,
            RESOURCES.c.resource_id.in_(sorted(ids)),
            RESOURCES.c.deleted == false(),
            *([access] if access is not None else []),
        ).order_by(RESOURCES.c.pk)
        rows += session.execute(query).all()
    return rows


def _included(session: Session, request: SearchRequest, matches: Sequence[Any],
              principal: Principal | None) -> list[Any]:
    references = _TABLES["reference"]
    have = {(r.resource_type, r.resource_id) for r in matches}
    added: list[Any] = []
    frontier = list(matches)
    for round_number in range(_INCLUDE_ROUNDS):
        wanted: set[tuple[str, str]] = set()
        for include in request.includes:
            if round_number and not include.iterate:
                continue
            pks = [r.pk for r in frontier if r.resource_type == include.source]
            if not pks:
                continue
            query = select(references.c.target_type, references.c.target_id).where(
                references.c.resource_pk.in_(pks),
                references.c.resource_type == include.source,
            )
            if include.param != "*":
                query = query.where(references.c.param == include.param)
            if include.target:
                query = query.where(references.c.target_type == include.target)
            wanted |= {(t, i) for t, i in session.execute(query).all()} - have
        if not wanted:
            break
        frontier = _rows_by_identity(session, wanted, principal)
        have |= {(r.resource_type, r.resource_id) for r in frontier}
        added += frontier
    return added


def _revincluded(session: Session, request: SearchRequest, matches: Sequence[Any],
                 principal: Principal | None, have: set[tuple[str, str]]) -> list[Any]:
    references = _TABLES["reference"]
    access = read_filter(principal, RESOURCES)
    added: list[Any] = []
    ids = [r.resource_id for r in matches]
    for include in request.revincludes:
        if not ids:
            break
        referencing = select(references.c.resource_pk).where(
            references.c.resource_type == include.source,
            references.c.target_type == request.resource_type,
            references.c.target_id.in_(ids),
        )
        if include.param != "*":
            referencing = referencing.where(references.c.param == include.param)
        query = select(*_columns()).where(
            RESOURCES.c.pk.in_(referencing), RESOURCES.c.deleted == false(),
            *([access] if access is not None else []),
        ).order_by(RESOURCES.c.pk)
        for row in session.execute(query).all():
            if (row.resource_type, row.resource_id) not in have:
                have.add((row.resource_type, row.resource_id))
                added.append(row)
    return added


def _link(base_url: str, request: SearchRequest, cursor: str | None = None) -> str:
    params = [(name, str(request.count) if name == "_count" else value)
              for name, value in request.echo]  # the count served, not the one asked
    if cursor is not None:
        params.append(("_cursor", cursor))
    query = urlencode(params)
    return f"{base_url}/{request.resource_type}" + (f"?{query}" if query else "")


def _shaped(row: Any, elements: tuple[str, ...]) -> dict[str, Any]:
    resource = loads(row.body)
    if not elements:
        return resource
    kept = {k: v for k, v in resource.items() if k in elements or k in ("resourceType", "id")}
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED"}]
    kept["meta"] = meta
    return kept


def execute(session: Session, request: SearchRequest, principal: Principal | None,
            base_url: str) -> dict[str, Any]:
    """Run a parsed search for `principal`; a searchset Bundle with self / next links."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if request.summary_count:
        bundle["total"] = count(session, request, principal)
        bundle["link"] = [{"relation": "self", "url": _link(base_url, request)}]
        return bundle
    order, after = _order_and_cursor(request)
    query = (select(*_columns()).where(*_where(request, principal), after)
             .order_by(*order).limit(request.count + 1))
    rows = session.execute(query).all()
    matches, more = rows[: request.count], len(rows) > request.count
    if request.total and request.cursor is None:
        bundle["total"] = len(matches) if not more else count(session, request, principal)
    links = [{"relation": "self", "url": _link(base_url, request, request.cursor)}]
    if more:
        links.append({"relation": "next",
                      "url": _link(base_url, request, _cursor_of(request, matches[-1]))})
    bundle["link"] = links
    included = _included(session, request, matches, principal) if request.includes else []
    have = {(r.resource_type, r.resource_id) for r in [*matches, *included]}
    if request.revincludes:
        included += _revincluded(session, request, matches, principal, have)
    bundle["entry"] = [
        {"fullUrl": f"{base_url}/{row.resource_type}/{row.resource_id}",
         "resource": _shaped(row, request.elements if mode == "match" else ()),
         "search": {"mode": mode}}
        for rows_, mode in ((matches, "match"), (included, "include"))
        for row in rows_
    ]
    return bundle


def matching_ids(session: Session, resource_type: str, params: list[tuple[str, str]],
                 limit: int = 2) -> list[str]:
    """Ids of current resources matching search `params`, unfiltered (conditional operations)."""
    if not params:
        raise BadRequest("a conditional operation needs search criteria")
    request = parse(resource_type, params)
    if not request.criteria:
        raise BadRequest("a conditional operation needs search criteria")
    query = (select(RESOURCES.c.resource_id).where(*_where(request, None))
             .order_by(RESOURCES.c.pk).limit(limit))
    return list(session.execute(query).scalars())


TokenKey = tuple[str, str, str, str]  # resource type, parameter, system, code


def exact_token(resource_type: str, params: list[tuple[str, str]]) -> TokenKey | None:
    """The key of criteria that are one exact `param=system|code` token (the conditional
    creates of a bundle: `identifier=…`, `_tag=…`), else None."""
    if len(params) != 1:
        return None
    name, value = params[0]
    if ":" in name or "." in name or "," in value or "\\" in value:
        return None
    definition = params_for(resource_type).get(name)
    if definition is None or definition.type != "token" or name in SPECIAL_PARAMETERS:
        return None
    system, bar, code = value.partition("|")
    if not (bar and system and code):
        return None
    return resource_type, name, system, code


# One statement for the whole bundle, compiled once: the exact (type, param, system, code)
# combinations are picked out in Python from what the three IN lists let through.
_TOKEN_MATCHES = text(
    "SELECT t.resource_type, t.param, t.system, t.code, r.resource_id "
    "FROM record_token t JOIN record_resource r ON r.pk = t.resource_pk "
    "WHERE t.resource_type IN :kinds AND t.param IN :params AND t.code IN :codes "
    "AND r.deleted = :deleted ORDER BY r.pk"
).bindparams(bindparam("kinds", expanding=True), bindparam("params", expanding=True),
             bindparam("codes", expanding=True))
# PostgreSQL: the exact keys, as four arrays joined to the index key by key. Given the three
# lists (a letter's: 20 types × 2 parameters × 30 codes), it judged their product of probes
# dearer than reading every token of the record, and did: a cost that grew with the record.
_TOKEN_MATCHES_ARRAYS = text(
    "SELECT t.resource_type, t.param, t.system, t.code, r.resource_id "
    "FROM unnest(CAST(:kinds AS varchar[]), CAST(:params AS varchar[]), "
    "CAST(:systems AS varchar[]), CAST(:codes AS varchar[])) AS k(kind, param, system, code) "
    "JOIN record_token t ON t.resource_type = k.kind AND t.param = k.param "
    "AND t.code = k.code AND t.system = k.system "
    "JOIN record_resource r ON r.pk = t.resource_pk "
    "WHERE r.deleted = :deleted ORDER BY r.pk")


def token_matches(session: Session, keys: set[TokenKey], limit: int = 2
                  ) -> dict[TokenKey, list[str]]:
    """For each key, the ids of current resources matching it (as `matching_ids` would find
    them), in one indexed query per 500 keys (codes) instead of one search per key."""
    found: dict[TokenKey, list[str]] = {key: [] for key in keys}
    for rows in _token_rows(session, keys):
        for kind, param, system, code, resource_id in rows:
            ids = found.get((kind, param, system, code))
            if ids is not None and len(ids) < limit and resource_id not in ids:
                ids.append(resource_id)
    return found


def _token_rows(session: Session, keys: set[TokenKey]) -> Iterator[Any]:
    """The rows of `_TOKEN_MATCHES` (or its PostgreSQL form) for `keys`, 500 at a time."""
    if session.get_bind().dialect.name == "postgresql":
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start:start + 500]
            yield session.execute(_TOKEN_MATCHES_ARRAYS, {
                name: [key[column] for key in chunk]
                for column, name in enumerate(("kinds", "params", "systems", "codes"))
            } | {"deleted": False})
        return
    kinds = sorted({key[0] for key in keys})
    params = sorted({key[1] for key in keys})
    codes = sorted({key[3] for key in keys})
    for start in range(0, len(codes), 500):
        yield session.execute(_TOKEN_MATCHES, {"kinds": kinds, "params": params,
                                               "codes": codes[start:start + 500],
                                               "deleted": False})
