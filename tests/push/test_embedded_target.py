"""The embedded record as a push target: which of its refusals are worth retrying."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from adapter.errors import TargetRejected, TargetUnavailable
from adapter.push.targets import EmbeddedTarget
from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.push.bundles import letter_bundle


def test_a_transaction_that_lost_a_race_with_another_writer_is_retried_not_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = EmbeddedTarget(get_engine())
    real_run = Repository._run_locked
    races = [IntegrityError("UPDATE record_resource …", {}, Exception("duplicate key"))]

    def race_once(self: Repository, *args: object, **kwargs: object) -> object:
        # A concurrent writer committed the same row first (PostgreSQL, read committed): this
        # cannot be timed for real in a test, so the database error is raised where it arises.
        if races:
            raise races.pop()
        return real_run(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Repository, "_run_locked", race_once)
    with pytest.raises(TargetUnavailable) as raced:
        target.send(letter_bundle(1))
    assert raced.value.status == 409
    assert target.send(letter_bundle(1))["type"] == "transaction-response"


def test_a_bundle_the_record_refuses_is_rejected() -> None:
    target = EmbeddedTarget(get_engine())
    bundle = letter_bundle(1)
    bundle["entry"][0]["request"]["url"] = "NoSuchType"
    with pytest.raises(TargetRejected):
        target.send(bundle)
