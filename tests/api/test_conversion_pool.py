"""Letters prepared in spawned conversion processes (what `liaison serve` does by default) give
exactly what preparing them in the server process gives, refusals included, and the pool
survives the death of one of its processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest

from adapter.errors import NotXml, RefusedLetter
from adapter.ingest.preparation import ConversionPool, PreparedLetter, prepare_here
from adapter.store.db import get_engine
from tests.support.letter_variants import letter_variant
from tests.support.paths import N1_PDF_EXAMPLE


def _same(a: PreparedLetter, b: PreparedLetter) -> bool:
    """Equal but for when the discharge event (SOR) was emitted: its `authoredOn` and its
    emission-date extension are the time of preparation."""

    def stable(letter: PreparedLetter) -> PreparedLetter:
        bundle = orjson.loads(letter.payload)
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "CommunicationRequest":
                resource.pop("authoredOn", None)
                for extension in resource.get("extension", []):
                    extension.pop("valueDateTime", None)
        return replace(letter, payload=orjson.dumps(bundle))

    return stable(a) == stable(b)


@pytest.fixture
def pool() -> Iterator[ConversionPool]:
    engine = get_engine()  # the schema exists before the pool processes open the database
    converters = ConversionPool(str(engine.url), processes=1).start()
    try:
        yield converters
    finally:
        converters.stop()


def test_a_letter_prepared_in_a_pool_process_is_what_the_server_process_prepares(
    pool: ConversionPool,
) -> None:
    engine = get_engine()
    for n in (1, 2):
        letter = letter_variant(n)
        assert _same(pool.prepare(letter, engine), prepare_here(letter, engine))
    assert os.getpid() not in pool.pids


def test_a_refused_letter_is_refused_through_the_pool_with_its_reason(
    pool: ConversionPool,
) -> None:
    engine = get_engine()
    with pytest.raises(NotXml):
        pool.prepare(b"not a letter <", engine)
    lab_report = N1_PDF_EXAMPLE.read_bytes()  # LOINC 11502-2: not a discharge letter
    with pytest.raises(RefusedLetter) as through_pool:
        pool.prepare(lab_report, engine)
    with pytest.raises(RefusedLetter) as here:
        prepare_here(lab_report, engine)
    assert type(through_pool.value) is type(here.value)
    assert through_pool.value.message == here.value.message


def test_a_killed_pool_process_is_replaced_and_no_letter_is_refused_for_it(
    pool: ConversionPool,
) -> None:
    engine = get_engine()
    (first,) = pool.pids
    os.kill(first, signal.SIGKILL)
    expected = prepare_here(letter_variant(3), engine)
    # the letter that meets the dead process is prepared all the same
    assert _same(pool.prepare(letter_variant(3), engine), expected)
    assert _same(pool.prepare(letter_variant(4), engine), prepare_here(letter_variant(4), engine))
    assert pool.pids and first not in pool.pids
