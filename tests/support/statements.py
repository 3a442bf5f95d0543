"""The SQL statements an engine runs during a block, caught as they are sent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def caught(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """(statement, parameters) of each statement `engine` runs in the block (an executemany:
    its first parameters)."""
    ran: list[tuple[str, Any]] = []

    def catch(_connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
              executemany: bool) -> None:
        ran.append((statement, parameters[0] if executemany and parameters else parameters))

    event.listen(engine, "before_cursor_execute", catch)
    try:
        yield ran
    finally:
        event.remove(engine, "before_cursor_execute", catch)
