"""Liveness (`/healthz`: the process answers, always open) and readiness (`/readyz`: the
database answers and the pusher (its threads or its process), when configured, is running;
system tokens only with `LIAISON_OPS_AUTH`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from adapter.auth.dependency import current_principal
from adapter.errors import Forbidden

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def require_operator(request: Request) -> None:
    """With `LIAISON_OPS_AUTH`, operations endpoints answer system tokens only (they tell how
    busy liaison is and what it runs)."""
    if request.app.state.settings.ops_auth:
        principal = current_principal(request)  # 401 without a valid token
        if principal.kind != "system":
            raise Forbidden("operations endpoints are for system tokens (LIAISON_OPS_AUTH)")


@router.get("/readyz", summary="Ready to accept letters",
            dependencies=[Depends(require_operator)])
def readyz(request: Request) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as error:
        checks["database"] = f"unavailable ({type(error).__name__})"
    pusher = getattr(request.app.state, "pusher", None)
    if pusher is not None:
        checks["pusher"] = "ok" if pusher.alive else "stopped"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
