"""The change feed: every committed change of the record, in commit order, for readers that
pull "what changed for me" without ever missing one.

Each write transaction, at its very end, reserves the feed's next positions for the resources
it changed (`reserve`, then `stamp`): an UPDATE of the feed's one row, whose lock (SQLite: the
database's single writer; PostgreSQL: the row lock) is held until the transaction commits.
Positions are therefore handed out in commit order: once a reader sees the feed at position
N, every position up to N is committed and visible. (A timestamp is not: `meta.lastUpdated` is
taken before the commit, so a change could commit behind a time a reader already passed, and
be missed.) A transaction that only grants (a hospital's second letter for a patient whose
resources were all there) takes a position too, for its grants.

A reader's cursor is the last position it has seen (`Cursor.after`). A pull answers, for a
window of positions (`after`, `until`] fixed at its first page:
1. the current resources of the patients the reader was *granted* in the window (a
   professional newly in a care team reads what was written before they joined; a first
   pull, every patient granted to them, by a bulk load or before the feed existed too), then
2. the resources *changed* in the window, except those patients' (already sent),
each paged in a stable order (the first by patient, a few patients at a time), so every
change the reader may see comes exactly once. The feed holds what is in a patient's
compartment; directory resources (Practitioner, Organization…) are read where they are
referenced.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, not_, or_, select, text
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement, TextClause
from sqlmodel import Session

from adapter.auth.principal import Principal
from adapter.errors import BadRequest
from adapter.record import access
from adapter.record.indexing import date_range
from adapter.store.engine import table_of
from adapter.store.record_tables import (
    PatientGrant,
    RecordChange,
    RecordFeed,
    RecordResource,
    ResourceGrant,
)

_RESOURCES = table_of(RecordResource)
_CHANGES = table_of(RecordChange)
_PATIENT_GRANTS = table_of(PatientGrant)
_RESOURCE_GRANTS = table_of(ResourceGrant)
# What pulls read through: a plain connection (the ORM's session costs more than a small
# statement does) or the session of a transaction or test.
Reading = Session | Connection
_ADVANCE = text("UPDATE record_feed SET position = position + :count WHERE id = 1 "
                "RETURNING position")
_POSITION = text("SELECT position FROM record_feed WHERE id = 1")


def reserve(session: Session, count: int) -> int:
    """The first of `count` (at least one) new positions for this transaction's changes;
    every other writer waits at its own `reserve` until this transaction ends."""
    count = max(1, count)
    last = session.execute(_ADVANCE, {"count": count}).scalar()
    if last is None:  # the record's first write since the feed exists
        before = session.execute(select(func.max(_CHANGES.c.change_seq))).scalar() or 0
        last = before + count
        session.execute(insert(table_of(RecordFeed)), [{"id": 1, "position": last}])
    return int(last) - count + 1


_STAMP = text("INSERT INTO record_change (resource_pk, change_seq) VALUES (:pk, :position) "
              "ON CONFLICT (resource_pk) DO UPDATE SET change_seq = excluded.change_seq")


# PostgreSQL: one statement with two arrays (psycopg's executemany sends a message a row).
_STAMP_ARRAYS = text(
    "INSERT INTO record_change (resource_pk, change_seq) "
    "SELECT * FROM unnest(CAST(:pks AS bigint[]), CAST(:positions AS bigint[])) "
    "ON CONFLICT (resource_pk) DO UPDATE SET change_seq = excluded.change_seq")


def stamp(session: Session, pks: list[int], first: int) -> None:
    """Give the changed resources `pks` their positions, from `first` on, in that order."""
    if not pks:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_STAMP_ARRAYS, {"pks": pks,
                                        "positions": list(range(first, first + len(pks)))})
    else:
        session.execute(_STAMP, [{"pk": pk, "position": first + offset}
                                 for offset, pk in enumerate(pks)])


def head(session: Reading) -> int:
    """The last position committed (0: nothing written yet)."""
    position = session.execute(_POSITION).scalar()
    if position is None:
        position = session.execute(select(func.max(_CHANGES.c.change_seq))).scalar()
    return int(position or 0)


def position_before(session: Reading, since: str) -> int:
    """For a first pull "since" an instant: the last position of a resource last changed
    before it (a change made before `since` but committed later may come again; none made
    after it is skipped)."""
    bounds = date_range(since)
    if bounds is None:
        raise BadRequest(f"_since {since!r} is not a FHIR instant")
    before = session.execute(select(func.max(_CHANGES.c.change_seq)).join_from(
        _CHANGES, _RESOURCES, _RESOURCES.c.pk == _CHANGES.c.resource_pk).where(
        _RESOURCES.c.last_updated < bounds[0])).scalar()
    return int(before or 0)


# --- reading --------------------------------------------------------------------------------

GRANTED, CHANGED = 1, 2  # the two phases of a window
# A window of at most this many positions (a pull made a few seconds after the last) is read
# along the feed: its changes first, then which of them the reader may see. A larger one (a
# first pull, or one after minutes of letters arriving: hundreds of positions a second) is
# read along the reader's own paths, which its patients bound, whatever the record holds.
# Neither is one join of the feed with the access filter: PostgreSQL's planner, costing the
# filter's sub-queries at every probe, joined by scanning every resource.
_STEP = 1_000
_SMALL_WINDOW = _STEP


@dataclass(frozen=True)
class Cursor:
    """Where a reader stands: positions up to `after` are read; within the window up to
    `until` (0: not opened yet), the phase and the last key read in it: in the first phase,
    the patient and the resource (`patient`, `last`), in the second the position (`last`)."""

    after: int = 0
    until: int = 0
    phase: int = GRANTED
    last: int = 0
    patient: str = ""

    def encode(self) -> str:
        raw = f"2.{self.after}.{self.until}.{self.phase}.{self.last}.{self.patient}".encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @staticmethod
    def decode(token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            version, rest = raw.split(".", 1)
            if version == "2":
                *numbers, patient = rest.split(".", 4)
            else:  # a link of the previous version: its first phase went by resource alone
                numbers, patient = rest.split("."), ""
            after, until, phase, last = (int(number) for number in numbers)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadRequest("the cursor is not one this server gave") from None
        if (version not in ("1", "2") or phase not in (GRANTED, CHANGED)
                or min(after, until, last) < 0 or not _PATIENT_KEY.fullmatch(patient)):
            raise BadRequest("the cursor is not one this server gave")
        if version == "1" and phase == GRANTED:
            last = 0  # read the first phase again: what it gave may come twice, none is missed
        return Cursor(after, until, phase, last, patient)


# a patient's id as a cursor holds it (FHIR ids), or none
_PATIENT_KEY = re.compile(r"[A-Za-z0-9\-.]{0,64}")


@dataclass
class Page:
    rows: list[Row[Any]]  # current rows of record_resource (deleted ones flagged), in feed order
    cursor: Cursor  # where the next page starts
    caught_up: bool  # nothing more is committed now


def _granted_in(after: int, until: int) -> ColumnElement[bool]:
    """Grants read in the first phase of the window (`after`, `until`]: those given at a
    position in it and, in a first pull, those without one (given before the feed existed,
    or by a bulk load). Along the feed, those cost a reader of thousands of patients a walk
    of the feed's index per page (a second a page at 5,000,000 resources); read by patient,
    as every grant with a position is, a page costs its patients' rows."""
    seq = _PATIENT_GRANTS.c.granted_seq
    in_window = and_(seq > after, seq <= until)
    return or_(seq.is_(None), in_window) if after == 0 else in_window


def _granted_outside(after: int, until: int) -> ColumnElement[bool]:
    """The other grants (`_granted_in`'s complement, NULL positions included): their
    patients' changes are read along the paths."""
    seq = _PATIENT_GRANTS.c.granted_seq
    outside = or_(seq <= after, seq > until)
    return outside if after == 0 else or_(seq.is_(None), outside)


def _granted_patients(grant: tuple[str, tuple[str, ...]], after: int, until: int) -> Any:
    """Patients whose grant to the reader is read in the window's first phase (`_granted_in`)."""
    kind, values = grant
    return select(_PATIENT_GRANTS.c.patient_id).where(
        _PATIENT_GRANTS.c.kind == kind, _PATIENT_GRANTS.c.value.in_(values),
        _granted_in(after, until))


def read_page(session: Reading, principal: Principal | None, cursor: Cursor,
              types: tuple[str, ...], count: int) -> Page:
    """The next `count` resources of `types` (all: empty) the reader may see after `cursor`."""
    held: int | None = None  # what the window may hold for the reader; None: not asked here
    if cursor.until == 0:  # a new window: up to what is committed now
        until, held = _new_window(session, principal, cursor.after)
        if until == cursor.after:  # nothing committed since
            return Page([], cursor, caught_up=True)
        if not held:
            # caught up without asking the head again: what committed since this statement
            # began is what commits just after the answer, and comes in the next pull
            return Page([], Cursor(until), caught_up=True)
        cursor = Cursor(cursor.after, until, GRANTED, 0)
    visible = access.read_filter(principal, _RESOURCES)
    # what concerns patients: directory resources are read where referenced, not fed
    where: list[ColumnElement[bool]] = [_RESOURCES.c.patient_id.is_not(None)]
    if types:
        where.append(_RESOURCES.c.resource_type.in_(types))
    if visible is not None:
        where.append(visible)
    grant = access.reader_grant(principal)
    granted = None if grant is None else _granted_patients(grant, cursor.after, cursor.until)

    def may_hold(bits: int) -> bool:  # the window may hold some of these for the reader
        return held is None or bool(held & bits)

    rows: list[Row[Any]] = []
    if cursor.phase == GRANTED and grant is not None and may_hold(_GRANTED_HERE):
        rows = _granted_rows(session, grant, where, cursor, count)
        if len(rows) == count:
            last = rows[-1]
            return Page(rows, Cursor(cursor.after, cursor.until, GRANTED, last.pk or 0,
                                     last.patient_id or ""), False)
    if grant is None:
        small = False
    else:
        small = _few_patients(session, grant) if held is None else not held & _MANY
    if cursor.phase == GRANTED:
        cursor = Cursor(cursor.after, cursor.until, CHANGED, cursor.after)
    changed = list(where)
    if granted is not None:  # (patient ids in `granted` are never NULL: NOT IN is safe)
        changed.append(or_(_RESOURCES.c.patient_id.is_(None),
                           not_(_RESOURCES.c.patient_id.in_(granted))))
    more: list[tuple[Row[Any], int]]
    if not may_hold(_PATIENTS_CHANGED | _RESOURCES_CHANGED):
        more = []  # nothing changed in the window that the reader reaches
    elif cursor.until - cursor.last <= _SMALL_WINDOW:
        more = _changed_in_steps(session, changed, cursor, count - len(rows))
    else:
        more = _changed_by_path(session, principal, changed, cursor, count - len(rows), small,
                                by_patient=may_hold(_PATIENTS_CHANGED),
                                by_resource=may_hold(_RESOURCES_CHANGED))
    rows += [row for row, _ in more]
    if len(rows) == count and more:
        return Page(rows, Cursor(cursor.after, cursor.until, CHANGED, more[-1][1]), False)
    done = Cursor(cursor.until)  # the window is read: the next pull opens the next one
    return Page(rows, done, caught_up=head(session) == cursor.until)


# Patients the first phase of a page reads at first: then as many as the rows still wanted
# need, at the rows per patient seen so far.
_FIRST_PATIENTS = 8


def _granted_rows(session: Reading, grant: tuple[str, tuple[str, ...]],
                  where: list[ColumnElement[bool]], cursor: Cursor, count: int) -> list[Row[Any]]:
    """The next `count` current resources passing `where` of the patients granted to the
    reader in the window, after (`cursor.patient`, `cursor.last`), in that order. Read a few
    patients at a time: a page reads its own patients' rows, not all of a reader's (a first
    pull of thousands of patients, every page sorting all their resources again)."""
    rows: list[Row[Any]] = []
    patient, last = cursor.patient, cursor.last
    wanted, read = _FIRST_PATIENTS, 0
    resumed = True  # the first patient may have rows left after `last`
    granted = _PATIENT_GRANTS.c.patient_id
    in_window = _granted_patients(grant, cursor.after, cursor.until).distinct()
    while len(rows) < count:
        patients = list(session.scalars(
            in_window.where(granted >= patient if resumed else granted > patient)
            .order_by(granted).limit(wanted)).all())
        if not patients:
            break
        found = session.execute(select(_RESOURCES).where(
            *where, _RESOURCES.c.patient_id.in_(patients), _RESOURCES.c.deleted.is_(False),
            or_(_RESOURCES.c.patient_id > patient,
                and_(_RESOURCES.c.patient_id == patient, _RESOURCES.c.pk > last)))
            .order_by(_RESOURCES.c.patient_id, _RESOURCES.c.pk)
            .limit(count - len(rows))).all()
        rows += found
        if len(patients) < wanted:
            break
        patient, last, resumed = patients[-1], 0, False
        read += len(patients)
        per_patient = max(1, len(rows)) / read
        # a quarter more than the estimate: a third statement costs more than a few rows
        wanted = min(1_000, round(1.25 * (count - len(rows)) / per_patient) + 1)
    return rows


def _changed_by_path(session: Reading, principal: Principal | None,
                     visible: list[ColumnElement[bool]], cursor: Cursor, count: int,
                     small: bool = False, *, by_patient: bool = True, by_resource: bool = True
                     ) -> list[tuple[Row[Any], int]]:
    """The next `count` changes of a large window after `cursor.last` that pass `visible`.
    The system reads the feed in order. A reader's changes are looked for along each of its
    paths (its patients, but those granted in this window; its resources' own grants), in
    steps, merged in feed order: asked in one query, with their OR, PostgreSQL read every
    resource of the record."""
    # the window's grants are read in its first phase
    paths = access.patient_paths(principal, _RESOURCES,
                                 _granted_outside(cursor.after, cursor.until),
                                 by_patient=by_patient, by_resource=by_resource)
    if paths is None:
        return [(row, row.change_seq) for row in session.execute(
            select(_RESOURCES, _CHANGES.c.change_seq)
            .join(_CHANGES, _CHANGES.c.resource_pk == _RESOURCES.c.pk)
            .where(*visible, _CHANGES.c.change_seq > cursor.last,
                   _CHANGES.c.change_seq <= cursor.until)
            .order_by(_CHANGES.c.change_seq).limit(count)).all()]
    found: dict[int, tuple[Row[Any], int]] = {}
    for path in paths:
        found |= {seq: (row, seq) for row, seq in
                  _changed_in_steps(session, visible, cursor, count, path, small)}
    return [found[seq] for seq in sorted(found)[:count]]


# A reader granted this many patients or fewer is first asked, by its grants, whether anything
# of theirs is in a new window: most pulls of a professional find nothing, and learning it from
# the window's changes cost a look-up per change (20 letters/s: ~1,800 in 3 s) instead of one
# per patient (their last position, `record_patient_change`) and per resource granted to them
# alone. The statement is written once, so asking costs little more than the database's answer;
# its windows are read as `_by_reader` reads them (`+ 0`), from the reader's grants.
# A patient's last position tells only that something of theirs changed after `after`: past
# `until` it may hide one inside the window, so it is not bounded by `until` (then the window
# is read, and finds what it finds). Looked up per grant (a subquery on the key), not joined:
# on a small record the planner read every patient's position rather than the reader's.
_FEW_PATIENTS = 200
# How many patients the reader was granted, counted up to :enough.
_COUNT_MINE = ("(SELECT count(*) FROM (SELECT 1 FROM record_patient_grant "
               "WHERE kind = :kind AND value IN :values LIMIT :enough) AS mine)")


# What a new window holds for a reader (`_held_case`'s bits): patients granted to them in it;
# changes, after its start, of patients granted to them before; changes in it of resources
# granted to them alone. MANY: a reader of many patients, not asked (anything may be there).
_GRANTED_HERE, _PATIENTS_CHANGED, _RESOURCES_CHANGED, _MANY = 1, 2, 4, 8
_ANYTHING = _GRANTED_HERE | _PATIENTS_CHANGED | _RESOURCES_CHANGED | _MANY


def _held_case(until: str) -> str:
    """What the window up to `until` (an SQL expression) may hold for the reader: a sum of
    the bits above, 0 when nothing. Each bit asks the reader's grants (a superset of what
    the phases read: grants' validity and restrictions are the phases' to check)."""
    return f"""CASE
  WHEN {_COUNT_MINE} > :few THEN {_ANYTHING}
  ELSE CASE WHEN EXISTS (SELECT 1 FROM record_patient_grant
        WHERE kind = :kind AND value IN :values
        AND ((granted_seq > :after AND granted_seq <= {until})
             OR (granted_seq IS NULL AND :after = 0))) THEN {_GRANTED_HERE} ELSE 0 END
  + CASE WHEN EXISTS (SELECT 1 FROM record_patient_grant
        WHERE kind = :kind AND value IN :values
        AND (granted_seq <= :after OR (granted_seq IS NULL AND :after > 0))
        AND (SELECT change_seq FROM record_patient_change
             WHERE record_patient_change.patient_id = record_patient_grant.patient_id)
            > :after) THEN {_PATIENTS_CHANGED} ELSE 0 END
  + CASE WHEN EXISTS (SELECT 1 FROM record_resource_grant
        JOIN record_change ON record_change.resource_pk = record_resource_grant.resource_pk
        WHERE record_resource_grant.kind = :kind AND record_resource_grant.value IN :values
        AND record_change.change_seq + 0 > :after
        AND record_change.change_seq + 0 <= {until}) THEN {_RESOURCES_CHANGED} ELSE 0 END
  END"""


_HELD = f"SELECT {_held_case(':until')}"
# A pull's first question in one statement (a round trip, and a message for the server to
# answer, fewer per pull): where the feed stands now, and what up to there can be the
# reader's. Both are read in the statement's one snapshot.
_WINDOW = f"""
SELECT feed.position, CASE WHEN feed.position <= :after THEN 0
  ELSE {_held_case("feed.position")} END
FROM record_feed AS feed WHERE feed.id = 1"""
_FEW = f"SELECT {_COUNT_MINE}"


@functools.lru_cache(maxsize=256)
def _for_reader(statement: str, values: int) -> TextClause:
    """`statement` for a reader of `values` grant values, its `IN :values` lists written out
    (`:v0, :v1`): an expanding parameter is written into the statement again at each
    execution."""
    names = ", ".join(f":v{n}" for n in range(values))
    return text(statement.replace("IN :values", f"IN ({names})"))


def _reader_parameters(kind: str, values: tuple[str, ...]) -> dict[str, Any]:
    """The parameters naming the reader's grant in a statement of `_for_reader`."""
    return {"kind": kind, **{f"v{n}": value for n, value in enumerate(values)}}


def _few_patients(session: Reading, grant: tuple[str, tuple[str, ...]]) -> bool:
    """Whether the reader of `grant` was granted `_FEW_PATIENTS` patients or fewer."""
    kind, values = grant
    mine = session.execute(_for_reader(_FEW, len(values)), {
        **_reader_parameters(kind, values), "enough": _FEW_PATIENTS + 1}).scalar()
    return int(mine or 0) <= _FEW_PATIENTS


def _by_reader(key: Any, small: bool) -> Any:
    """`key` (a feed position) as a reader's changes are filtered and sorted by. For a reader
    of few patients, an expression no index serves, so that PostgreSQL can only start from the
    reader's patients and sort their few changes: bounded by the reader, whatever the record
    holds. Given the indexed position, it walked the feed's range instead, believing matches
    spread evenly or the range short: a professional whose letters were the last written
    waited for the whole index, and every pull a few seconds after the last looked up each of
    the window's ~1,800 changes (between two ANALYZEs the newest positions lie past the
    statistics)."""
    return key + 0 if small else key


def _new_window(session: Reading, principal: Principal | None, after: int) -> tuple[int, int]:
    """The end of the window a pull after `after` opens (the last position committed, at
    least `after`), and what in it can be the reader's (`_held_case`'s bits; 0: nothing —
    no patient granted to them in it, no change of a patient they were granted before nor
    of a resource granted to them). All bits when unknown (no grant, many patients)."""
    grant = access.reader_grant(principal)
    if grant is not None:
        kind, values = grant
        asked = {**_reader_parameters(kind, values), "enough": _FEW_PATIENTS + 1,
                 "few": _FEW_PATIENTS, "after": after}
        found = session.execute(_for_reader(_WINDOW, len(values)), asked).first()
        if found is not None:
            return max(int(found[0]), after), int(found[1])
    # no grant, or the feed's row not written yet (a record of the previous version)
    until = max(head(session), after)
    if grant is None or until == after:
        return until, 0 if until == after else _ANYTHING
    return until, int(session.execute(_for_reader(_HELD, len(values)),
                                      {**asked, "until": until}).scalar() or 0)


def _changed_in_steps(session: Reading, visible: list[ColumnElement[bool]], cursor: Cursor,
                      count: int, path: ColumnElement[bool] | None = None, small: bool = False
                      ) -> list[tuple[Row[Any], int]]:
    """The next `count` changes of the window after `cursor.last` that pass `visible`, read
    `_STEP` changes at a time (of the resources on `path`, when given): each step an index
    range of the feed, then a look-up of those resources by primary key. (The two in one
    statement, the step as a CTE, spared binding its positions back from Python, but
    PostgreSQL then merge-joined the step with every resource of the record: 90 ms a step at
    200,000 resources, seconds at 5,000,000.)"""
    found: list[tuple[Row[Any], int]] = []
    last = cursor.last
    change_at = _by_reader(_CHANGES.c.change_seq, small and path is not None)
    while len(found) < count:
        steps = select(_CHANGES.c.resource_pk, _CHANGES.c.change_seq).where(
            change_at > last, change_at <= cursor.until)
        if path is not None:
            steps = steps.join(_RESOURCES, _RESOURCES.c.pk == _CHANGES.c.resource_pk).where(path)
        window = session.execute(steps.order_by(change_at).limit(_STEP)).all()
        if not window:
            break
        position = {pk: seq for pk, seq in window}
        seen = session.execute(select(_RESOURCES).where(
            *visible, _RESOURCES.c.pk.in_(list(position)))).all()
        found += sorted(((row, position[row.pk]) for row in seen if row.pk is not None),
                        key=lambda pair: pair[1])[:count - len(found)]
        last = window[-1][1]
        if len(window) < _STEP:
            break
    return found
