"""End to end through `liaison serve`'s app: a hospital posts the LDL-SES example, the pusher
writes it to the embedded record, and a subscribed community endpoint is notified.

Needs the two integration calls (see adapter/coordination/__init__.py): ingestion calling
`adapter.coordination.coordinate` and the pusher calling `subscriptions.after_push`.
"""

from __future__ import annotations

import threading
import time

import httpx
from fastapi import FastAPI, Request, Response

from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import get_settings
from adapter.directory.importer import import_path
from adapter.store.db import get_engine
from tests.support.paths import FIXTURES, LDL_SES_EXAMPLE
from tests.support.servers import free_port, serve_app


def test_posted_letter_reaches_a_subscribed_endpoint_with_the_coordinator(
    fast_retries: None,
) -> None:
    received: list[bytes] = []
    arrived = threading.Event()
    community = FastAPI()

    @community.api_route("/{path:path}", methods=["POST", "PUT"])
    async def hook(path: str, request: Request) -> Response:
        received.append(await request.body())
        arrived.set()
        return Response(status_code=200)

    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")
    port = free_port()
    subscription = {
        "resourceType": "Subscription",
        "criteria": "CarePlan?patient.identifier=urn:oid:1.2.250.1.213.1.4.10|279035121518989",
        "channel": {
            "type": "rest-hook",
            "endpoint": f"http://127.0.0.1:{port}/hook",
            "payload": "application/fhir+json",
        },
    }
    hospital = {"Authorization": f"Bearer {issue_token('hospital', organization='1750803447')}"}
    with serve_app(create_app(get_settings())) as base, serve_app(community, port=port):
        system = {"Authorization": f"Bearer {issue_token('system')}"}
        created = httpx.post(
            f"{base}/fhir/Subscription", json=subscription, headers=system
        )
        assert created.status_code == 201, created.text
        answer = httpx.post(
            f"{base}/discharge-letters",
            content=LDL_SES_EXAMPLE.read_bytes(),
            headers={**hospital, "Content-Type": "application/hl7-cda+xml"},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        assert arrived.wait(5.0), "the subscriber was not notified within 5 s"
        assert b'"resourceType":"CarePlan"' in received[0]
        coordinator = {
            "Authorization": f"Bearer {issue_token('coordinator', cpts='CPTS-PARIS-CENTRE')}"
        }
        deadline = time.monotonic() + 10
        html = ""
        while time.monotonic() < deadline and "PAT-TROIS" not in html:
            html = httpx.get(f"{base}/coordination/page", headers=coordinator).text
            time.sleep(0.05)
        assert "PAT-TROIS" in html
