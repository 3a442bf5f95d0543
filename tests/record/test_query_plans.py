"""A letter's transaction must cost the same in a record of a thousand patients and of
millions: each of its statements finds its rows through an index on what it picks them by.
Read in SQLite's plans (`EXPLAIN QUERY PLAN`), for every statement the transaction runs: no
table scanned whole, and no grant table searched by its kind alone (every grant of a kind is
half the record)."""

from __future__ import annotations

import re

from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.record.bundles import PCP, letter_bundle
from tests.support.statements import caught

OTHER = "801111111111"

# A plan line that reads more than the statement's own rows.
_WHOLE = re.compile(r"\bSCAN (record_\w+)|USING (?:COVERING )?INDEX \w*grant\w* \(kind=\?\)")


def test_no_statement_of_a_letter_reads_the_whole_of_a_table() -> None:
    repository = Repository(get_engine())
    assert repository.engine.dialect.name == "sqlite"
    repository.transaction(letter_bundle(ins="279035121518989", set_id="before"))
    # a new patient's letter, then its corrected version naming one more carer
    with caught(repository.engine) as ran:
        repository.transaction(letter_bundle(ins="180126955500123", set_id="plans"))
        repository.transaction(letter_bundle(ins="180126955500123", set_id="plans", version=2,
                                             team=(PCP, OTHER), recipients=(PCP, OTHER)))
    read = [(statement, parameters) for statement, parameters in ran
            if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))]
    assert len(read) > 10
    whole = []
    with repository.engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for statement, parameters in read:
            plan = " | ".join(row[-1] for row in cursor.execute(
                f"EXPLAIN QUERY PLAN {statement}", parameters or ()))
            if _WHOLE.search(plan):
                whole.append(f"{plan}  ←  {' '.join(statement.split())[:160]}")
    assert whole == []
