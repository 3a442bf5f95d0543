"""Prometheus metrics of ingestion and push (served at `/metrics` by `adapter.api.metrics`).

Counters count events since the process started; the outbox gauge is read from the database at
each scrape, so it is right across restarts and across several worker processes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LETTERS_ACCEPTED = Counter("liaison_letters_accepted", "Discharge letters accepted (202)")
LETTERS_DUPLICATE = Counter(
    "liaison_letters_duplicate", "Letters posted again, answered with the existing receipt"
)
LETTERS_REFUSED = Counter(
    "liaison_letters_refused", "Discharge letters refused, by HTTP status", ["status"]
)
PUSH_DELIVERED = Counter("liaison_push_delivered", "Outbox entries delivered to the target")
PUSH_RETRYING = Counter("liaison_push_retries", "Push attempts that will be retried")
PUSH_DEAD = Counter("liaison_push_dead", "Outbox entries parked as failed (dead letters)")
PUSH_SECONDS = Histogram(
    "liaison_push_seconds",
    "Time to send one bundle to the target",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTBOX_ENTRIES = Gauge("liaison_outbox_entries", "Outbox entries by status", ["status"])
