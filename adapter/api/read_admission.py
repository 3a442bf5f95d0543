"""How many reads of the record a server process works on at once, and how many wait.

Reads (searches, pulls) and hospitals' letters share a process's request threads and its CPU.
Unbounded, a thousand pulling professionals took every thread and a letter's 202 waited
minutes behind them. Reads are let in a few at a time (enough to overlap a database's round
trips, not so many that they share the CPU with a letter twenty ways); the others wait in
order without holding a thread, and past `waiting` a read is answered 503 with Retry-After
at once, so software pulling every few minutes backs off instead of piling up. Writes are
never held here.

Letters go first: while letters back up for the conversion processes (more than
`_BACKLOG` waiting beyond the `letters_at_once` being converted), reads are let in one at a
time. With the reads' share of the CPU, the database's and the converters' waits grew until a
letter's 202 took seconds (PostgreSQL, 1,000 readers and 20 letters/s); the reads take back
their slots as soon as the backlog is gone. One or two letters waiting is only letters arriving
together: narrowing the reads for them made reads queue (p95 0.6–5 s on SQLite) and did not
make the letters faster (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from adapter.config import get_settings

_BACKLOG = 2  # letters waiting for a converter beyond which reads go one at a time


class Busy(Exception):
    """Too many reads are waiting: come back in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the record is busy with other reads: retry in {retry_after} s")
        self.retry_after = retry_after


class ReadAdmission:
    """Used from one event loop (the server's): no lock."""

    def __init__(self, concurrent: int, waiting: int, retry_after: int = 2,
                 letters_at_once: int = 1) -> None:
        self._concurrent = max(1, concurrent)
        self._max_waiting = max(0, waiting)
        self._retry_after = retry_after
        self._letters_at_once = max(1, letters_at_once)
        self._running = 0
        self._letters = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def _limit(self) -> int:
        return 1 if self._letters > self._letters_at_once + _BACKLOG else self._concurrent

    def _admit(self) -> None:
        """Let the waiting reads in, in order, while there is room."""
        while self._waiting and self._running < self._limit():
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                self._running += 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._running < self._limit() and not self._waiting:
            self._running += 1
        else:
            if len(self._waiting) >= self._max_waiting:
                raise Busy(self._retry_after)
            turn = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.cancelled():  # still waiting: leave the queue
                    with contextlib.suppress(ValueError):
                        self._waiting.remove(turn)
                else:  # let in just as it was cancelled: give the slot back
                    self._running -= 1
                    self._admit()
                raise
        try:
            yield
        finally:
            self._running -= 1
            self._admit()

    @asynccontextmanager
    async def letter(self) -> AsyncIterator[None]:
        """A letter is being accepted for the time of the block."""
        self._letters += 1
        try:
            yield
        finally:
            self._letters -= 1
            self._admit()


def admission_of(app: Any) -> ReadAdmission:
    """The app's read admission, made on first use (in the server's event loop)."""
    admission: ReadAdmission | None = getattr(app.state, "read_admission", None)
    if admission is None:
        settings = getattr(app.state, "settings", None) or get_settings()
        admission = ReadAdmission(settings.read_concurrency, settings.read_queue,
                                  letters_at_once=settings.resolved_convert_processes)
        app.state.read_admission = admission
    return admission
