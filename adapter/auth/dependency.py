"""The FastAPI dependency that turns the `Authorization: Bearer` header into a Principal."""

from __future__ import annotations

from fastapi import Request

from adapter.auth.principal import SYSTEM, Principal
from adapter.auth.tokens import verify_token
from adapter.config import get_settings
from adapter.errors import Unauthorized


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def current_principal(request: Request) -> Principal:
    """The caller; 401 without a valid token when `auth_required` (else the local system)."""
    token = bearer_token(request)
    if token is None:
        if get_settings().auth_required:
            raise Unauthorized("a bearer token is required")
        return SYSTEM
    return verify_token(token)
