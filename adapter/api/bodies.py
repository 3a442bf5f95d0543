"""Request bodies read with a cap: refused with 413 as soon as they pass it, before anything
is parsed or the rest is read (a client announcing or sending too much costs no memory)."""

from __future__ import annotations

from fastapi import Request

from adapter.errors import LetterTooLarge


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, or `LetterTooLarge` (413) once it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise LetterTooLarge(f"the request is {declared} bytes, over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise LetterTooLarge(f"the request is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
