"""`python -m benchmarks.plans [SIZE]`: the query plans of the record's hot reads, as Markdown
(kept in docs/query-plans.md), on SQLite and PostgreSQL.

A record of SIZE resources (default 100,000) is grown as `benchmarks/growth.py` grows it, a
professional gets 50 letters, and the statements of each hot read are caught as they run and
explained there: SQLite's `EXPLAIN QUERY PLAN`; PostgreSQL's `EXPLAIN (ANALYZE, COSTS OFF,
TIMING OFF)`, the plan it chose and the rows each step read. What to look for: no `SCAN` of a
record table (SQLite), no `Seq Scan` of `record_resource` or its index tables (PostgreSQL).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from benchmarks.databases import KINDS, database
from benchmarks.growth import _grow
from tests.support.statements import caught

READER = "800000000050"


def _reads(repository: Any, others_from: int) -> list[tuple[str, Callable[[], Any]]]:
    from sqlmodel import Session

    from adapter.auth.principal import DEFAULT_SCOPES, Principal
    from adapter.record import feed
    from benchmarks.record_search import INS

    member = Principal(kind="professional", idnat=READER, scopes=DEFAULT_SCOPES["professional"])
    with Session(repository.engine) as session:
        head = feed.head(session)

    def page(after: int) -> Callable[[], Any]:
        def read() -> None:
            with Session(repository.engine) as session:
                feed.read_page(session, member, feed.Cursor(after=after), (), 500)
        return read

    return [
        ("CarePlan?patient.identifier= as the system",
         lambda: repository.search("CarePlan", [("patient.identifier", f"{INS}|{7:015d}")],
                                   None)),
        ("CarePlan?patient.identifier= as a care-team member (access-filtered)",
         lambda: repository.search("CarePlan", [("patient.identifier", f"{INS}|{7:015d}")],
                                   member)),
        ("a professional's first pull (the whole history, along their paths)", page(0)),
        ("an incremental pull (the last 200 positions, along the feed)", page(head - 200)),
        ("a pull after others' letters (nothing of theirs in the window)", page(others_from)),
        ("a pull with nothing new", page(head)),
    ]


def _explain(repository: Any, statement: str, parameters: Any) -> list[str]:
    with repository.engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()
        if repository.engine.dialect.name == "sqlite":
            rows = cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters or ())
            return [row[-1] for row in rows]
        rows = cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {statement}",
                              parameters)
        return [row[0] for row in rows if not row[0].startswith(("Planning", "Execution"))]


def _plans(kind: str, size: int) -> list[str]:
    from sqlmodel import Session

    from adapter.record import feed
    from adapter.record.repository import Repository
    from adapter.store.db import get_engine
    from tests.record.bundles import letter_bundle

    lines = [f"## {kind}, {size:,} resources", ""]
    with database(kind):
        repository = Repository(get_engine())
        _grow(repository, 0, size)
        for n in range(50):
            repository.transaction(letter_bundle(ins=f"8{n:014d}", set_id=f"plans-{n}",
                                                 team=(READER,), recipients=(READER,)))
        with Session(repository.engine) as session:
            others_from = feed.head(session)
        for n in range(20):  # letters for others' patients: ~600 positions
            repository.transaction(letter_bundle(ins=f"7{n:014d}", set_id=f"others-{n}"))
        for title, read in _reads(repository, others_from):
            with caught(repository.engine) as ran:
                read()
            lines += [f"### {title}", ""]
            for statement, parameters in ran:
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                plan = _explain(repository, statement, parameters)
                lines += ["```", " ".join(statement.split())[:400], "", *plan, "```", ""]
    return lines


def main(argv: list[str]) -> int:
    size = int(argv[0]) if argv else 100_000
    for kind in KINDS:
        print("\n".join(_plans(kind, size)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
