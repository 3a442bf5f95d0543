"""Bundles liaison validated before queueing them are not checked by the embedded record a
second time; every other bundle is, and a bundle that failed liaison's check is not vouched for.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from adapter.ingest.preparation import prepare
from adapter.push.targets import EmbeddedTarget
from adapter.push.worker import FHIR_TRANSACTION, VALIDATED_TRANSACTION, Pusher
from adapter.record.repository import Repository
from adapter.store import outbox
from adapter.store.db import session_scope
from tests.push.bundles import INS, letter_bundle, patient_ins
from tests.push.test_batched_delivery import CountingTarget, settings
from tests.support.paths import LDL_SES_EXAMPLE


def _with_bad_birth_date(letter: int) -> dict[str, Any]:
    """A bundle whose Patient breaks the FHIR model (a date that is not one); every reference,
    type and id is right."""
    bundle = letter_bundle(letter)
    bundle["entry"][0]["resource"]["birthDate"] = "yesterday"
    return bundle


def _queue(engine: Engine, kind: str, bundle: dict[str, Any], key: str) -> int:
    with session_scope(engine) as session:
        return outbox.enqueue(session, kind, bundle, key).id or 0


def _patients(engine: Engine, letter: int) -> int:
    found = Repository(engine).search("Patient", [("identifier", f"{INS}|{patient_ins(letter)}")])
    return len(found.get("entry", []))


@pytest.mark.parametrize("batch_size", [1, 8])
def test_the_record_checks_a_bundle_nobody_vouched_for_and_trusts_one_liaison_validated(
    outbox_engine: Engine, batch_size: int
) -> None:
    checked = _queue(outbox_engine, FHIR_TRANSACTION, _with_bad_birth_date(1), "patient-1")
    vouched = _queue(outbox_engine, VALIDATED_TRANSACTION, _with_bad_birth_date(2), "patient-2")
    target = CountingTarget(outbox_engine)
    Pusher(outbox_engine, target, settings=settings(), batch_size=batch_size).drain(timeout=30)

    refused = outbox.get_entry(outbox_engine, checked)
    assert refused is not None and refused.status == outbox.FAILED
    assert refused.last_status == 422
    assert _patients(outbox_engine, 1) == 0
    # the model check is the one liaison ran before queueing: not paid a second time
    delivered = outbox.get_entry(outbox_engine, vouched)
    assert delivered is not None and delivered.status == outbox.DELIVERED
    assert _patients(outbox_engine, 2) == 1


def test_a_vouched_bundle_still_has_its_types_and_ids_checked(outbox_engine: Engine) -> None:
    bundle = letter_bundle(3)
    bundle["entry"][0]["request"]["url"] = "Spaceship"
    bundle["entry"][0]["resource"]["resourceType"] = "Spaceship"
    entry = _queue(outbox_engine, VALIDATED_TRANSACTION, bundle, "patient-3")
    Pusher(outbox_engine, EmbeddedTarget(outbox_engine), settings=settings()).drain(timeout=30)
    refused = outbox.get_entry(outbox_engine, entry)
    assert refused is not None and refused.status == outbox.FAILED


def test_an_http_server_is_never_told_a_bundle_was_validated(outbox_engine: Engine) -> None:
    class PlainServer(CountingTarget):
        """A target without the embedded record's `trusts_validated`: `send(bundle)` only."""

        trusts_validated = False
        send_many = None  # type: ignore[assignment]  # one bundle a request, as over HTTP

        def send(self, bundle: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
            self.calls.append(1)
            return EmbeddedTarget.send(self, bundle)

    entry = _queue(outbox_engine, VALIDATED_TRANSACTION, letter_bundle(4), "patient-4")
    target = PlainServer(outbox_engine)
    Pusher(outbox_engine, target, settings=settings()).drain(timeout=30)
    assert target.calls == [1]
    delivered = outbox.get_entry(outbox_engine, entry)
    assert delivered is not None and delivered.status == outbox.DELIVERED


def test_a_prepared_letter_is_vouched_for_only_when_its_bundle_passes_the_check(
    tmp_path: Any,
) -> None:
    from adapter.ingest import preparation
    from adapter.mapping import convert_letter
    from adapter.store.db import engine_for, init_db

    engine = engine_for(f"sqlite:///{tmp_path / 'liaison.db'}")
    init_db(engine)
    try:
        xml = LDL_SES_EXAMPLE.read_bytes()
        assert prepare(xml, engine).validated

        conversion = convert_letter(xml)
        broken = copy.deepcopy(conversion)
        patient = next(e["resource"] for e in broken.bundle["entry"]
                       if e["resource"]["resourceType"] == "Patient")
        patient["birthDate"] = "yesterday"
        assert preparation._validation_problems(conversion) == []
        problems = preparation._validation_problems(broken)
        assert problems and all("Patient" in problem for problem in problems)
        assert any(issue["code"] == "invalid" and "birthDate" in issue["diagnostics"]
                   for issue in broken.report["issue"])
    finally:
        engine.dispose()
