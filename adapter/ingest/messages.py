"""A message of the care team into the patient's thread: checked and written
(`adapter.coordination.thread`), then told to the Subscriptions that watch its recipients and,
by MSSanté mail, to the recipients with a mailbox.

The message is in the record when the writer gets its 201; its notifications are queued right
after, in liaison's database (the record may live in another). Should the process stop between
the two, the message stays readable and in the change feed, but its Subscriptions are not told.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from adapter.auth import Principal
from adapter.config import Settings
from adapter.coordination import subscriptions, thread
from adapter.coordination.rules import load_rules
from adapter.mssante.plan import plan_thread_mail
from adapter.mssante.queue import enqueue_message
from adapter.push.worker import notify
from adapter.record.repository import Repository
from adapter.record.transaction import Result
from adapter.store.engine import session_scope

# every token but liaison's own and system tokens: the thread's rules answer them (a hospital
# hears that it writes letters, not messages)
OTHERS = ("professional", "coordinator", "hospital")


def thread_interceptor(engine: Engine, repository: Repository, settings: Settings,
                       now: Callable[[], datetime] = lambda: datetime.now(UTC)
                       ) -> Callable[[Any, Principal | None], Result | None]:
    """The create of a Communication by anyone but liaison and the system: a message in the
    patient's thread (None for those two: the record's own create)."""
    def intercept(resource: Any, principal: Principal | None) -> Result | None:
        if principal is None or principal.kind not in OTHERS:
            return None
        posted = thread.post_message(repository, principal, resource, load_rules(), now=now)
        tell(engine, settings, posted)
        return posted.result

    return intercept


def tell(engine: Engine, settings: Settings, posted: thread.Posted) -> None:
    """The Subscriptions watching the message's recipients, and by MSSanté mail those with a
    mailbox, are told in one transaction of liaison's database."""
    mails = plan_thread_mail(posted.bundle, settings.mssante_sender) \
        if settings.mssante_enabled and settings.mssante_sender else []
    patient = posted.bundle["entry"][0]["resource"]["subject"]["reference"]
    with session_scope(engine) as session:
        queued = subscriptions.after_push(session, posted.bundle, [posted.location],
                                          only=posted.bundle["entry"][0]["fullUrl"])
        for mail in mails:
            enqueue_message(session, mail, patient)
    if queued or mails:
        notify()
