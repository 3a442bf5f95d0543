"""FHIR R4 rest-hook Subscriptions: criteria, matching, and delivery through the outbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request, Response
from sqlmodel import Session

from adapter.coordination import subscriptions
from adapter.coordination.coordinators import CsvCoordinators
from adapter.coordination.enrichment import enrich
from adapter.errors import BadRequest
from adapter.ingest.delivery import delivery_pusher
from adapter.push.worker import Pusher
from adapter.store import outbox
from adapter.store.db import get_engine
from tests.coordination.letters import INS, synthetic_conversion
from tests.support.paths import FIXTURES
from tests.support.servers import free_port, serve_app

DIRECTORY_CSV = FIXTURES / "coordination" / "local_directory.csv"
PATIENT = f"{INS}|279035121518989"


class Subscriber:
    """A community endpoint on loopback that records the notifications it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        self.arrived = threading.Condition()
        self.app = FastAPI()

        @self.app.api_route("/{path:path}", methods=["POST", "PUT"])
        async def hook(path: str, request: Request) -> Response:
            body = await request.body()
            with self.arrived:
                self.received.append((request.method, "/" + path, body))
                self.arrived.notify_all()
            return Response(status_code=200)

    def wait_for(self, count: int, timeout: float) -> bool:
        """Bounded wait: True as soon as `count` notifications arrived."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.arrived.wait(left)
        return True


def _subscription(criteria: str, endpoint: str, payload: str | None = None) -> dict:
    channel = {"type": "rest-hook", "endpoint": endpoint}
    if payload:
        channel["payload"] = payload
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": channel,
    }


def _subscribe(criteria: str, endpoint: str, payload: str | None = None) -> str:
    with Session(get_engine()) as session:
        record = subscriptions.create(session, _subscription(criteria, endpoint, payload))
        session.commit()
        return record.id


def _locations(bundle: dict) -> list[str]:
    """What a transaction-response says: one server location per entry, in entry order."""
    return [
        f"{e['resource']['resourceType']}/{n}/_history/1" for n, e in enumerate(bundle["entry"])
    ]


def _after_push(bundle: dict, locations: list[str]) -> None:
    """What the pusher does once a bundle landed: queue its notifications."""
    with Session(get_engine()) as session:
        subscriptions.after_push(session, bundle, locations)
        session.commit()


@pytest.fixture
def pusher(fast_retries: None) -> Iterator[Pusher]:
    running = delivery_pusher(get_engine(), threads=1, poll_seconds=0.05).start()
    yield running
    running.stop()


def test_criteria_outside_the_supported_searches_are_refused() -> None:
    rules_error = "cannot be watched"
    with Session(get_engine()) as session:
        with pytest.raises(BadRequest, match=rules_error):
            subscriptions.create(session, _subscription("CarePlan?name=x", "http://127.0.0.1:1/"))
        with pytest.raises(BadRequest, match="not supported"):
            subscriptions.create(
                session, _subscription("Observation?code=1", "http://127.0.0.1:1/")
            )
        with pytest.raises(BadRequest, match="rest-hook"):
            resource = _subscription("CarePlan?status=active", "http://127.0.0.1:1/")
            resource["channel"]["type"] = "websocket"
            subscriptions.create(session, resource)
        with pytest.raises(BadRequest, match="http"):
            subscriptions.create(session, _subscription("CarePlan?status=active", "file:///etc/x"))


def test_only_resources_matching_the_criteria_are_notified() -> None:
    bundle = enrich(synthetic_conversion(), CsvCoordinators(DIRECTORY_CSV)).bundle
    _subscribe(f"CarePlan?patient.identifier={PATIENT}", "http://127.0.0.1:9/a")
    _subscribe(f"CarePlan?patient.identifier={INS}|999", "http://127.0.0.1:9/b")  # someone else
    _subscribe(
        "Communication?recipient.identifier=urn:oid:1.2.250.1.71.4.2.1|810000000017",
        "http://127.0.0.1:9/c",
    )  # the coordinator's Communications
    _subscribe("CommunicationRequest?event-type=SOR", "http://127.0.0.1:9/d")
    with Session(get_engine()) as session:
        queued = subscriptions.after_push(session, bundle, _locations(bundle))
        session.commit()
    sent = [e.payload_json() for e in outbox.entries(get_engine())]
    by_endpoint = {}
    for payload in sent:
        by_endpoint.setdefault(payload["endpoint"].rsplit("/", 1)[1], []).append(
            payload["reference"]
        )
    assert queued == 3
    assert [r.split("/")[0] for r in by_endpoint["a"]] == ["CarePlan"]
    assert "b" not in by_endpoint
    assert [r.split("/")[0] for r in by_endpoint["c"]] == ["Communication"]
    assert [r.split("/")[0] for r in by_endpoint["d"]] == ["CommunicationRequest"]


def test_restricted_letter_is_not_notified_to_subscribers_outside_its_readers() -> None:
    bundle = enrich(
        synthetic_conversion(confidentiality="V"), CsvCoordinators(DIRECTORY_CSV)
    ).bundle
    _subscribe(f"CarePlan?patient.identifier={PATIENT}", "http://127.0.0.1:9/a")
    with Session(get_engine()) as session:
        assert subscriptions.after_push(session, bundle, _locations(bundle)) == 0


def test_subscriber_is_notified_of_a_new_care_plan_and_again_after_being_down(
    pusher: Pusher,
) -> None:
    subscriber = Subscriber()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/hook"
    _subscribe(f"CarePlan?patient.identifier={PATIENT}", endpoint, payload="application/fhir+json")
    first = enrich(synthetic_conversion(set_id="1.2.250.1.999.1"), CsvCoordinators(DIRECTORY_CSV))
    with serve_app(subscriber.app, port=port):
        _after_push(first.bundle, _locations(first.bundle))
        assert subscriber.wait_for(1, timeout=5.0), "no notification within 5 s"
        method, path, body = subscriber.received[0]
        assert (method, path.rsplit("/", 2)[-2]) == ("PUT", "CarePlan")
        assert b'"resourceType":"CarePlan"' in body
    # the subscriber is down: the notification waits in the outbox and is retried
    second = enrich(synthetic_conversion(set_id="1.2.250.1.999.2"), CsvCoordinators(DIRECTORY_CSV))
    _after_push(second.bundle, _locations(second.bundle))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and outbox.counts(get_engine())["retrying"] == 0:
        time.sleep(0.05)
    assert outbox.counts(get_engine())["retrying"] == 1, (
        "the failed delivery is not waiting to retry"
    )
    with serve_app(subscriber.app, port=port):
        assert subscriber.wait_for(2, timeout=10.0), "not delivered after the subscriber came back"
    assert outbox.counts(get_engine())["delivered"] == 2


def test_a_subscriber_refusing_the_notification_parks_it_as_failed(pusher: Pusher) -> None:
    refusing = FastAPI()

    @refusing.post("/hook")
    async def hook() -> Response:
        return Response(status_code=410)

    port = free_port()
    _subscribe("CommunicationRequest?event-type=SOR", f"http://127.0.0.1:{port}/hook")
    bundle = enrich(synthetic_conversion(), CsvCoordinators(DIRECTORY_CSV)).bundle
    with serve_app(refusing, port=port):
        _after_push(bundle, _locations(bundle))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and outbox.counts(get_engine())["failed"] == 0:
            time.sleep(0.05)
    [failed] = outbox.entries(get_engine(), status="failed")
    assert failed.last_status == 410


def test_a_professional_is_notified_only_of_what_the_record_lets_them_read() -> None:
    from adapter.auth import Principal
    from adapter.push.targets import response_locations
    from adapter.record.repository import Repository

    bundle = enrich(synthetic_conversion(), CsvCoordinators(DIRECTORY_CSV)).bundle
    member = Principal(kind="professional", idnat="801984758437")  # the PCP, in the care team
    stranger = Principal(kind="professional", idnat="809999999999")  # in no care team
    with Session(get_engine()) as session:
        for owner, name in ((member, "member"), (stranger, "stranger")):
            subscriptions.create(
                session,
                _subscription("CarePlan?status=active", f"http://127.0.0.1:9/{name}",
                              payload="application/fhir+json"),
                owner,
            )
        session.commit()
    answer = Repository(get_engine()).transaction(bundle)  # the embedded record took it
    with Session(get_engine()) as session:
        subscriptions.after_push(session, bundle, response_locations(answer))
        session.commit()
    endpoints = [e.payload_json()["endpoint"] for e in outbox.entries(get_engine())
                 if e.kind == subscriptions.OUTBOX_KIND]
    assert endpoints == ["http://127.0.0.1:9/member"]  # not every patient's care plan to all


def test_hospital_and_coordinator_subscriptions_are_told_only_of_their_own_patients() -> None:
    from adapter.auth import Principal
    from adapter.push.targets import response_locations
    from adapter.record.repository import Repository
    from adapter.record.transaction import SOURCE_TAG

    bundle = enrich(synthetic_conversion(), CsvCoordinators(DIRECTORY_CSV)).bundle
    # as ingestion names the organisation the letter was accepted for
    bundle["meta"] = {"tag": [{"system": SOURCE_TAG, "code": "1750803447"}]}
    owners = {
        "sender": Principal(kind="hospital", organization="1750803447"),
        "other-hospital": Principal(kind="hospital", organization="1750000099"),
        "territory": Principal(kind="coordinator", cpts="CPTS-PARIS-CENTRE"),
        "other-territory": Principal(kind="coordinator", cpts="CPTS-LYON-EST"),
    }
    with Session(get_engine()) as session:
        for name, owner in owners.items():
            subscriptions.create(
                session,
                _subscription("CarePlan?status=active", f"http://127.0.0.1:9/{name}",
                              payload="application/fhir+json"),
                owner,
            )
        session.commit()
    answer = Repository(get_engine()).transaction(bundle)
    with Session(get_engine()) as session:
        subscriptions.after_push(session, bundle, response_locations(answer))
        session.commit()
    endpoints = sorted(e.payload_json()["endpoint"] for e in outbox.entries(get_engine())
                       if e.kind == subscriptions.OUTBOX_KIND)
    assert endpoints == ["http://127.0.0.1:9/sender", "http://127.0.0.1:9/territory"]
