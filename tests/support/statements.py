"""The SQL statements an engine runs during a block, caught as they are sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def _listening(engine: Engine, catch: Callable[..., None]) -> Iterator[None]:
    event.listen(engine, "before_cursor_execute", catch)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", catch)


@contextmanager
def caught(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """(statement, parameters) of each statement `engine` runs in the block (an executemany:
    its first parameters)."""
    ran: list[tuple[str, Any]] = []

    def catch(_connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
              executemany: bool) -> None:
        ran.append((statement, parameters[0] if executemany and parameters else parameters))

    with _listening(engine, catch):
        yield ran


@contextmanager
def executions(engine: Engine) -> Iterator[list[tuple[str, int]]]:
    """(statement, times it is executed) of each statement `engine` runs in the block: an
    executemany once per parameter set (psycopg sends each as a message of its own, which the
    server executes alone). COPY, sent on the driver's cursor, is not seen."""
    ran: list[tuple[str, int]] = []

    def catch(_connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
              executemany: bool) -> None:
        ran.append((statement, len(parameters) if executemany else 1))

    with _listening(engine, catch):
        yield ran
