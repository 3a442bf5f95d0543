"""What comes back to liaison's MSSanté mailbox — a real Dovecot IMAP server on loopback,
STARTTLS required — after a letter went out through a real SMTP relay: a read receipt (MDN)
marks the nurse's Communication read, a bounce after acceptance (DSN) marks the GP's `not-done`
with the diagnostic, other mail is flagged for a person; and the record answers "who has not
read the letter yet?"."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapter.auth import issue_token
from adapter.directory.importer import import_path
from adapter.mssante.receipts import read_report
from adapter.store.db import get_engine
from tests.api.conftest import bearer
from tests.directory.conftest import MSSANTE_SAMPLE, NATIONAL_SAMPLE
from tests.support import imap
from tests.support.mail import MailRelay, TlsFiles, make_tls
from tests.support.paths import LDL_SES_EXAMPLE
from tests.support.waiting import wait_for

SENDER = "liaison@hopital-test.mssante.fr"
NURSE = "elsa.ducout@infirmier.mssante.fr"
GP = "stephane.medioni@medecin.mssante.fr"
STATE = "https://liaison.github.io/fhir/CodeSystem/mssante-state"
READ = "https://liaison.github.io/fhir/StructureDefinition/mssante-read"
CDA = {"Content-Type": "application/hl7-cda+xml"}


def _fields(values: dict[str, str]) -> Message:
    block = Message()
    for name, value in values.items():
        block[name] = value
    return block


def dsn(original_id: str, recipient: str, diagnostic: str) -> bytes:
    """A delivery report as a receiving MTA writes it (RFC 3464)."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"], report["To"] = "MAILER-DAEMON@medecin.mssante.fr", SENDER
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report.attach(MIMEText("Votre message n'a pas pu être remis.", "plain", "utf-8"))
    status = MIMEBase("message", "delivery-status")
    status.set_payload([_fields({"Reporting-MTA": "dns; mx.medecin.mssante.fr"}),
                        _fields({"Final-Recipient": f"rfc822; {recipient}", "Action": "failed",
                                 "Status": "5.2.2", "Diagnostic-Code": f"smtp; {diagnostic}"})])
    report.attach(status)
    report.attach(MIMEText(f"Message-ID: {original_id}\nFrom: {SENDER}\n", "rfc822-headers"))
    return report.as_bytes()


def mdn(original_id: str, recipient: str, disposition: str = "displayed") -> bytes:
    """A read receipt as the recipient's mail software writes it (RFC 8098)."""
    report = MIMEMultipart("report", report_type="disposition-notification")
    report["From"], report["To"] = recipient, SENDER
    report["Subject"] = "Accusé de lecture"
    report.attach(MIMEText("Le message a été affiché.", "plain", "utf-8"))
    notice = MIMEBase("message", "disposition-notification")
    notice.set_payload(f"Reporting-UA: client; Logiciel MSSante\nFinal-Recipient: rfc822; "
                       f"{recipient}\nOriginal-Message-ID: {original_id}\n"
                       f"Disposition: manual-action/MDN-sent-manually; {disposition}\n")
    report.attach(notice)
    return report.as_bytes()


def test_reports_are_told_apart() -> None:
    bounce = read_report(dsn("<a@b>", GP, "552 mailbox full"))
    assert (bounce.kind, bounce.original_id) == ("bounce", "<a@b>")
    assert "552 mailbox full" in bounce.detail
    assert read_report(mdn("<c@d>", NURSE)).kind == "read"
    assert read_report(mdn("<c@d>", NURSE, "deleted")).kind == "other"
    assert read_report(b"From: x@y\r\nSubject: merci\r\n\r\nbien recu\r\n").kind == "other"


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path)


def _communications(client: TestClient, **params: str) -> dict[str, dict[str, Any]]:
    system = bearer(issue_token("system"))
    found = client.get("/fhir/Communication", headers=system, params={
        "_include": "Communication:recipient", "_count": "100", **params}).json()
    resources = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
                 for e in found.get("entry") or []}
    mine = {}
    for resource in resources.values():
        if resource["resourceType"] == "Communication":
            recipient = resources.get(resource["recipient"][0]["reference"], {})
            for point in recipient.get("telecom") or []:
                if point.get("value", "").endswith(".mssante.fr"):
                    mine[point["value"]] = resource
    return mine


def _until(check: Callable[[], Any]) -> Any:
    return wait_for(check, timeout=30)


@pytest.mark.skipif(imap.unavailable() is not None, reason=str(imap.unavailable()))
def test_read_receipts_and_bounces_come_back_to_the_record(
        liaison: Callable[..., Any], hospital: dict[str, str], tls: TlsFiles,
        liaison_env: Any) -> None:
    import_path(get_engine(), NATIONAL_SAMPLE)
    import_path(get_engine(), MSSANTE_SAMPLE)
    recipients = (NURSE, GP, "charles.david@hegp.mssante.fr")
    with imap.Mailbox(tls, SENDER, "secret", others=recipients) as mailbox, \
            MailRelay(tls, deliver_to=mailbox) as relay, \
            liaison(**relay.settings(), **mailbox.settings(),
                    mssante_receipts_poll_seconds=0.1) as client:
        letter = LDL_SES_EXAMPLE.read_bytes()
        answer = client.post("/discharge-letters", content=letter, headers={**hospital, **CDA})
        assert answer.status_code == 202, answer.text
        sent = {m.recipients[0]: m.message["Message-ID"] for m in relay.wait_for(3)}
        for recipient in recipients:  # in each recipient's own mailbox: the letter, unchanged
            (raw,) = mailbox.messages(recipient)
            attachments = {part.get_filename(): part for part in
                           message_from_bytes(raw, policy=policy.default).iter_attachments()}
            package = zipfile.ZipFile(io.BytesIO(attachments["IHE_XDM.ZIP"].get_content()))
            assert package.read("IHE_XDM/SUBSET01/DOC0001.XML") == letter
        _until(lambda: all(c["status"] == "completed" for c in _communications(client).values())
               and len(_communications(client)) == 3)
        # nobody has read it yet: all three are received, none read
        assert len(_communications(client, _tag=f"{STATE}|received")) == 3

        mailbox.deliver(mdn(sent[NURSE], NURSE))
        mailbox.deliver(dsn(sent[GP], GP, "552 5.2.2 mailbox full"))
        mailbox.deliver(b"From: someone@ailleurs.mssante.fr\r\nSubject: merci\r\n\r\nbien recu\r\n")

        found = _until(lambda: (c := _communications(client))
                       and c[NURSE].get("extension") and c[GP]["status"] == "not-done" and c)
        nurse, gp = found[NURSE], found[GP]
        assert nurse["status"] == "completed" and nurse["received"]
        assert next(e for e in nurse["extension"] if e["url"] == READ)["valueDateTime"]
        assert {"system": STATE, "code": "read"} in nurse["meta"]["tag"]
        assert "552 5.2.2 mailbox full" in gp["statusReason"]["text"]
        # who has not read the letter: the one still only received
        unread = _communications(client, _tag=f"{STATE}|received")
        assert set(unread) == {"charles.david@hegp.mssante.fr"}
        page = client.get("/coordination/page", headers=bearer(issue_token("system"))).text
        assert "lu le " in page and "pas encore lu" in page
        assert "Message MSSanté non distribué" in page
        # every mail was read by liaison; the one it could not place is flagged for a person
        flags = _until(lambda: (f := mailbox.flags()) and all(b"\\Seen" in x for x in f) and f)
        assert sum(b"\\Flagged" in x for x in flags) == 1


def _thread(client: TestClient, patient_id: str, reader: dict[str, str]) -> list[dict[str, Any]]:
    found = client.get("/fhir/Communication", headers=reader, params={
        "subject": f"Patient/{patient_id}",
        "category": "https://liaison.github.io/fhir/CodeSystem/communication-kind"
                    "|care-team-thread", "_sort": "_lastUpdated"}).json()
    return [e["resource"] for e in found.get("entry") or []]


def reply(to_id: str, sender: str, text: str) -> bytes:
    mail = MIMEText(f"{text}\n\nLe 4 déc. 2026 à 09:00, liaison a écrit :\n> Passage demain ?\n",
                    "plain", "utf-8")
    mail["From"], mail["To"] = sender, SENDER
    mail["Subject"], mail["In-Reply-To"], mail["References"] = "Re: message", to_id, to_id
    return mail.as_bytes()


@pytest.mark.skipif(imap.unavailable() is not None, reason=str(imap.unavailable()))
def test_a_thread_message_goes_by_mail_and_the_reply_by_mail_lands_in_the_thread(
        liaison: Callable[..., Any], hospital: dict[str, str], tls: TlsFiles,
        liaison_env: Any) -> None:
    import_path(get_engine(), NATIONAL_SAMPLE)
    import_path(get_engine(), MSSANTE_SAMPLE)
    gp = bearer(issue_token("professional", idnat="801984758437"))
    with MailRelay(tls) as relay, imap.Mailbox(tls, SENDER, "secret") as mailbox, \
            liaison(**relay.settings(), **mailbox.settings(),
                    mssante_receipts_poll_seconds=0.1) as client:
        answer = client.post("/discharge-letters", content=LDL_SES_EXAMPLE.read_bytes(),
                             headers={**hospital, **CDA})
        assert answer.status_code == 202, answer.text
        relay.wait_for(3)  # the letter's three messages
        communications = _until(lambda: len(c := _communications(client)) == 3 and c)
        patient_id = communications[NURSE]["subject"]["reference"].split("/")[1]
        nurse_role = communications[NURSE]["recipient"][0]["reference"]

        written = client.post("/fhir/Communication", headers=gp, json={
            "resourceType": "Communication", "subject": {"reference": f"Patient/{patient_id}"},
            "recipient": [{"reference": nurse_role}],
            "payload": [{"contentString": "Pouvez-vous passer demain matin ?"}]})
        assert written.status_code == 201, written.text
        mail = relay.wait_for(4)[3]
        assert mail.recipients == [NURSE]
        assert "Pouvez-vous passer demain matin ?" in mail.message.get_body().get_content()

        mailbox.deliver(reply(mail.message["Message-ID"], NURSE, "Oui, à 9 h."))
        mailbox.deliver(reply(mail.message["Message-ID"], "quelqu.un@ailleurs.mssante.fr",
                              "Je ne suis pas de l'équipe."))
        thread = _until(lambda: len(t := _thread(client, patient_id, gp)) == 2 and t)
        answer_of_nurse = thread[1]
        assert answer_of_nurse["payload"] == [{"contentString": "Oui, à 9 h."}]
        first = f"Communication/{written.json()['id']}"
        assert answer_of_nurse["inResponseTo"] == [{"reference": first}]
        assert answer_of_nurse["sender"] == {"reference": nurse_role}
        assert answer_of_nurse["recipient"] == [written.json()["sender"]]
        # the stranger's mail is not in the thread: it waits, flagged, for a person
        flags = _until(lambda: (f := mailbox.flags()) and len(f) == 2
                       and all(b"\\Seen" in x for x in f) and f)
        assert sum(b"\\Flagged" in x for x in flags) == 1
        assert len(_thread(client, patient_id, gp)) == 2
        # a bounce of the thread's mail is taken (no Communication of its own to change), and
        # the mail after it is read too
        mailbox.deliver(dsn(mail.message["Message-ID"], NURSE, "552 5.2.2 mailbox full"))
        mailbox.deliver(reply(mail.message["Message-ID"], NURSE, "Et je passe jeudi aussi."))
        flags = _until(lambda: (f := mailbox.flags()) and len(f) == 4
                       and all(b"\\Seen" in x for x in f) and f)
        assert sum(b"\\Flagged" in x for x in flags) == 1
        assert len(_thread(client, patient_id, gp)) == 3
