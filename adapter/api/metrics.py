"""`/metrics`: the Prometheus metrics of `adapter.metrics`, the outbox gauge read at each scrape."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapter.api.health import require_operator
from adapter.metrics import OUTBOX_ENTRIES
from adapter.store import outbox

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=True, summary="Prometheus metrics",
            dependencies=[Depends(require_operator)])
def metrics(request: Request) -> Response:
    for status, number in outbox.counts(request.app.state.engine).items():
        OUTBOX_ENTRIES.labels(status=status).set(number)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
