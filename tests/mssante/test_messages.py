"""What liaison sends each recipient of the LDL-SES example by MSSanté: the message in French,
the IHE XDM package holding the letter byte for byte, a page to read it; and the status update
the record receives afterwards."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest
from lxml import etree

from adapter.directory.importer import import_path
from adapter.directory.lookup import SqlDirectory
from adapter.mapping import convert_letter
from adapter.mssante.compose import compose
from adapter.mssante.plan import plan_messages
from adapter.mssante.rules import mssante_rules
from adapter.mssante.status import status_bundle
from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.support.paths import LDL_SES_EXAMPLE

DIRECTORY = pytest.importorskip("tests.directory.conftest")
SENDER = "liaison@hopital-test.mssante.fr"
RIM = "{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}"
MAILBOXES = {"charles.david@hegp.mssante.fr", "elsa.ducout@infirmier.mssante.fr",
             "stephane.medioni@medecin.mssante.fr"}


@pytest.fixture
def bundle(liaison_env: Any) -> dict[str, Any]:
    engine = get_engine()
    import_path(engine, DIRECTORY.NATIONAL_SAMPLE)
    import_path(engine, DIRECTORY.MSSANTE_SAMPLE)
    return convert_letter(LDL_SES_EXAMPLE.read_bytes(), directory=SqlDirectory(engine)).bundle


def _communications(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Communication"]


def test_each_recipient_with_a_mailbox_gets_a_message_and_its_communication_waits(
        bundle: dict[str, Any]) -> None:
    plan = plan_messages(bundle, SENDER)
    assert {m["to"] for m in plan.messages} == MAILBOXES
    assert plan.unreachable == []
    assert {c["status"] for c in _communications(bundle)} == {"in-progress"}
    message = next(m for m in plan.messages if m["to"] == "elsa.ducout@infirmier.mssante.fr")
    assert "sortie du 03/12/2019" in message["subject"]
    assert message["body"].startswith("Bonjour")
    assert "Elsa" in message["body"].splitlines()[0]
    assert message["message_id"].endswith("@hopital-test.mssante.fr>")
    # the same letter planned again gives the same Message-ID: a resend is one mail
    again = convert_letter(LDL_SES_EXAMPLE.read_bytes(), directory=SqlDirectory(get_engine()))
    assert message["message_id"] in {m["message_id"]
                                     for m in plan_messages(again.bundle, SENDER).messages}


def test_a_recipient_without_mailbox_is_reported_not_skipped(liaison_env: Any) -> None:
    bundle = convert_letter(LDL_SES_EXAMPLE.read_bytes()).bundle  # no directory: no mailbox
    plan = plan_messages(bundle, SENDER)
    assert plan.messages == []
    assert len(plan.unreachable) == len(_communications(bundle)) == 3
    assert all("pas de messagerie MSSanté" in line for line in plan.unreachable)
    assert {c["status"] for c in _communications(bundle)} == {"completed"}


def test_the_package_holds_the_letter_byte_for_byte_and_describes_it(
        bundle: dict[str, Any]) -> None:
    letter = LDL_SES_EXAMPLE.read_bytes()
    message = plan_messages(bundle, SENDER).messages[0]
    mail = compose(message, letter, sender=SENDER, rules=mssante_rules(), max_bytes=10**8,
                   now=datetime(2026, 12, 4, 9, 30, tzinfo=UTC))
    assert mail["Message-ID"] == message["message_id"]
    assert mail["Disposition-Notification-To"] == SENDER
    attachments = {part.get_filename(): part for part in mail.iter_attachments()}
    assert set(attachments) == {"IHE_XDM.ZIP", "lettre-de-liaison.html"}
    archive = zipfile.ZipFile(io.BytesIO(attachments["IHE_XDM.ZIP"].get_content()))
    assert set(archive.namelist()) == {"INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML",
                                       "IHE_XDM/SUBSET01/DOC0001.XML"}
    assert archive.read("IHE_XDM/SUBSET01/DOC0001.XML") == letter

    metadata = etree.fromstring(archive.read("IHE_XDM/SUBSET01/METADATA.XML"))
    entry = metadata.find(f".//{RIM}ExtrinsicObject")
    slots = {s.get("name"): s.findtext(f".//{RIM}Value") for s in entry.findall(f"{RIM}Slot")}
    assert slots["hash"] == hashlib.sha1(letter).hexdigest()
    assert slots["size"] == str(len(letter))
    assert slots["URI"] == "DOC0001.XML"
    assert slots["creationTime"] == "20191203123000"  # 13:30 in Paris, in UTC
    assert slots["sourcePatientId"] == "279035121518989^^^&1.2.250.1.213.1.4.10&ISO"
    ids = {e.get("identificationScheme"): e.get("value")
           for e in metadata.iter(f"{RIM}ExternalIdentifier")}
    assert ids["urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"] == "1.2.250.1.213.1.1.1.29.2022.1.1"
    codes = {c.get("classificationScheme"): c.get("nodeRepresentation")
             for c in entry.findall(f"{RIM}Classification")}
    assert codes["urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"] == "urn:asip:ci-sis:ldl-ses:2017"
    assert codes["urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"] == "11490-0"
    assert codes["urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"] == "N"
    association = metadata.find(f".//{RIM}Association")
    assert (association.get("sourceObject"), association.get("targetObject")) == (
        "SubmissionSet01", "Document01")

    page = attachments["lettre-de-liaison.html"].get_content()
    assert "<script" not in page.lower()
    assert "Lettre de liaison" in page


def test_the_status_update_lands_on_the_communication_the_letter_wrote(
        bundle: dict[str, Any]) -> None:
    plan = plan_messages(bundle, SENDER)
    record = Repository(get_engine())
    record.transaction(bundle)
    message = plan.messages[0]
    record.transaction(status_bundle(message, "completed",
                                     when=datetime(2026, 12, 4, 9, 31, tzinfo=UTC)))
    identifier = message["communication"]["identifier"][0]
    found = record.search("Communication", [
        ("identifier", f"{identifier['system']}|{identifier['value']}")])
    assert found["total"] == 1
    communication = found["entry"][0]["resource"]
    assert communication["status"] == "completed"
    assert communication["received"] == "2026-12-04T09:31:00+00:00"
    # its links still name the letter's patient and care plan in the record
    patient = record.search("Patient", [("identifier", "urn:oid:1.2.250.1.213.1.4.10|"
                                                       "279035121518989")])["entry"][0]
    assert communication["subject"]["reference"] == f"Patient/{patient['resource']['id']}"
    assert communication["about"][0]["reference"].startswith("CarePlan/")
    assert record.search("Communication", [])["total"] == len(_communications(bundle))
