"""The SQL statements an engine runs during a block, caught as they are sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine

_Seen = TypeVar("_Seen")


@contextmanager
def _recorded(engine: Engine, seen: Callable[[str, Any, bool], _Seen]) -> Iterator[list[_Seen]]:
    """`seen(statement, parameters, executemany)` of each statement `engine` runs in the block."""
    ran: list[_Seen] = []

    def catch(_connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
              executemany: bool) -> None:
        ran.append(seen(statement, parameters, executemany))

    event.listen(engine, "before_cursor_execute", catch)
    try:
        yield ran
    finally:
        event.remove(engine, "before_cursor_execute", catch)


def caught(engine: Engine) -> AbstractContextManager[list[tuple[str, Any]]]:
    """(statement, parameters) of each statement `engine` runs in the block (an executemany:
    its first parameters)."""
    return _recorded(engine, lambda statement, parameters, many: (
        statement, parameters[0] if many and parameters else parameters))


def executions(engine: Engine) -> AbstractContextManager[list[tuple[str, int]]]:
    """(statement, times it is executed) of each statement `engine` runs in the block: an
    executemany once per parameter set (psycopg sends each as a message of its own, which the
    server executes alone). COPY, sent on the driver's cursor, is not seen."""
    return _recorded(engine, lambda statement, parameters, many: (
        statement, len(parameters) if many else 1))
