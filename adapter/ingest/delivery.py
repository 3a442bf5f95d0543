"""The pusher of this deployment: what each kind of outbox entry is and who delivers it.

Transaction bundles go to the configured target (`adapter.push`); the parts that queue other
work declare how it is done: deferred CI-SIS validation of a received letter
(`adapter.ingest.validation`), Subscription notifications, queued after a bundle lands and
sent to the subscriber (`adapter.coordination.subscriptions`), and MSSanté messages, queued
with their letter (`adapter.mssante`). `liaison serve`, its pusher
process and `liaison worker` all build their pusher here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from adapter.config import Settings, get_settings
from adapter.coordination import subscriptions
from adapter.ingest import validation
from adapter.ingest.replies import reply_filer
from adapter.mssante import delivery as mssante
from adapter.mssante.receipts import ReceiptPoller
from adapter.mssante.rules import KIND as MSSANTE_MESSAGE
from adapter.mssante.rules import STATUS_KIND as MSSANTE_STATUS
from adapter.push.references import resolve_references
from adapter.push.targets import Target, response_locations, target_from_settings
from adapter.push.worker import Pusher
from adapter.store.db import get_engine


def delivery_pusher(
    engine: Engine | None = None,
    settings: Settings | None = None,
    *,
    threads: int | None = None,
    poll_seconds: float = 0.5,
) -> Pusher:
    settings = settings or get_settings()
    engine = engine or get_engine(settings.resolved_database_url)
    target = target_from_settings(settings, engine)  # one client for the pushes and statuses
    return Pusher(
        engine,
        target,
        settings=settings,
        threads=threads,
        poll_seconds=poll_seconds,
        handlers={
            validation.CDA_VALIDATION: validation.handler(engine),
            subscriptions.OUTBOX_KIND: subscriptions.deliver,
            MSSANTE_MESSAGE: mssante.handler(engine, settings),
            MSSANTE_STATUS: _status_sender(target),
        },
        after_push=subscriptions.after_push,
        on_failure={MSSANTE_MESSAGE: mssante.given_up(engine)},
        # delivery reports and read receipts, read from liaison's MSSanté mailbox
        # (and replies, filed into the patient's thread)
        companions=[ReceiptPoller(engine, settings, other=reply_filer(engine, settings))]
        if settings.mssante_imap_host else [],
    )


def _status_sender(target: Target) -> Callable[[Any], dict[str, Any]]:
    """A Communication's new status: its references resolved on the target, then sent."""
    def send(bundle: dict[str, Any]) -> dict[str, Any]:
        answer = target.send(resolve_references(bundle, target.find_ids))
        return {"locations": response_locations(answer)}

    return send
