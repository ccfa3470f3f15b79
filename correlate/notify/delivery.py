"""Delivery policy: retries with back-off, the attempt log, and fan-out to independent receivers.

``deliver`` tries a receiver up to ``1 + retries`` times. It retries what the receiver marks
retryable (network errors, timeouts, 429, 5xx, SMTP 4xx), waiting
``min(max_backoff, backoff·2^(n-1))·U(0.5, 1)`` after the n-th failure, or the server's
``Retry-After`` (capped at ``max_retry_after``) when it gave one. Anything else (4xx, SMTP 5xx) is
final. Every attempt is returned and appended to the ``AttemptLog``. It never raises: a broken
receiver, or a bug in one, becomes failed attempts, so one receiver never blocks another and a
notice is never lost silently (the log says what failed and why).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from correlate.notify.base import Attempt, IncidentNotice, Receiver, attempt, describe

log = logging.getLogger("warroom.notify")


class AttemptLog:
    """Every delivery attempt, in memory and, with ``path``, appended to a JSON-lines file.

    Thread-safe. A failure to write the file is logged, never raised: losing a log line must not
    turn into losing the notification.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._attempts: list[Attempt] = []
        self._lock = threading.Lock()

    def append(self, item: Attempt) -> None:
        with self._lock:
            self._attempts.append(item)
            if self.path is None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(item.to_json(), separators=(",", ":")) + "\n")
            except OSError as exc:
                log.error("attempt log not written", extra={"path": str(self.path), "error": describe(exc)})

    @property
    def attempts(self) -> list[Attempt]:
        with self._lock:
            return list(self._attempts)

    def __iter__(self) -> Iterator[Attempt]:
        return iter(self.attempts)

    def __len__(self) -> int:
        with self._lock:
            return len(self._attempts)

    @classmethod
    def load(cls, path: str | Path) -> list[Attempt]:
        """Read a JSON-lines attempt log back (skipping a torn last line)."""
        out: list[Attempt] = []
        with Path(path).open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    out.append(Attempt.from_json(json.loads(line)))
                except (ValueError, KeyError):
                    continue
        return out


def _receiver_name(receiver: Receiver) -> str:
    try:
        return str(receiver.name)
    except Exception:  # a broken receiver must still be reported
        return type(receiver).__name__


def deliver(
    receiver: Receiver,
    notice: IncidentNotice,
    *,
    retries: int = 4,
    backoff: float = 0.5,
    max_backoff: float = 10.0,
    max_retry_after: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    log_to: AttemptLog | None = None,
    rng: random.Random | None = None,
) -> list[Attempt]:
    """Deliver ``notice`` through ``receiver``; returns every attempt, the last one decisive."""
    rand = rng or random
    attempts: list[Attempt] = []
    for number in range(1, retries + 2):
        try:
            result = receiver.send(notice)
        except Exception as exc:  # receivers report failures; an exception here is a receiver bug
            result = attempt(
                _receiver_name(receiver), notice, ok=False, error=f"receiver raised {describe(exc)}"
            )
        result = dataclasses.replace(result, attempt_no=number)
        attempts.append(result)
        if log_to is not None:
            log_to.append(result)
        if result.ok or not result.retryable or number > retries:
            break
        if result.retry_after is not None:
            delay = min(result.retry_after, max_retry_after)
        else:
            delay = min(max_backoff, backoff * 2 ** (number - 1)) * rand.uniform(0.5, 1.0)
        log.warning(
            "notification attempt failed, retrying",
            extra={
                "receiver": result.receiver,
                "incident_id": notice.incident_id,
                "attempt_no": number,
                "error": result.error,
                "delay_s": round(delay, 3),
            },
        )
        sleep(delay)
    last = attempts[-1]
    if not last.ok:
        log.error(
            "notification not delivered",
            extra={
                "receiver": last.receiver,
                "incident_id": notice.incident_id,
                "attempts": len(attempts),
                "error": last.error,
            },
        )
    return attempts


def deliver_all(
    receivers: Sequence[Receiver],
    notice: IncidentNotice,
    *,
    log_to: AttemptLog | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retries: int = 4,
    backoff: float = 0.5,
    max_backoff: float = 10.0,
    max_retry_after: float = 60.0,
) -> list[list[Attempt]]:
    """Deliver to every receiver concurrently and independently; attempts per receiver, in order."""
    if not receivers:
        return []

    def one(receiver: Receiver) -> list[Attempt]:
        return deliver(
            receiver,
            notice,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            max_retry_after=max_retry_after,
            sleep=sleep,
            log_to=log_to,
        )

    with ThreadPoolExecutor(max_workers=min(8, len(receivers)), thread_name_prefix="warroom-notify") as pool:
        return list(pool.map(one, receivers))
