"""Flush a batch: ledger entry, idempotent insert with retries, stats. Shared by Kafka and file ingest."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ingest.batcher import Batch
from ingest.ledger import Ledger, token
from ingest.stats import IngestStats
from ingest.writer import NativeWriter, WriteResult
from warroom import failpoints
from warroom.errors import StoreError
from warroom.retry import retry

log = logging.getLogger("warroom.ingest")
T = TypeVar("T")


class Sink:
    def __init__(
        self,
        writer: NativeWriter,
        stats: IngestStats,
        retry_max_seconds: float,
        stop: threading.Event,
        ledger: Ledger | None = None,
        keepalive: Callable[[], None] | None = None,
        token_prefix: str = "",
    ) -> None:
        self.writer = writer
        self.stats = stats
        self.retry_max_seconds = retry_max_seconds
        self.stop = stop
        self.ledger = ledger
        self.keepalive = keepalive
        self.token_prefix = token_prefix

    def flush(self, batch: Batch) -> WriteResult:
        """Insert one batch; retries outages with exponential back-off and jitter, forever.

        Raises :class:`Stopped` if shutdown is requested during an outage: the batch then stays
        uncommitted and is read again by whoever owns the partition next.
        """
        tok = self.token_prefix + token(batch.topic, batch.partition, batch.first, batch.last)
        ledger = self.ledger
        if ledger is not None:
            self.retry(
                lambda: ledger.record(batch.topic, batch.partition, batch.first, batch.last, len(batch.items))
            )
        failpoints.hit("ingest.after_ledger")
        started = time.perf_counter()
        result = self.retry(lambda: self.writer.write(batch.signal, batch.items, tok))
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.stats.batch(
            batch.signal, result.items, result.records, batch.size, result.dead_records, elapsed_ms
        )
        if result.dead_records:
            log.warning(
                "dead-lettered records",
                extra={"topic": batch.topic, "partition": batch.partition, "reasons": result.reasons},
            )
        return result

    def retry(self, action: Callable[[], T]) -> T:
        """Run ``action`` until it succeeds, backing off on store outages (see :mod:`warroom.retry`)."""

        def on_retry(attempt: int, exc: StoreError, delay: float) -> None:
            self.stats.retries += 1
            self.stats.reachable("store", False)
            log.warning(
                "ClickHouse unavailable, retrying",
                extra={"attempt": attempt, "error": str(exc), "delay_s": round(delay, 2)},
            )

        result = retry(action, self.stop, self.retry_max_seconds, on_wait=self.keepalive, on_retry=on_retry)
        self.stats.reachable("store", True)
        return result
