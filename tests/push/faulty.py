"""A tiny real HTTP server standing in front of a real FHIR server, to produce the faults a
healthy server will not: it answers the next scripted statuses (503 with Retry-After, 422 …)
and forwards every other request to the real server. It records what arrived, and when."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import serve_app


@dataclass
class Arrival:
    at: float
    documents: list[str]  # DocumentReference identifiers in the bundle (which letter it was)
    answered: int


@dataclass
class FaultyTarget:
    backend: str | None  # FHIR base URL requests are forwarded to; None: answer 201s itself
    script: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    reject_all: tuple[int, dict[str, Any]] | None = None  # answer every request with this
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def then(
        self, status: int, outcome_text: str, headers: dict[str, str] | None = None
    ) -> FaultyTarget:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": outcome_text}],
        }
        self.script.append((status, headers or {}, outcome))
        return self

    def documents_in_arrival_order(self) -> list[str]:
        return [
            doc for arrival in self.arrivals if arrival.answered < 300 for doc in arrival.documents
        ]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        bundle = orjson.loads(body) if body else {}
        documents = [
            identifier["value"]
            for entry in bundle.get("entry", [])
            if entry.get("resource", {}).get("resourceType") == "DocumentReference"
            for identifier in entry["resource"].get("identifier", [])
        ]
        with self.lock:
            scripted = self.script.pop(0) if self.script else None
        if scripted is None and self.reject_all is not None:
            status, outcome = self.reject_all
            scripted = (status, {}, outcome)
        if scripted is not None:
            status, headers, outcome = scripted
            self.arrivals.append(Arrival(time.monotonic(), documents, status))
            return Response(
                orjson.dumps(outcome), status, headers, media_type="application/fhir+json"
            )
        if self.backend is None:
            created = {"response": {"status": "201 Created"}}
            response = {
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [created for _ in bundle.get("entry", [])],
            }
            self.arrivals.append(Arrival(time.monotonic(), documents, 200))
            return Response(orjson.dumps(response), 200, media_type="application/fhir+json")
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(
                self.backend, content=body, headers={"Content-Type": "application/fhir+json"}
            )
        self.arrivals.append(Arrival(time.monotonic(), documents, answer.status_code))
        return Response(answer.content, answer.status_code, media_type="application/fhir+json")


@contextmanager
def faulty_target(backend: str | None) -> Iterator[FaultyTarget]:
    target = FaultyTarget(backend)
    app = Starlette(routes=[Route("/fhir", target.handle, methods=["POST"])])
    with serve_app(app) as base:
        target.base_url = f"{base}/fhir"
        yield target
