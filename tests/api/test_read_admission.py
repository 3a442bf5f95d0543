"""Readers never hold hospitals' letters up: reads of the record are let in a few at a time,
the others wait without a thread, and past the queue a read is answered 503 with Retry-After
while a letter is still accepted at once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from adapter.api.app import create_app
from adapter.api.read_admission import Busy, ReadAdmission
from adapter.auth import issue_token
from adapter.config import Settings
from adapter.record import audit
from tests.api.conftest import FAST_PUSH, bearer
from tests.support.letter_variants import letter_variant
from tests.support.servers import serve_app


def test_reads_past_the_slots_wait_in_order_and_past_the_queue_are_refused() -> None:
    async def scenario() -> list[str]:
        admission = ReadAdmission(concurrent=1, waiting=1, retry_after=3)
        said: list[str] = []
        release = asyncio.Event()

        async def read(name: str) -> None:
            try:
                async with admission.slot():
                    said.append(f"{name} in")
                    await release.wait()
            except Busy as busy:
                said.append(f"{name} refused, retry in {busy.retry_after}")

        first = asyncio.create_task(read("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(read("second"))  # waits for the slot
        await asyncio.sleep(0)
        await asyncio.wait_for(read("third"), 5)  # nobody more may wait
        release.set()
        await asyncio.gather(first, second)
        return said

    assert asyncio.run(scenario()) == ["first in", "third refused, retry in 3", "second in"]


def _reads_beside_letters(letters_in_flight: int) -> list[str]:
    """Two reads asked while `letters_in_flight` letters are being accepted by a process with
    one converter and three read slots: what happened, in order."""
    async def scenario() -> list[str]:
        admission = ReadAdmission(concurrent=3, waiting=10, letters_at_once=1)
        said: list[str] = []
        letters_done, first_done = asyncio.Event(), asyncio.Event()

        async def letter() -> None:
            async with admission.letter():
                await letters_done.wait()

        async def read(name: str, done: asyncio.Event) -> None:
            async with admission.slot():
                said.append(f"{name} in")
                await done.wait()

        letters = [asyncio.create_task(letter()) for _ in range(letters_in_flight)]
        await asyncio.sleep(0)
        first = asyncio.create_task(read("first", first_done))
        second = asyncio.create_task(read("second", letters_done))
        for _ in range(3):
            await asyncio.sleep(0)
        said.append("letters accepted")
        letters_done.set()
        await asyncio.gather(*letters)
        for _ in range(3):
            await asyncio.sleep(0)
        first_done.set()
        await asyncio.gather(first, second)
        return said

    return asyncio.run(scenario())


def test_while_letters_back_up_for_a_converter_reads_are_let_in_one_at_a_time() -> None:
    # three letters waiting for the converter: the second read waits for the letters, not
    # for the first read (three slots otherwise)
    assert _reads_beside_letters(4) == ["first in", "letters accepted", "second in"]


def test_a_letter_or_two_waiting_for_a_converter_leave_the_reads_their_slots() -> None:
    assert _reads_beside_letters(3) == ["first in", "second in", "letters accepted"]


def test_a_letter_is_accepted_while_reads_are_held_and_a_read_past_the_queue_is_told_to_retry(
        hospital: dict[str, str]) -> None:
    app = create_app(Settings(**{**FAST_PUSH, "read_concurrency": 1, "read_queue": 0}))
    repository = app.state.record_repository
    entered, release = threading.Event(), threading.Event()
    search = repository.search

    def held_search(*args: Any, **kwargs: Any) -> Any:  # a slow read, held until released
        entered.set()
        assert release.wait(30)
        return search(*args, **kwargs)

    repository.search = held_search
    system = bearer(issue_token("system"))
    with serve_app(app) as root, httpx.Client(base_url=root, timeout=30) as client:
        held = threading.Thread(target=lambda: client.get("/fhir/CarePlan", headers=system))
        held.start()
        try:
            assert entered.wait(30)
            refused = client.get("/fhir/Patient", headers=system, timeout=5)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
            assert refused.json()["issue"][0]["code"] == "throttled"
            letter = client.post("/discharge-letters", content=letter_variant(901),
                                 headers={**hospital, "Content-Type": "application/hl7-cda+xml"})
            assert letter.status_code == 202, letter.text
        finally:
            release.set()
            held.join(30)
        assert client.get("/fhir/Patient", headers=system).status_code == 200
    # the refused read: turned away, not audited
    outcomes = [found.outcome for found in audit.trail(repository.engine)]
    assert 503 not in outcomes and outcomes.count(200) == 2

