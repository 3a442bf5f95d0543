"""The INS matricule (NIR or NIA): 13 characters and a 2-digit control key, 97 - (number mod 97).

Corsican départements write 2A / 2B in positions 6-7; the key is computed with 19 / 18 there,
as the NIR rules say.
"""

from __future__ import annotations

import re

_SHAPE = re.compile(r"^[1-8]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}$")


def ins_problem(value: str) -> str | None:
    """None when `value` is a well-formed INS matricule, else why not (one sentence)."""
    if not _SHAPE.match(value):
        return (f"{value!r} is not an INS matricule: 15 characters expected, 13 digits "
                "(2A/2B for Corsica) and a 2-digit key")
    body = value[:13].replace("2A", "19", 1) if value[5:7] == "2A" else value[:13]
    body = body.replace("2B", "18", 1) if value[5:7] == "2B" else body
    if 97 - int(body) % 97 != int(value[13:]):
        return f"{value!r} is not an INS matricule: its control key does not match"
    return None
