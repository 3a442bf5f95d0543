"""How many reads of the record a server process works on at once, and how many wait.

Reads (searches, pulls) and hospitals' letters share a process's request threads and its CPU.
Unbounded, a thousand pulling professionals took every thread and a letter's 202 waited
minutes behind them. Reads are let in a few at a time (enough to overlap a database's round
trips, not so many that they share the CPU with a letter twenty ways); the others wait in
order without holding a thread, and past `waiting` a read is answered 503 with Retry-After
at once, so software pulling every few minutes backs off instead of piling up. Writes are
never held here: a letter accepted is never kept waiting by readers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Busy(Exception):
    """Too many reads are waiting: come back in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the record is busy with other reads: retry in {retry_after} s")
        self.retry_after = retry_after


class ReadAdmission:
    def __init__(self, concurrent: int, waiting: int, retry_after: int = 2) -> None:
        self._slots = asyncio.Semaphore(max(1, concurrent))
        self._waiting = 0
        self._max_waiting = max(0, waiting)
        self._retry_after = retry_after

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self._waiting >= self._max_waiting:
            raise Busy(self._retry_after)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
