"""Writing an import's chunks in a second process while the first one reads the next chunk.

Reading, checking and turning a line into rows costs about as much as handing those rows to
the database driver, and all of it holds Python's lock: one process uses one core. A writer
process takes each chunk of rows through a pipe and writes it on its own connection while the
importer reads the next one; at most one chunk is in flight, so memory stays flat. Works for
SQLite files and PostgreSQL alike; not used where the database lives in the process's memory
(the caller then writes in-process).

The writer is *spawned*, not forked: a fork copies the locks other threads of the importer
(SQLite WAL checkpoints, the record's audit writer, a progress bar) hold at that instant, and
the child then hangs for ever on the first of them (seen in the test suite: in sqlite3.connect).
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection as Pipe
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Engine


class ChunkWriter(Protocol):
    def write(self, connection: Connection, chunk: Any) -> Any: ...

    def result(self) -> Any: ...


class WriterFailed(RuntimeError):
    """The writer process stopped on an error (its message) or died."""


def _serve(
    pipe: Pipe,
    database_url: str,
    make_writer: Callable[[], ChunkWriter],
    settings: Any,
) -> None:
    from adapter.store.db import engine_for

    gc.disable()  # same reason as the importer: many short-lived rows, no cycles
    engine = engine_for(database_url)
    try:
        writer = make_writer()
        with engine.connect() as connection, settings(connection):
            while True:
                message = pipe.recv()
                if message is None:
                    pipe.send(("done", writer.result()))
                    break
                pipe.send(("written", writer.write(connection, message)))
    except (EOFError, BrokenPipeError):
        pass  # the importer stopped (interrupted): the chunks written so far stay
    except BaseException as error:  # reported to the importer, which raises it
        with suppress(OSError):
            pipe.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        engine.dispose()


class WriterProcess:
    """Parent side: `submit(chunk)` returns the previous chunk's outcome (None for the first)
    once it is written, so the caller reads the next chunk meanwhile; `finish()` returns the
    last outcome and the writer's `result()`."""

    def __init__(
        self,
        engine: Engine,
        make_writer: Callable[[], ChunkWriter],
        settings: Callable[[Connection], Any],
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        database_url = engine.url.render_as_string(hide_password=False)
        self._process = context.Process(
            target=_serve, args=(child, database_url, make_writer, settings), daemon=True
        )
        self._process.start()
        child.close()
        self._pending = False

    def _receive(self) -> tuple[str, Any]:
        try:
            kind, value = self._pipe.recv()
        except EOFError:
            raise WriterFailed("the directory writer process died") from None
        if kind == "error":
            raise WriterFailed(f"writing the directory failed: {value}")
        return kind, value

    def submit(self, chunk: Any) -> Any:
        outcome = self._receive()[1] if self._pending else None
        self._pipe.send(chunk)
        self._pending = True
        return outcome

    def finish(self) -> tuple[Any, Any]:
        outcome = self._receive()[1] if self._pending else None
        self._pending = False
        self._pipe.send(None)
        return outcome, self._receive()[1]

    def close(self) -> None:
        """Stop the writer (after the chunk it is writing, if any) and wait for it."""
        self._pipe.close()
        self._process.join()
