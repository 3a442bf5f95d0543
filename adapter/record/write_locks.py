"""The advisory locks a write transaction of the record takes (PostgreSQL), and running it
under them. SQLite has one writer at a time: nothing is locked there.

A transaction locks the keys two concurrent transactions could race on
(`transaction.lock_keys`), all at its start in one sorted pass, so that no two wait on each
other in a cycle. A conditional create that already matches its resource writes nothing and is
left unlocked: every letter of a hospital names the hospital, its authors and practitioners,
and locking them made its letters wait for each other, one pusher or several. Should what such
a create matched be gone when the plan looks, the plan stops (`transaction.UnlockedCreate`) and
the caller plans again with every key locked, so two creators never make two of one resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapter.record.search import TokenKey
from adapter.record.transaction import Entry, lock_keys, matched_creates
from adapter.store import locking
from adapter.store.engine import reading

T = TypeVar("T")
Work = Callable[[Session, frozenset[TokenKey]], T]


def locked_write(engine: Engine, entries: list[Entry], work: Work[T],
                 matched: frozenset[TokenKey] | None = None) -> T:
    """`work(session, unlocked)` in one write transaction holding the locks of `entries`;
    `unlocked`: the conditional creates it did not lock (see the module doc). `matched`: those
    found to match a moment ago (`within_lock_budget`), else looked up first thing; none
    (`frozenset()`): every key locked. Rolled back on `UnlockedCreate`, which the caller
    answers by planning its entries again with every key locked: from the bundles as
    received, if the plan had rewritten any of them."""
    with locking.write_session(engine) as session:
        unlocked: frozenset[TokenKey] = frozenset()
        if not locking.is_sqlite(engine):
            unlocked = matched_creates(session, entries) if matched is None else matched
            locking.lock_keys(session, lock_keys(entries, unlocked))
        return work(session, unlocked)


def within_lock_budget(engine: Engine, group: list[T], entries_of: Callable[[T], list[Entry]]
                       ) -> tuple[list[list[T]], frozenset[TokenKey] | None]:
    """`group` cut into consecutive runs whose keys stay within `locking.MAX_KEYS`, and the
    conditional creates found to match (for `locked_write`): a transaction with more locks
    whole slots, and two of them (two pushers' groups of letters) nearly always shared one and
    ran one after the other. One run on SQLite."""
    if locking.is_sqlite(engine) or len(group) < 2:
        return [group], None
    with Session(reading(engine)) as session:
        matched = matched_creates(session, [e for item in group for e in entries_of(item)])
    runs: list[list[T]] = []
    keys: set[str] = set()
    for item in group:
        own = set(lock_keys(entries_of(item), matched))
        if not runs or len(keys | own) > locking.MAX_KEYS:
            runs.append([])
            keys = set()
        runs[-1].append(item)
        keys |= own
    return runs, matched
