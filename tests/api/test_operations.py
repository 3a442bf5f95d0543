"""What an integrator uses to see and fix things: receipts of failed letters, the outbox
commands, health and metrics."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from adapter.cli import app as cli
from tests.api.conftest import wait_for_status
from tests.push.faulty import faulty_target
from tests.support.letter_variants import letter_variant

CDA = {"Content-Type": "application/hl7-cda+xml"}


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.medplum
def test_a_letter_the_target_rejects_ends_failed_with_its_message_and_can_be_replayed(
    liaison: Callable[..., Any], hospital: dict[str, str], medplum_base_url: str
) -> None:
    with faulty_target(medplum_base_url) as fault:
        fault.reject_all = (
            422,
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "invalid",
                        "diagnostics": "Patient.gender: bad code",
                    }
                ],
            },
        )
        with liaison(target_url=fault.base_url, target_max_entries=8) as client:
            answer = client.post(
                "/discharge-letters", content=letter_variant(40), headers={**hospital, **CDA}
            )
            failed = wait_for_status(client, answer.headers["Location"], hospital, "failed")
            assert failed["lastError"]["status"] == 422
            assert (
                failed["lastError"]["outcome"]["issue"][0]["diagnostics"]
                == "Patient.gender: bad code"
            )
            status = CliRunner().invoke(cli, ["outbox", "status", "--failed"])
            assert re.search(r"^failed\s+1$", status.stdout, re.MULTILINE)
            assert "Patient.gender: bad code" in status.stdout
            fault.reject_all = None
            replay = CliRunner().invoke(cli, ["outbox", "replay", "--failed"])
            assert replay.exit_code == 0 and replay.stdout.startswith("1 failed entry")
            wait_for_status(client, answer.headers["Location"], hospital, "pushed")


@pytest.mark.medplum
def test_a_failed_older_version_is_not_replayed_over_its_delivered_newer_version(
    liaison: Callable[..., Any], hospital: dict[str, str], medplum_base_url: str
) -> None:
    with faulty_target(medplum_base_url) as fault:
        fault.then(422, "Patient.gender: bad code")  # version 1 is refused, once
        with liaison(target_url=fault.base_url, target_max_entries=8) as client:
            first = client.post("/discharge-letters", content=letter_variant(41),
                                headers={**hospital, **CDA})
            wait_for_status(client, first.headers["Location"], hospital, "failed")
            second = client.post("/discharge-letters", content=letter_variant(41, version=2),
                                 headers={**hospital, **CDA})
            wait_for_status(client, second.headers["Location"], hospital, "pushed")
            replay = CliRunner().invoke(cli, ["outbox", "replay", "--failed"])
            assert replay.exit_code == 0, replay.output
            assert replay.stdout.startswith("0 failed entries") and "1 left alone" in replay.stdout
            entry = client.get(first.headers["Location"], headers=hospital).json()
            assert entry["status"] == "failed"  # never sent over version 2
            retry = CliRunner().invoke(cli, ["outbox", "retry", str(entry["outboxEntry"])])
            assert retry.exit_code == 1 and "newer version was pushed" in retry.stderr


def test_outbox_commands_refuse_what_they_cannot_do() -> None:
    retry = CliRunner().invoke(cli, ["outbox", "retry", "12345"])
    assert retry.exit_code == 1 and "no outbox entry 12345" in retry.stderr
    replay = CliRunner().invoke(cli, ["outbox", "replay"])
    assert replay.exit_code == 1 and "--failed" in replay.stderr


def test_health_readiness_and_metrics(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    with liaison() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {
            "database": "ok",
            "pusher": "ok",
        }
        before = client.get("/metrics").text
        answer = client.post(
            "/discharge-letters", content=letter_variant(41), headers={**hospital, **CDA}
        )
        client.post("/discharge-letters", content=b"<not-a-letter/>", headers={**hospital, **CDA})
        wait_for_status(client, answer.headers["Location"], hospital, "pushed")
        after = client.get("/metrics").text
    assert (
        _metric(after, "liaison_letters_accepted_total")
        == _metric(before, "liaison_letters_accepted_total") + 1
    )
    refused = 'liaison_letters_refused_total{status="422"}'
    assert _metric(after, re.escape(refused)) == _metric(before, re.escape(refused)) + 1
    assert (
        _metric(after, "liaison_push_delivered_total")
        >= _metric(before, "liaison_push_delivered_total") + 1
    )
    assert 'liaison_outbox_entries{status="delivered"} 1.0' in after
    assert "liaison_push_seconds_bucket" in after


def test_liaison_worker_once_pushes_what_the_server_accepted(
    liaison: Callable[..., Any], hospital: dict[str, str]
) -> None:
    with liaison(push_in_server=False) as client:
        answer = client.post(
            "/discharge-letters", content=letter_variant(42), headers={**hospital, **CDA}
        )
        assert (
            client.get(answer.headers["Location"], headers=hospital).json()["status"] == "accepted"
        )
        worker = CliRunner().invoke(cli, ["worker", "--once"])
        assert worker.exit_code == 0, worker.output
        assert client.get(answer.headers["Location"], headers=hospital).json()["status"] == "pushed"
