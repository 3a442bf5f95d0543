"""A letter through `liaison serve`'s app to real mailboxes: a real SMTP relay on loopback
(aiosmtpd, STARTTLS required, its certificate checked against a test CA). Each recipient with
an MSSanté mailbox gets one message; the Communications in the record go from `in-progress`
to `completed` (with `received`), or `not-done` with the reason when the relay refuses."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.auth import issue_token
from adapter.directory.importer import import_path
from adapter.store.db import get_engine
from tests.api.conftest import bearer
from tests.directory.conftest import MSSANTE_SAMPLE, NATIONAL_SAMPLE
from tests.support.mail import MailRelay, TlsFiles, make_tls
from tests.support.paths import FIXTURES, LDL_SES_EXAMPLE

NURSE = "elsa.ducout@infirmier.mssante.fr"
LETTER_KEY = "1.2.250.1.213.1.1.1.29.2022.1.1/"  # its Communications' identifiers start so
MAILBOXES = {"charles.david@hegp.mssante.fr", NURSE, "stephane.medioni@medecin.mssante.fr"}
CDA = {"Content-Type": "application/hl7-cda+xml"}


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path)


@pytest.fixture
def directory(liaison_env: Any) -> None:
    import_path(get_engine(), NATIONAL_SAMPLE)
    import_path(get_engine(), MSSANTE_SAMPLE)


def _communications(client: TestClient) -> dict[str, dict[str, Any]]:
    """The record's Communications by the MSSanté address of their recipient."""
    system = bearer(issue_token("system"))
    found = client.get("/fhir/Communication?_include=Communication:recipient&_count=100",
                       headers=system).json()
    resources = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
                 for e in found.get("entry") or []}
    by_mailbox = {}
    for resource in resources.values():
        if resource["resourceType"] != "Communication":
            continue
        recipient = resources.get(resource["recipient"][0]["reference"], {})
        for point in recipient.get("telecom") or []:
            if point.get("value") in MAILBOXES:
                by_mailbox[point["value"]] = resource
    return by_mailbox


def _wait(client: TestClient, done: Callable[[dict[str, dict[str, Any]]], bool],
          timeout: float = 30) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        communications = _communications(client)
        if done(communications):
            return communications
        if time.monotonic() > deadline:
            raise TimeoutError({k: v["status"] for k, v in communications.items()})
        time.sleep(0.05)


def test_every_recipient_gets_the_letter_and_the_record_says_received(
        liaison: Callable[..., Any], hospital: dict[str, str], tls: TlsFiles,
        directory: None) -> None:
    letter = LDL_SES_EXAMPLE.read_bytes()
    with MailRelay(tls) as relay, liaison(**relay.settings()) as client:
        answer = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
        assert answer.status_code == 202, answer.text
        accepted = relay.wait_for(3)
        assert sorted(r for m in accepted for r in m.recipients) == sorted(MAILBOXES)
        for mail in accepted:
            parts = {p.get_filename(): p for p in mail.message.iter_attachments()}
            archive = zipfile.ZipFile(io.BytesIO(parts["IHE_XDM.ZIP"].get_content()))
            assert archive.read("IHE_XDM/SUBSET01/DOC0001.XML") == letter
        communications = _wait(client, lambda found: len(found) == 3 and all(
            c["status"] == "completed" for c in found.values()))
        assert all(c.get("received") for c in communications.values())
        # sent once each, whatever the pusher did meanwhile
        assert len({m.message["Message-ID"] for m in relay.accepted}) == len(relay.accepted) == 3


def test_a_refused_mailbox_marks_its_communication_not_done_and_others_go_on(
        liaison: Callable[..., Any], hospital: dict[str, str], tls: TlsFiles,
        directory: None) -> None:
    with MailRelay(tls) as relay, liaison(**relay.settings()) as client:
        relay.handler.refuse[NURSE] = "550 5.1.1 mailbox unknown"
        relay.handler.defer["charles.david@hegp.mssante.fr"] = 2  # greylisted twice
        answer = client.post("/discharge-letters", content=LDL_SES_EXAMPLE.read_bytes(),
                             headers={**hospital, **CDA})
        assert answer.status_code == 202, answer.text
        relay.wait_for(2)
        communications = _wait(client, lambda found: len(found) == 3 and all(
            c["status"] != "in-progress" for c in found.values()))
        nurse = communications[NURSE]
        assert nurse["status"] == "not-done"
        assert "550" in nurse["statusReason"]["text"]
        assert "received" not in nurse
        assert communications["charles.david@hegp.mssante.fr"]["status"] == "completed"
        assert relay.handler.attempts[NURSE] == 1  # a 5xx is not retried


def test_a_relay_down_then_back_loses_nothing_and_sends_nothing_twice(
        liaison: Callable[..., Any], hospital: dict[str, str], tls: TlsFiles,
        directory: None) -> None:
    relay = MailRelay(tls)  # not started: connections are refused
    with liaison(**relay.settings()) as client:
        answer = client.post("/discharge-letters", content=LDL_SES_EXAMPLE.read_bytes(),
                             headers={**hospital, **CDA})
        assert answer.status_code == 202, answer.text
        waiting = _wait(client, lambda found: len(found) == 3)
        assert {c["status"] for c in waiting.values()} == {"in-progress"}
        with relay:
            relay.wait_for(3)
            _wait(client, lambda found: all(c["status"] == "completed" for c in found.values()))
        assert sorted(r for m in relay.accepted for r in m.recipients) == sorted(MAILBOXES)


def test_the_coordinator_sees_who_got_the_letter_and_who_did_not(
        liaison: Callable[..., Any], hospital: dict[str, str], tls: TlsFiles,
        directory: None) -> None:
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")  # the CPTS
    coordinator = bearer(issue_token("coordinator", cpts="CPTS-PARIS-CENTRE"))
    with MailRelay(tls) as relay, liaison(**relay.settings()) as client:
        relay.handler.refuse[NURSE] = "550 5.1.1 mailbox unknown"
        answer = client.post("/discharge-letters", content=LDL_SES_EXAMPLE.read_bytes(),
                             headers={**hospital, **CDA})
        assert answer.status_code == 202, answer.text
        _wait(client, lambda found: len(found) == 3 and all(
            c["status"] != "in-progress" for c in found.values()))
        page = client.get("/coordination/page", headers=coordinator).text
        assert "non remis : Message MSSanté refusé" in page
        assert "reçu par sa messagerie MSSanté le" in page


def test_a_message_the_outbox_gives_up_on_leaves_its_communication_not_done(
        liaison: Callable[..., Any], hospital: dict[str, str], tls: TlsFiles,
        directory: None) -> None:
    relay = MailRelay(tls)  # never up: every attempt fails
    with liaison(**relay.settings(), push_max_attempts=2) as client:
        answer = client.post("/discharge-letters", content=LDL_SES_EXAMPLE.read_bytes(),
                             headers={**hospital, **CDA})
        assert answer.status_code == 202, answer.text
        communications = _wait(client, lambda found: len(found) == 3 and all(
            c["status"] == "not-done" for c in found.values()))
        assert {c["statusReason"]["text"] for c in communications.values()} == {
            "Message MSSanté non remis après plusieurs tentatives"}
        system = bearer(issue_token("system"))
        failed = client.get("/fhir/Communication?status=in-progress&_summary=count",
                            headers=system).json()
        assert failed["total"] == 0


@pytest.mark.medplum
def test_the_status_lands_on_another_fhir_server_too(
        liaison: Callable[..., Any], hospital: dict[str, str], tls: TlsFiles, directory: None,
        medplum_base_url: str) -> None:
    """Medplum resolves the status update's conditional references as the embedded record
    does: its Communications end `completed` with `received`, linked to its own Patient."""
    from tests.push.medplum_queries import search

    with MailRelay(tls) as relay, liaison(**relay.settings(), target_url=medplum_base_url,
                                          target_max_entries=8) as client:
        answer = client.post("/discharge-letters", content=LDL_SES_EXAMPLE.read_bytes(),
                             headers={**hospital, **CDA})
        assert answer.status_code == 202, answer.text
        relay.wait_for(3)
        deadline = time.monotonic() + 60
        while True:
            # this letter's (other tests send it to the same Medplum)
            found = [c for c in search(medplum_base_url, "Communication")
                     if c.get("identifier", [{}])[0].get("value", "").startswith(LETTER_KEY)]
            if len(found) == 3 and all(c["status"] == "completed" and c.get("received")
                                       for c in found):
                break
            assert time.monotonic() < deadline, [c["status"] for c in found]
            time.sleep(0.2)
    (patient,) = search(medplum_base_url, "Patient",
                        identifier="urn:oid:1.2.250.1.213.1.4.10|279035121518989")
    for communication in found:
        assert communication["received"]
        assert communication["subject"]["reference"] == f"Patient/{patient['id']}"
