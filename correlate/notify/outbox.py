"""The notification outbox: notices queued in the state database, delivered in order, retried until
they get through, every attempt recorded.

Why an outbox rather than :func:`correlate.notify.delivery.deliver`: ``deliver`` retries in memory
for a few seconds, so a receiver that is down for an hour, or a restart, would lose notices. Here
:meth:`Outbox.enqueue` commits one row per (notice, receiver) and returns; delivery happens later,
as often as needed, from whichever process runs the :class:`Dispatcher`.

Conventions:

- A *queue* is the pending rows of one (receiver, incident). Only its oldest row (lowest ``id``,
  i.e. enqueue order) is ever sent, so a receiver sees ``open`` before ``update`` before
  ``resolved``; other queues — other incidents, other receivers — proceed independently.
- A row is *claimed* before sending by moving its ``next_at`` forward by ``lease`` seconds in an
  update that only succeeds if it was still due, so two dispatchers never send the same row at
  once, and a dispatcher that dies mid-send leaves the row to be retried after the lease
  (at-least-once delivery: a receiver may rarely see a notice twice, never zero times).
- Success marks the row ``delivered``. A retryable failure (network, timeout, 429, 5xx, SMTP 4xx,
  a receiver missing from the config) schedules the next try after
  ``min(max_backoff, backoff·2^(n-1))·U(0.5, 1)`` seconds, or the far end's ``Retry-After``
  (capped at ``max_retry_after``), until the row is ``max_age`` old; then it is ``failed``. A final
  failure (4xx, SMTP 5xx) marks it ``failed`` at once and the queue's next row goes ahead.
- Every try is a row in ``notification_attempts``; ``last_error`` on the outbox row repeats the last.
- Sends run on a thread pool; each receiver has at most ``per_receiver`` sends in flight, so a slow
  receiver holds its own threads (each for at most its timeout) and never the others'.

Times are stored in UTC (SQLite keeps them naive, PostgreSQL as ``timestamptz``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from correlate.notify.base import Attempt, IncidentNotice, Receiver, attempt, describe
from correlate.notify.base import now as utcnow
from warroom.errors import InputError, WarroomError
from warroom.statedb import StateDB, UTCDateTime

__all__ = ["ATTEMPTS", "METADATA", "OUTBOX", "Dispatcher", "Outbox", "OutboxItem", "OutboxStatus"]

log = logging.getLogger("warroom.notify")

OutboxStatus = Literal["pending", "delivered", "failed"]


METADATA = sa.MetaData()
"""The outbox's tables; the composition root passes this to :func:`warroom.statedb.migrate`."""

OUTBOX = sa.Table(
    "notification_outbox",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.String(255), nullable=False),
    sa.Column("receiver", sa.String(255), nullable=False),
    sa.Column("notice_status", sa.String(16), nullable=False),
    sa.Column("notice", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_at", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_notification_outbox_queue", "status", "receiver", "incident_id", "id"),
    sa.Index("ix_notification_outbox_incident", "incident_id"),
)

ATTEMPTS = sa.Table(
    "notification_attempts",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("outbox_id", sa.Integer, sa.ForeignKey(OUTBOX.c.id, ondelete="CASCADE"), nullable=True),
    sa.Column("receiver", sa.String(255), nullable=False),
    sa.Column("incident_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("retryable", sa.Boolean, nullable=False, default=False),
    sa.Column("retry_after", sa.Float, nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("attempt_no", sa.Integer, nullable=False),
    sa.Index("ix_notification_attempts_incident", "incident_id", "id"),
)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One queued (notice, receiver) and where its delivery stands."""

    id: int
    receiver: str
    notice: IncidentNotice
    status: OutboxStatus
    attempts: int
    next_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None

    @property
    def incident_id(self) -> str:
        return self.notice.incident_id

    @classmethod
    def _from_row(cls, row: sa.Row[Any]) -> OutboxItem:
        return cls(
            id=row.id,
            receiver=row.receiver,
            notice=IncidentNotice.from_json(json.loads(row.notice)),
            status=row.status,
            attempts=row.attempts,
            next_at=row.next_at,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            last_error=row.last_error,
        )


class Outbox:
    """A durable, ordered notification queue over a :class:`~warroom.statedb.StateDB`.

    ``receivers`` maps the names rows carry to the receivers that deliver them (usually
    ``Router.receivers``). The tables must exist: ``migrate(db, [outbox.METADATA])``. Close it (or use
    it as a context manager) to stop the send threads.
    """

    def __init__(
        self,
        db: StateDB,
        receivers: Mapping[str, Receiver],
        *,
        backoff: float = 0.5,
        max_backoff: float = 300.0,
        max_retry_after: float = 3600.0,
        max_age: float = 24 * 3600.0,
        lease: float = 300.0,
        workers: int = 16,
        per_receiver: int = 4,
        batch: int = 256,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        if lease <= 0 or backoff <= 0 or max_backoff < backoff or workers < 1 or per_receiver < 1:
            raise ValueError("outbox: lease, backoff, workers and per_receiver must be positive")
        self.db = db
        self.receivers = dict(receivers)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.max_age = timedelta(seconds=max_age)
        self.lease = timedelta(seconds=lease)
        self.per_receiver = per_receiver
        self.batch = batch
        self.clock = clock
        self._rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="warroom-outbox")
        self._lock = threading.Lock()
        self._inflight: dict[str, set[int]] = {}  # receiver → outbox ids being sent by this process
        self._listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ producing

    def enqueue(
        self,
        notice: IncidentNotice,
        receiver_names: Iterable[str],
        *,
        now: datetime | None = None,
        conn: Connection | None = None,
    ) -> list[int]:
        """Queue ``notice`` once per receiver (duplicates dropped), in one transaction; the row ids.

        With ``conn``, the rows join the caller's transaction (the incident change that caused the
        notice), so the change and its notices commit together or not at all. Listeners are told
        at once, before that commit: the dispatcher then finds the rows at its next tick, or sooner
        if the caller calls ``Dispatcher.wake()`` after committing.

        An empty ``receiver_names`` (the incident matched no route) queues nothing and logs a
        warning, so an unrouted incident is visible rather than silently dropped.
        """
        names = list(dict.fromkeys(receiver_names))
        unknown = [n for n in names if n not in self.receivers]
        if unknown:
            raise InputError(f"outbox: unknown receiver(s) {', '.join(unknown)}", "unknown_receiver")
        if not names:
            log.warning(
                "notification not routed: no route matched and there is no catch-all",
                extra={"incident_id": notice.incident_id, "notice_status": notice.status},
            )
            return []
        at = now or self.clock()
        body = json.dumps(notice.to_json(), separators=(",", ":"), sort_keys=True)
        ids: list[int] = []
        with self.db.begin() if conn is None else nullcontext(conn) as tx:
            for name in names:
                result = tx.execute(
                    sa.insert(OUTBOX).values(
                        incident_id=notice.incident_id,
                        receiver=name,
                        notice_status=notice.status,
                        notice=body,
                        status="pending",
                        attempts=0,
                        next_at=at,
                        created_at=at,
                    )
                )
                key = result.inserted_primary_key
                assert key is not None  # an INSERT of one row into a table with a primary key
                ids.append(int(key[0]))
        self._notify_listeners()
        return ids

    # ------------------------------------------------------------------ delivering

    def dispatch_once(self, now: datetime | None = None) -> list[Attempt]:
        """Send every due queue head once and wait for the results; the attempts made, in order."""
        futures = self.submit_due(now)
        wait(futures)
        return [f.result() for f in futures]

    def submit_due(self, now: datetime | None = None) -> list[Future[Attempt]]:
        """Claim the due queue heads and start sending them; futures of their attempts.

        Each future records its own result, so a slow send delays nobody who does not wait for it.
        """
        at = now or self.clock()
        claimed = self._claim(at)
        futures = []
        for item in claimed:
            future = self._pool.submit(self._deliver, item, now)
            future.add_done_callback(lambda _f: self._notify_listeners())
            futures.append(future)
        return futures

    def next_due(self) -> datetime | None:
        """When the earliest pending row is due (``None`` when nothing is pending)."""
        with self.db.begin() as conn:
            due: datetime | None = conn.execute(
                sa.select(sa.func.min(OUTBOX.c.next_at)).where(OUTBOX.c.status == "pending")
            ).scalar()
        return due

    def _claim(self, at: datetime) -> list[OutboxItem]:
        heads = (
            sa.select(sa.func.min(OUTBOX.c.id).label("id"))
            .where(OUTBOX.c.status == "pending")
            .group_by(OUTBOX.c.receiver, OUTBOX.c.incident_id)
            .subquery()
        )
        query = (
            sa.select(OUTBOX)
            .join(heads, OUTBOX.c.id == heads.c.id)
            .where(OUTBOX.c.next_at <= at)
            .order_by(OUTBOX.c.next_at, OUTBOX.c.id)
            .limit(self.batch)
        )
        with self.db.begin() as conn:
            rows = conn.execute(query).all()
        claimed: list[OutboxItem] = []
        for row in rows:
            with self._lock:
                busy = self._inflight.setdefault(row.receiver, set())
                if row.id in busy or len(busy) >= self.per_receiver:
                    continue
                busy.add(row.id)
            # One short write transaction per claim: SQLite cannot upgrade a read snapshot that a
            # concurrent send's commit has overtaken, and the WHERE makes the claim exclusive.
            try:
                with self.db.begin() as conn:
                    won = conn.execute(
                        sa.update(OUTBOX)
                        .where(OUTBOX.c.id == row.id, OUTBOX.c.status == "pending", OUTBOX.c.next_at <= at)
                        .values(next_at=at + self.lease)
                    ).rowcount
            except BaseException:
                self._release(row.receiver, row.id)
                raise
            if won == 1:
                claimed.append(OutboxItem._from_row(row))
            else:  # another dispatcher took it
                self._release(row.receiver, row.id)
        return claimed

    def _release(self, receiver: str, item_id: int) -> None:
        with self._lock:
            self._inflight.get(receiver, set()).discard(item_id)

    def _deliver(self, item: OutboxItem, now: datetime | None) -> Attempt:
        try:
            result = self._send(item)
            self._record(item, result, now)
            return result
        finally:
            self._release(item.receiver, item.id)

    def _send(self, item: OutboxItem) -> Attempt:
        number = item.attempts + 1
        receiver = self.receivers.get(item.receiver)
        if receiver is None:  # removed from the config since it was queued: keep it until max_age
            result = attempt(
                item.receiver, item.notice, ok=False, error="receiver is not configured", retryable=True
            )
        else:
            try:
                result = receiver.send(item.notice)
            except Exception as exc:  # receivers report failures; an exception here is a receiver bug
                result = attempt(
                    item.receiver, item.notice, ok=False, error=f"receiver raised {describe(exc)}"
                )
        return dataclasses.replace(result, receiver=item.receiver, attempt_no=number)

    def _record(self, item: OutboxItem, result: Attempt, now: datetime | None) -> None:
        at = now or self.clock()
        changes: dict[str, Any] = {"attempts": result.attempt_no, "last_error": result.error}
        if result.ok:
            changes.update(status="delivered", delivered_at=at, next_at=at)
        elif result.retryable and at - item.created_at < self.max_age:
            changes.update(next_at=at + timedelta(seconds=self._delay(result)))
        else:
            changes.update(status="failed", next_at=at)
        try:
            with self.db.begin() as conn:
                conn.execute(
                    sa.insert(ATTEMPTS).values(
                        outbox_id=item.id,
                        receiver=result.receiver,
                        incident_id=item.incident_id,
                        status=item.notice.status,
                        ok=result.ok,
                        http_status=result.http_status,
                        error=result.error,
                        retryable=result.retryable,
                        retry_after=result.retry_after,
                        at=result.at,
                        attempt_no=result.attempt_no,
                    )
                )
                conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == item.id).values(**changes))
        except WarroomError as exc:
            # The row keeps its lease and is sent again when it runs out: at-least-once, never lost.
            log.error(
                "notification outcome not recorded; will resend after the lease",
                extra={"receiver": item.receiver, "incident_id": item.incident_id, "error": describe(exc)},
            )
            return
        fields = {
            "receiver": item.receiver,
            "incident_id": item.incident_id,
            "notice_status": item.notice.status,
            "attempt_no": result.attempt_no,
            "error": result.error,
        }
        if changes.get("status") == "failed":
            log.error("notification failed", extra=fields)
        elif not result.ok:
            log.warning(
                "notification attempt failed, will retry",
                extra={**fields, "next_at": str(changes["next_at"])},
            )

    def _delay(self, result: Attempt) -> float:
        if result.retry_after is not None:
            return min(result.retry_after, self.max_retry_after)
        nominal = min(self.max_backoff, self.backoff * 2 ** (result.attempt_no - 1))
        return nominal * self._rng.uniform(0.5, 1.0)

    # ------------------------------------------------------------------ reading

    def attempts(self, incident_id: str | None = None, *, receiver: str | None = None) -> list[Attempt]:
        """Recorded attempts, oldest first, optionally of one incident and/or receiver."""
        query = sa.select(ATTEMPTS).order_by(ATTEMPTS.c.id)
        if incident_id is not None:
            query = query.where(ATTEMPTS.c.incident_id == incident_id)
        if receiver is not None:
            query = query.where(ATTEMPTS.c.receiver == receiver)
        with self.db.begin() as conn:
            rows = conn.execute(query).all()
        return [
            Attempt(
                receiver=r.receiver,
                incident_id=r.incident_id,
                status=r.status,
                ok=r.ok,
                http_status=r.http_status,
                error=r.error,
                at=r.at,
                attempt_no=r.attempt_no,
                retryable=r.retryable,
                retry_after=r.retry_after,
            )
            for r in rows
        ]

    def items(
        self,
        status: OutboxStatus | None = None,
        *,
        incident_id: str | None = None,
        receiver: str | None = None,
    ) -> list[OutboxItem]:
        """Outbox rows in enqueue order, filtered by delivery status, incident and receiver."""
        query = sa.select(OUTBOX).order_by(OUTBOX.c.id)
        if status is not None:
            query = query.where(OUTBOX.c.status == status)
        if incident_id is not None:
            query = query.where(OUTBOX.c.incident_id == incident_id)
        if receiver is not None:
            query = query.where(OUTBOX.c.receiver == receiver)
        with self.db.begin() as conn:
            return [OutboxItem._from_row(r) for r in conn.execute(query).all()]

    def pending(self, receiver: str | None = None) -> list[OutboxItem]:
        """Rows still to deliver, in enqueue order."""
        return self.items("pending", receiver=receiver)

    def requeue(self, ids: Sequence[int], *, now: datetime | None = None) -> int:
        """Put ``failed`` rows back in their queues, due now (an operator's retry); how many moved."""
        at = now or self.clock()
        with self.db.begin() as conn:
            moved = conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id.in_(list(ids)), OUTBOX.c.status == "failed")
                .values(status="pending", next_at=at, created_at=at)
            ).rowcount
        self._notify_listeners()
        return int(moved)

    # ------------------------------------------------------------------ lifecycle

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after an enqueue and after each send (the dispatcher wakes on it)."""
        with self._lock:
            self._listeners.append(callback)

    def _notify_listeners(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def close(self) -> None:
        """Wait for sends in flight (each bounded by its receiver's timeout) and stop the threads."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Dispatcher:
    """Delivers the outbox in the background: a thread submitting due rows every ``interval`` s,
    sooner on :meth:`wake` (called for it after every enqueue and every finished send).

    A failing state database is logged and retried at the next tick; the thread never dies of it.
    """

    def __init__(self, outbox: Outbox, interval: float = 1.0) -> None:
        self.outbox = outbox
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        outbox.add_listener(self.wake)

    def start(self) -> Dispatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="warroom-dispatcher", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """Dispatch promptly rather than at the next tick."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (sends in flight finish in the outbox's pool)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending (True), or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self.outbox.pending():
                    return True
            except WarroomError as exc:
                log.warning("outbox not readable while draining", extra={"error": describe(exc)})
            if time.monotonic() >= deadline:
                return False
            self.wake()
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            pause = self.interval
            try:
                started = self.outbox.submit_due()
                due = self.outbox.next_due()
                if due is not None:
                    until = (due - self.outbox.clock()).total_seconds()
                    # Due but not started means the receivers are at their in-flight cap: a
                    # finishing send wakes us, so do not spin.
                    if until > 0 or started:
                        pause = min(pause, max(0.0, until))
            except WarroomError as exc:
                log.error("notification dispatch failed", extra={"error": describe(exc)})
            except Exception:  # a bug here must not silently stop every notification
                log.exception("notification dispatch crashed; continuing")
            self._wake.wait(pause)

    def __enter__(self) -> Dispatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
