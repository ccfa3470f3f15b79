"""Retry with exponential back-off and full jitter, for store outages. Never gives up on its own.

``retry`` re-runs ``action`` while it raises a *retryable* :class:`~warroom.errors.StoreError`,
sleeping ``min(max_delay, base·2^attempt)·U(0.5, 1)`` between tries, and raises :class:`Stopped`
if ``stop`` is set meanwhile. ``on_wait`` is called during sleeps (e.g. to keep a Kafka consumer's
group membership alive) and ``on_retry`` after each failure (logging, counters).

``parse_retry_after`` reads an HTTP ``Retry-After`` header as seconds, for the stages that call
HTTP services (notification receivers, the LLM client) and honour a server's requested delay.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from warroom.errors import StoreError, WarroomError

T = TypeVar("T")


class Stopped(WarroomError):
    """Shutdown was requested while the store was still unavailable."""


def retry(
    action: Callable[[], T],
    stop: threading.Event,
    max_delay: float = 30.0,
    base: float = 0.2,
    on_wait: Callable[[], None] | None = None,
    on_retry: Callable[[int, StoreError, float], None] | None = None,
) -> T:
    attempt = 0
    while True:
        try:
            return action()
        except StoreError as exc:
            if not exc.retryable:
                raise
            attempt += 1
            delay = min(max_delay, base * 2**attempt) * random.uniform(0.5, 1.0)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if stop.is_set():
                    raise Stopped(f"stopped while the store was unavailable: {exc}") from exc
                if on_wait is not None:
                    on_wait()
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    ``None`` when the header is absent, empty or unparseable (including ``NaN``); never negative (a
    date in the past is ``0.0``). Callers cap the result: a server may ask for a very long wait.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None
