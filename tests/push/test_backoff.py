"""Retry delays: exponential with jitter, capped, and the target's Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from adapter.push.backoff import backoff_delay, parse_retry_after


def test_backoff_doubles_within_jittered_bounds_and_is_capped() -> None:
    rng = random.Random(7)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (20, 60.0)]:
        delays = [backoff_delay(attempts, base=1.0, cap=60.0, rng=rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jitter: entries failing together do not return together


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now)
        == 90.0
    )
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_retry_after_of_non_ascii_digits_is_ignored_not_an_error() -> None:
    # str.isdigit() is true for "¹" or "٣", which float() refuses or reads as another number
    assert parse_retry_after("¹") is None
    assert parse_retry_after("٣") is None
    assert parse_retry_after(" 7 ") == 7.0
