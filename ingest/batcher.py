"""Per-partition batches, cut by count, bytes and age — or at boundaries the ledger dictates.

Batches never mix partitions: a batch is one contiguous offset range of one topic-partition, so
its deduplication token (``topic:partition:first-last``) identifies its content exactly and a
replay after a crash or rebalance can reproduce it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ingest.ledger import Range
from ingest.writer import Prepared


@dataclass(frozen=True, slots=True)
class Limits:
    max_items: int
    max_bytes: int
    max_seconds: float


@dataclass(slots=True)
class Batch:
    topic: str
    partition: int
    signal: str
    items: list[Prepared] = field(default_factory=list)
    first: int = -1
    last: int = -1
    count: int = 0  # spans / log records / points
    size: int = 0
    started: float = 0.0

    def add(self, prepared: Prepared) -> None:
        if not self.items:
            self.first = prepared.record.offset
            self.started = time.monotonic()
        self.items.append(prepared)
        self.last = prepared.record.offset
        self.count += prepared.items
        self.size += len(prepared.record.payload)


class PartitionBuffer:
    """Accumulates one partition's records and hands out complete batches."""

    def __init__(self, topic: str, partition: int, signal: str, limits: Limits, forced: list[Range]) -> None:
        self.topic = topic
        self.partition = partition
        self.signal = signal
        self.limits = limits
        self.forced = sorted(forced)
        self.current = Batch(topic, partition, signal)

    def add(self, prepared: Prepared) -> list[Batch]:
        """Add a record (in offset order); return the batches that became complete."""
        done: list[Batch] = []
        offset = prepared.record.offset
        while self.forced and self.forced[0].last < offset:
            self.forced.pop(0)  # records of that range are gone (already consumed elsewhere)
        if self.forced and offset == self.forced[0].first and self.current.items:
            done.append(self._cut())
        self.current.add(prepared)
        if self._in_forced(self.current.first):
            if offset >= self.forced[0].last:
                self.forced.pop(0)
                done.append(self._cut())
            return done
        if self.forced and offset + 1 == self.forced[0].first:
            done.append(self._cut())
        elif self.current.count >= self.limits.max_items or self.current.size >= self.limits.max_bytes:
            done.append(self._cut())
        return done

    def due(self, now: float) -> Batch | None:
        """The current batch if it is older than ``max_seconds`` (never cuts a ledger range short)."""
        batch = self.current
        if not batch.items or now - batch.started < self.limits.max_seconds:
            return None
        if self._in_forced(batch.first):
            return None
        return self._cut()

    def drain(self) -> Batch | None:
        """Whatever is buffered (shutdown or revocation).

        A partial ledger range is *not* returned: inserting it under another token would defeat
        deduplication, so it is left uncommitted for the next owner to replay whole.
        """
        if not self.current.items or self._in_forced(self.current.first):
            return None
        return self._cut()

    def _in_forced(self, offset: int) -> bool:
        return bool(self.forced) and self.forced[0].first <= offset <= self.forced[0].last

    def _cut(self) -> Batch:
        batch = self.current
        self.current = Batch(self.topic, self.partition, self.signal)
        return batch
