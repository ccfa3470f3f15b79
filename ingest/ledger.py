"""The ingest ledger: which offset ranges were (possibly) inserted but maybe not committed.

Protocol per batch of one topic-partition, offsets ``first..last``:

1. append ``(topic, partition, first, last)`` to ``warroom_ingest_ledger``;
2. insert the rows with ``insert_deduplication_token = topic:partition:first-last``;
3. commit offset ``last + 1`` to Kafka.

A crash between any two steps leaves Kafka's committed offset at or before ``first``. The worker
that next owns the partition reads the ledger ranges at or after the committed offset and cuts its
batches at exactly those boundaries, so each replayed batch carries the same token and ClickHouse
drops the copy it already holds. That is what makes at-least-once delivery land exactly once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from warroom import schema as s
from warroom.clickhouse import ClickHouse

LEDGER_COLUMNS = ("Topic", "Partition", "FirstOffset", "LastOffset", "Records", "Worker", "Time")


@dataclass(frozen=True, slots=True, order=True)
class Range:
    first: int
    last: int


def token(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}:{partition}:{first}-{last}"


class Ledger:
    def __init__(self, store: ClickHouse, worker: str) -> None:
        self.store = store
        self.worker = worker

    def record(self, topic: str, partition: int, first: int, last: int, records: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        self.store.insert(
            s.LEDGER,
            LEDGER_COLUMNS,
            [[topic], [partition], [first], [last], [records], [self.worker], [now_ms]],
        )

    def pending(self, topic: str, partition: int, committed: int) -> list[Range]:
        """Ranges starting at or after the committed offset, oldest first, overlaps removed."""
        rows = self.store.rows(
            f"SELECT DISTINCT FirstOffset, LastOffset FROM {self.store.table(s.LEDGER)} "
            "WHERE Topic = {t:String} AND Partition = {p:Int32} AND FirstOffset >= {c:Int64} "
            "ORDER BY FirstOffset, LastOffset",
            {"t": topic, "p": partition, "c": committed},
        )
        ranges: list[Range] = []
        for first, last in rows:
            # A range written twice (a retry) or overlapping a longer one: keep the first seen.
            if ranges and first <= ranges[-1].last:
                continue
            ranges.append(Range(int(first), int(last)))
        return ranges
