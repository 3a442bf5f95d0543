"""The pusher of this deployment: what each kind of outbox entry is and who delivers it.

Transaction bundles go to the configured target (`adapter.push`); the parts that queue other
work declare how it is done: deferred CI-SIS validation of a received letter
(`adapter.ingest.validation`), Subscription notifications, queued after a bundle lands and
sent to the subscriber (`adapter.coordination.subscriptions`), and MSSanté messages, queued
with their letter (`adapter.mssante`). `liaison serve`, its pusher
process and `liaison worker` all build their pusher here.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from adapter.config import Settings, get_settings
from adapter.coordination import subscriptions
from adapter.ingest import validation
from adapter.ingest.replies import reply_filer
from adapter.mssante import delivery as mssante
from adapter.mssante.receipts import ReceiptPoller
from adapter.mssante.rules import KIND as MSSANTE_MESSAGE
from adapter.push.targets import target_from_settings
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
    return Pusher(
        engine,
        target_from_settings(settings, engine),
        settings=settings,
        threads=threads,
        poll_seconds=poll_seconds,
        handlers={
            validation.CDA_VALIDATION: validation.handler(engine),
            subscriptions.OUTBOX_KIND: subscriptions.deliver,
            MSSANTE_MESSAGE: mssante.handler(engine, settings),
        },
        after_push=subscriptions.after_push,
        on_failure={MSSANTE_MESSAGE: mssante.given_up(engine)},
        # delivery reports and read receipts, read from liaison's MSSanté mailbox
        # (and replies, filed into the patient's thread)
        companions=[ReceiptPoller(engine, settings, other=reply_filer(engine, settings))]
        if settings.mssante_imap_host else [],
    )
