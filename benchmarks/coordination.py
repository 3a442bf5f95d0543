"""Coordination step costs: enriching a converted letter (consent, coordinator, care-team merge
with the record, SOR event), matching Subscriptions, rendering the coordinator's page.

Runs in the data dir `python -m benchmarks` gives it (a throwaway SQLite database)."""

from __future__ import annotations

import time
from typing import Any

from adapter.auth.principal import DEFAULT_SCOPES, Principal
from adapter.coordination import page, subscriptions
from adapter.coordination.coordinators import CsvCoordinators
from adapter.coordination.enrichment import enrich
from adapter.coordination.rules import load_rules
from adapter.mapping import convert_letter
from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.coordination.letters import synthetic_conversion
from tests.support.paths import FIXTURES, LDL_SES_EXAMPLE

TEST_INS = "urn:oid:1.2.250.1.213.1.4.10"


def _per_second(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "n/a"


def _accept_path(engine: Any, letters: int) -> list[tuple[str, str, str]]:
    """`coordinate` as ingestion calls it (in place, the imported directory, the embedded
    record), CPU per letter: patients new to the record, then patients with an earlier stay."""
    from adapter.coordination import coordinate
    from adapter.directory.importer import import_path
    from tests.support.letter_variants import letter_variant

    import_path(engine, FIXTURES / "coordination" / "local_directory.csv")
    repository = Repository(engine)
    earlier = 10
    for n in range(earlier):  # earlier stays, in the record
        repository.transaction(coordinate(convert_letter(letter_variant(n)), engine).bundle)
    rows = []
    for label, patient_of in (("patient new to the record", lambda n: None),
                              ("patient with an earlier stay", lambda n: n % earlier)):
        spent = 0.0
        for n in range(letters):
            conversion = convert_letter(letter_variant(10_000 + n, patient=patient_of(n)))
            started = time.process_time()
            coordinate(conversion, engine, in_place=True)
            spent += time.process_time() - started
        rows.append((f"coordination on the accept path, {label}", "ms CPU/letter",
                     f"{spent / letters * 1000:.2f}"))
    return rows


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    letters = 20 if quick else 200
    engine = get_engine()
    rules = load_rules()
    directory = CsvCoordinators(FIXTURES / "coordination" / "local_directory.csv", rules)
    repository = Repository(engine)
    example = convert_letter(LDL_SES_EXAMPLE.read_bytes())
    rows: list[tuple[str, str, str]] = []
    rows += _accept_path(engine, letters)

    started = time.perf_counter()
    for _ in range(letters):
        enrich(example, directory, None, rules=rules, engine=engine)
    rows.append(
        (
            "coordination enrich, LDL-SES example, no record",
            "letters/s",
            _per_second(letters, time.perf_counter() - started),
        )
    )

    # patients with an earlier stay in the record: the merge reads their care team
    patients = [f"2790351215{n:05d}" for n in range(letters)]
    for n, ins in enumerate(patients):
        first = synthetic_conversion(ins=ins, set_id=f"1.2.250.1.999.{n}")
        repository.transaction(enrich(first, directory, repository).bundle)
    started = time.perf_counter()
    bundles = []
    for n, ins in enumerate(patients):
        second = synthetic_conversion(ins=ins, set_id=f"1.2.250.1.888.{n}", hospital="1690000001")
        bundles.append(enrich(second, directory, repository, rules=rules, engine=engine).bundle)
    rows.append(
        (
            "coordination enrich with care-team merge from the record",
            "letters/s",
            _per_second(letters, time.perf_counter() - started),
        )
    )

    from sqlmodel import Session

    with Session(engine) as session:
        for n in range(50):
            subscriptions.create(
                session,
                {
                    "resourceType": "Subscription",
                    "criteria": f"CarePlan?patient.identifier={TEST_INS}|{patients[n % letters]}",
                    "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/"},
                },
                None,
                rules,
            )
        session.commit()
        started = time.perf_counter()
        for bundle in bundles:
            locations = [f"X/{n}" for n in range(len(bundle["entry"]))]
            subscriptions.after_push(session, bundle, locations, rules)
        session.rollback()
    rows.append(
        (
            "subscription matching, 50 subscriptions",
            "bundles/s",
            _per_second(len(bundles), time.perf_counter() - started),
        )
    )

    coordinator = Principal(
        kind="coordinator", cpts="CPTS-PARIS-CENTRE", scopes=DEFAULT_SCOPES["coordinator"]
    )
    started = time.perf_counter()
    found = page.discharges(repository, coordinator, rules)
    html = page.render(found, coordinator)
    rows.append(
        (
            f"coordinator page, {len(found)} discharges",
            "ms",
            f"{(time.perf_counter() - started) * 1000:,.0f}",
        )
    )
    assert "Sorties" in html
    return rows
