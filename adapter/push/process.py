"""The pusher in a process of its own, started, watched and stopped by `liaison serve`.

Accepting a letter (parse, map, store) and delivering it (a record transaction, or an HTTP
push) are both CPU work under Python's lock: in one process they share one core, and every
delivery slows the hospitals waiting for their 202. In a second process, delivery gets the
machine's other core.

The process is *spawned* (a fork would copy locks held by the server's threads, see
`adapter.directory.writer_process`) and runs `Pusher` threads as `liaison worker` does. The
server wakes it when it enqueues (`worker.notify` → a byte on a pipe), restarts it if it dies,
and it exits by itself when the server is gone. Delivery runs at a lower CPU priority: in a
burst, answering hospitals goes first and the outbox, which is durable, catches up after.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection

from adapter.push import worker
from adapter.runtime import settle_after_start

logger = logging.getLogger("liaison.push")

# Niceness of the delivery process, relative to the server's (0 = same priority).
DELIVERY_NICENESS = 5
_RESTART_SECONDS = 1.0


def _run(wakes: Connection, parent: int, build: Callable[[], worker.Pusher]) -> None:
    """Child side: the pusher threads until the server closes its end of `wakes`, the server
    process is gone, or SIGTERM."""
    stopping = threading.Event()
    # The server decides when delivery stops; a SIGTERM sent to the whole group (systemd, a
    # container stop) ends the sends in progress first, as the server's `stop()` would.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    with_lower_priority()
    pusher = build()
    settle_after_start()
    pusher.start()
    try:
        while not stopping.is_set() and os.getppid() == parent:
            readable, _, _ = select.select([wakes.fileno()], [], [], 1.0)
            if readable:
                if not os.read(wakes.fileno(), 4096):  # the server closed its end
                    return
                worker.notify()
    finally:
        pusher.stop()


class _PipeWake:
    """`set()` writes a byte the pusher process waits for. Never blocks: a full pipe already
    holds a wake-up, a closed one has no reader left. (Not a multiprocessing Event: a process
    killed while holding its internal lock would block the server's next `set()` for ever.)"""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        os.set_blocking(connection.fileno(), False)

    def set(self) -> None:
        with suppress(OSError):  # BlockingIOError (full), BrokenPipeError (no reader)
            os.write(self.connection.fileno(), b"\0")


def with_lower_priority() -> None:
    with suppress(OSError):  # not allowed here: run at the same priority
        os.nice(DELIVERY_NICENESS)


class PusherProcess:
    """Server side: the child process, with `alive` and `stop()` like an in-process `Pusher`.
    `build`: makes the child's pusher (a module-level function: it is sent to a new process)."""

    def __init__(self, build: Callable[[], worker.Pusher]) -> None:
        self._build = build
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._wake: _PipeWake | None = None
        self._watcher: threading.Thread | None = None

    def _spawn(self) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_run, args=(reader, os.getpid(), self._build), name="liaison-pusher", daemon=True
        )
        process.start()
        reader.close()  # the child has its copy: EOF reaches it once the server closes `writer`
        if self._wake is not None:
            worker.wake_also(self._wake, remove=True)
            self._wake.connection.close()
        self._wake = _PipeWake(writer)
        worker.wake_also(self._wake)
        self._process = process

    def start(self) -> PusherProcess:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="liaison-pusher-watch",
                                         daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        """Restart the child if it dies while the server runs (the outbox keeps its work)."""
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            process.join(0.5)
            if process.is_alive() or self._stopping.is_set():
                continue
            logger.error("the pusher process stopped (exit code %s): restarting it",
                         process.exitcode)
            if self._stopping.wait(_RESTART_SECONDS):
                return
            self._spawn()

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout)
        if self._wake is not None:
            worker.wake_also(self._wake, remove=True)
            self._wake.connection.close()  # the child sees EOF and stops its pusher
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout)
