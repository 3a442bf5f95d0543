"""The pusher: claims due outbox entries and hands each to the handler of its kind — for letters,
the push target — then records the outcome: delivered, retrying later (backoff with jitter, or
the target's Retry-After), or failed with the target's OperationOutcome kept for a human.

Runs as threads inside `liaison serve`, or alone with `liaison worker`; any number of pushers
may share one database (see `adapter.store.outbox` for why no entry is sent twice at once).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from adapter import metrics
from adapter.config import Settings, get_settings
from adapter.errors import TargetError, TargetRejected, operation_outcome
from adapter.push.backoff import backoff_delay
from adapter.push.targets import Target, response_locations
from adapter.store import outbox

logger = logging.getLogger("liaison.push")

FHIR_TRANSACTION = "fhir-transaction"
# A transaction bundle whose resources liaison already checked against the FHIR R4 models
# (a letter's, when it was prepared): a target that can (the embedded record) is told so and
# skips its own model check. Entries of the first kind are checked by the target as always.
VALIDATED_TRANSACTION = "fhir-transaction-validated"
TRANSACTION_KINDS = (FHIR_TRANSACTION, VALIDATED_TRANSACTION)
# Letters handed at once to a target that takes several (the embedded record: one database
# transaction, one grants refresh, one commit for all), and marked delivered in one write.
BATCH_SIZE = 8

# payload → what to remember as the result; raises TargetUnavailable / TargetRejected
Handler = Callable[[Any], "dict[str, Any] | None"]
# (payload, outcome) of an entry that failed for good: what its part records about it
GivenUp = Callable[[Any, "dict[str, Any]"], None]


class Companion(Protocol):
    def start(self) -> Any: ...

    def stop(self, timeout: float = 10.0) -> None: ...


# (session, bundle, locations) → outbox entries it queued in that session (e.g. Subscription
# notifications of what just landed); committed before the bundle's entry counts as delivered
AfterPush = Callable[[Session, dict[str, Any], list[str]], int]
_running: set[Any] = set()  # what `notify` sets: our threads' events, pusher processes' pipes


def notify() -> None:
    """Wake the pushers of this process (and of its pusher process): something was enqueued."""
    for event in list(_running):
        event.set()


def wake_also(event: Any, *, remove: bool = False) -> None:
    """Let `notify` also set `event` (e.g. shared with a pusher process), or stop doing so."""
    if remove:
        _running.discard(event)
    else:
        _running.add(event)


class Pusher:
    def __init__(
        self,
        engine: Engine,
        target: Target,
        *,
        settings: Settings | None = None,
        threads: int | None = None,
        poll_seconds: float = 0.5,
        rng: random.Random | None = None,
        batch_size: int = BATCH_SIZE,
        handlers: Mapping[str, Handler] | None = None,
        after_push: AfterPush | None = None,
        on_failure: Mapping[str, GivenUp] | None = None,
        companions: Sequence[Companion] = (),
        clock: Callable[[], datetime] = outbox.utcnow,
    ) -> None:
        """`handlers`: how to deliver the other kinds of outbox entries than transaction
        bundles, declared by the parts that queue them (`adapter.ingest.delivery` gathers
        them); `after_push`: what follows a bundle's landing; `on_failure`: per kind, what to
        record when an entry fails for good; `companions`: background work of the parts that
        runs where the pusher runs, started and stopped with it (e.g. collecting MSSanté
        receipts); `clock`: the time leases and retries are reckoned in (tests move it
        instead of waiting)."""
        self.engine = engine
        self.target = target
        self.settings = settings or get_settings()
        self.thread_count = threads or self.settings.push_workers
        self.poll_seconds = poll_seconds
        self.rng = rng or random.Random()
        self.batch_size = batch_size
        self._handlers = dict(handlers or {})
        self._hook = after_push
        self._on_failure = dict(on_failure or {})
        self.companions = list(companions)
        self.clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def handlers(self) -> dict[str, Handler]:
        return {**self._handlers, FHIR_TRANSACTION: self._send_bundle,
                VALIDATED_TRANSACTION: self._send_validated}

    def _vouch(self, validated: bool) -> dict[str, Any]:
        """The keyword telling the target a bundle was validated, if it takes it (the embedded
        record); any other FHIR server checks what it receives as it always does."""
        return {"validated": True} if validated and getattr(
            self.target, "trusts_validated", False) else {}

    def _send_validated(self, bundle: dict[str, Any]) -> dict[str, Any]:
        return self._send_bundle(bundle, validated=True)

    def _send_bundle(self, bundle: dict[str, Any], validated: bool = False) -> dict[str, Any]:
        with metrics.PUSH_SECONDS.time():
            response = self.target.send(bundle, **self._vouch(validated))
        locations = response_locations(response)
        self._after_push(bundle, locations)
        return {"locations": locations}

    def _after_push(self, bundle: dict[str, Any], locations: list[str]) -> None:
        """The `after_push` hook of a bundle that landed, in a transaction of its own.

        Runs before the entry is marked delivered: if it fails, the entry is retried, and the
        resend is harmless (conditional transaction) while nothing queued is lost.
        """
        if self._hook is None:
            return
        with Session(self.engine) as session:
            queued = self._hook(session, bundle, locations)
            session.commit()
        if queued:
            notify()

    # one pass -----------------------------------------------------------------------------

    def _batching(self, handlers: dict[str, Handler]) -> bool:
        """Letters go several at a time when the target takes them so (not HTTP targets: one
        bundle per request, split by their own rules) and no subclass replaced their handler."""
        ours = {FHIR_TRANSACTION: self._send_bundle, VALIDATED_TRANSACTION: self._send_validated}
        return (self.batch_size > 1 and callable(getattr(self.target, "send_many", None))
                and all(handlers.get(kind, method) == method for kind, method in ours.items()))

    def run_once(self, limit: int | None = None) -> int:
        """Claim and process what is due now; returns how many entries were processed."""
        handlers = self.handlers()
        batching = self._batching(handlers)
        # A lease shorter than a send (a timeout, a token refresh and a second try) would let
        # another worker take the entry while it is still being sent.
        lease = max(self.settings.push_lease_seconds, 2 * self.settings.push_timeout_seconds)
        held = outbox.claim(
            self.engine,
            lease_seconds=lease,
            limit=limit or (self.batch_size if batching else 4),
            kinds=tuple(handlers),
            now=self.clock(),
        )
        letters = [claim for claim in held if batching and claim.kind in TRANSACTION_KINDS]
        for start in range(0, len(letters), self.batch_size):
            chunk = [c for c in (self._still_held(claim, lease)
                                 for claim in letters[start:start + self.batch_size]) if c]
            self.process_many(chunk)
        for claim in held:
            if batching and claim.kind in TRANSACTION_KINDS:
                continue
            # The entries of one claim share one lease but are sent one after the other: one
            # whose lease ran low while earlier ones were sent gets a fresh lease first, or is
            # left to the worker that took it over (never sent by two workers at once).
            current = self._still_held(claim, lease)
            if current is not None:
                self.process(current, handlers[current.kind])
        return len(held)

    def _still_held(self, held: outbox.Claim, lease: float) -> outbox.Claim | None:
        now = self.clock()
        if (held.lease_until - now).total_seconds() >= lease / 2:
            return held
        return outbox.renew(self.engine, held, lease_seconds=lease, now=now)

    def process(self, held: outbox.Claim, handler: Handler) -> None:
        try:
            result = handler(held.payload_json())
        except Exception as error:
            self._settle(held, error)
        else:
            outbox.mark_delivered(self.engine, held, result)
            metrics.PUSH_DELIVERED.inc()

    def process_many(self, held: list[outbox.Claim]) -> None:
        """Letters sent in one `send_many` call; each entry's outcome is its own (delivered,
        retried or failed), and those delivered are recorded in one write transaction."""
        handlers = self.handlers()
        if len(held) <= 1:
            for claim in held:
                self.process(claim, handlers[claim.kind])
            return
        bundles = [claim.payload_json() for claim in held]
        validated = [claim.kind == VALIDATED_TRANSACTION for claim in held]
        vouched = {"validated": validated} if self._vouch(any(validated)) else {}
        started = time.perf_counter()
        try:
            answers = self.target.send_many(bundles, **vouched)  # type: ignore[attr-defined]
            if len(answers) != len(bundles):
                raise RuntimeError(f"{len(answers)} answers for {len(bundles)} bundles")
        except TargetError as error:  # the whole call failed (e.g. the record database is busy)
            for claim in held:
                self._settle(claim, error)
            return
        except Exception:  # unexpected: each alone, so only the culprit's entry pays for it
            for claim in held:
                self.process(claim, handlers[claim.kind])
            return
        per_bundle = (time.perf_counter() - started) / len(held)
        landed: list[tuple[outbox.Claim, dict[str, Any], list[str]]] = []
        for claim, bundle, answer in zip(held, bundles, answers, strict=True):
            if isinstance(answer, Exception):
                self._settle(claim, answer)
                continue
            metrics.PUSH_SECONDS.observe(per_bundle)
            landed.append((claim, bundle, response_locations(answer)))
        # notifications queued before the entries count as delivered, as for one letter alone
        failures = self._after_push_many([(bundle, locations) for _, bundle, locations in landed])
        delivered: list[tuple[outbox.Claim, dict[str, Any] | None]] = []
        for (claim, _, locations), failure in zip(landed, failures, strict=True):
            if failure is not None:
                self._settle(claim, failure)
            else:
                delivered.append((claim, {"locations": locations}))
        outbox.mark_delivered_many(self.engine, delivered)
        metrics.PUSH_DELIVERED.inc(len(delivered))

    def _after_push_many(self, pushed: list[tuple[dict[str, Any], list[str]]]
                         ) -> list[Exception | None]:
        """`_after_push` of several bundles in one transaction; if that fails, one by one, so
        only the bundle at fault is retried. The failure of each (None: done)."""
        after_push = self._hook
        if after_push is None or not pushed:
            return [None] * len(pushed)
        try:
            with Session(self.engine) as session:
                queued = sum(after_push(session, bundle, locations)
                             for bundle, locations in pushed)
                session.commit()
        except Exception:
            failures: list[Exception | None] = []
            for bundle, locations in pushed:
                try:
                    self._after_push(bundle, locations)
                    failures.append(None)
                except Exception as error:
                    failures.append(error)
            return failures
        if queued:
            notify()  # the notifications just queued are this process's pushers' work
        return [None] * len(pushed)

    def _settle(self, held: outbox.Claim, error: Exception) -> None:
        """What a failed send of `held` leads to: failed (rejected) or retried later."""
        if isinstance(error, TargetRejected):
            self._fail(held, error.status, error.outcome or error.operation_outcome())
        elif isinstance(error, TargetError):
            self._retry_later(held, error)
        else:  # a bug or an unexpected failure: keep the entry, retry later
            # No traceback in the log: an exception message may quote the bundle (patient data);
            # the message is kept with the entry, for `liaison outbox status --failed`.
            logger.error("outbox entry %s: unexpected %s", held.entry_id, type(error).__name__)
            outcome = operation_outcome(f"internal error: {type(error).__name__}: {error}")
            self._retry_later(held, TargetError("internal error", outcome=outcome))

    def _retry_later(self, held: outbox.Claim, error: TargetError) -> None:
        outcome = error.outcome or error.operation_outcome()
        if held.attempts >= self.settings.push_max_attempts:
            self._fail(held, error.status, outcome)
            return
        if error.retry_after is not None:
            # The server knows best when it will be back; a day-long ask is still bounded.
            delay = min(error.retry_after, max(self.settings.push_backoff_max_seconds, 3600.0))
        else:
            delay = backoff_delay(
                held.attempts,
                base=self.settings.push_backoff_base_seconds,
                cap=self.settings.push_backoff_max_seconds,
                rng=self.rng,
            )
        # Only ids and statuses in logs: the target's messages may quote patient data. INFO: a
        # retry is routine, and a long outage must not flood the log with one line per attempt.
        logger.info(
            "outbox entry %s: attempt %s failed (%s), retry in %.2fs",
            held.entry_id,
            held.attempts,
            error.status or type(error).__name__,
            delay,
        )
        outbox.mark_retrying(self.engine, held, delay=delay, status=error.status, outcome=outcome,
                             now=self.clock())
        metrics.PUSH_RETRYING.inc()

    def _fail(self, held: outbox.Claim, status: int | None, outcome: dict[str, Any]) -> None:
        logger.error(
            "outbox entry %s: failed after %s attempt(s) (%s)", held.entry_id, held.attempts, status
        )
        outbox.mark_failed(self.engine, held, status=status, outcome=outcome)
        metrics.PUSH_DEAD.inc()
        given_up = self._on_failure.get(held.kind)
        if given_up is not None:
            try:
                given_up(held.payload_json(), outcome)
            except Exception as error:  # the entry stays failed, for a human; say it once
                logger.error("outbox entry %s: recording its failure failed (%s)",
                             held.entry_id, type(error).__name__)

    def drain(self, timeout: float = 30.0) -> bool:
        """Process until nothing is pending or retrying (True), or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once(limit=16):
                continue
            due = outbox.next_due_in(self.engine, now=self.clock())
            if due is None:
                return True
            time.sleep(
                min(max(due, 0.01), self.poll_seconds, max(0.0, deadline - time.monotonic()))
            )
        return outbox.next_due_in(self.engine, now=self.clock()) is None

    # background threads ----------------------------------------------------------------------

    def start(self) -> Pusher:
        _running.add(self._wake)
        for companion in self.companions:
            companion.start()
        for number in range(self.thread_count):
            thread = threading.Thread(
                target=self._loop, name=f"liaison-pusher-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                processed = self.run_once()
                if processed:
                    if processed < self.batch_size and self._gathers():
                        self._stopping.wait(self.settings.push_gather_seconds)
                    continue
                due = outbox.next_due_in(self.engine, now=self.clock())
            except SQLAlchemyError as error:  # database restarting: wait and go on
                logger.warning("pusher cannot reach the database (%s)", type(error).__name__)
                due = self.poll_seconds
            wait = self.poll_seconds if due is None else min(max(due, 0.01), self.poll_seconds)
            self._wake.wait(wait)
            self._wake.clear()

    def _gathers(self) -> bool:
        """Whether to let letters gather before the next batch. A record transaction has a cost
        of its own whatever its size (locks, grants, the commit writing the last page of every
        index it touched, audit and bookkeeping; on PostgreSQL a round trip each), on the
        pusher's side and on the database's: sending what is there as soon as a batch ends
        makes batches of one at tens of letters a second. A quarter of a second lets a few
        gather (docs/benchmarks.md); a letter arriving alone is sent at once, one arriving
        just after a batch waits at most that long, and under a backlog batches are full and
        nothing waits."""
        return self.settings.push_gather_seconds > 0 and self._batching(self.handlers())

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        _running.discard(self._wake)
        self._threads.clear()
        for companion in self.companions:
            companion.stop(timeout)
        self.target.close()
