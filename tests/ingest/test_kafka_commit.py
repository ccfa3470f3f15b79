"""Offset commits of the Kafka worker while the broker is away: kept, retried with back-off, never
allowed to freeze the loop (found by the broker-restart drill in
``tests/integration/test_fault_drills_ingest.py``).

The consumer is a stand-in: what is checked is what the worker asks of it, not Kafka."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from kafka.errors import KafkaTimeoutError
from kafka.structs import TopicPartition

from ingest.kafka_worker import COMMIT_TIMEOUT_MS, KafkaIngest
from ingest.stats import IngestStats
from warroom.config import load_settings


class Consumer:
    """Fails the first ``failures`` commits, as a consumer whose broker is restarting does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[dict[Any, int], int | None]] = []
        self.committed: dict[Any, int] = {}

    def commit(self, offsets: dict[Any, Any], timeout_ms: int | None = None) -> None:
        self.calls.append(({tp: meta.offset for tp, meta in offsets.items()}, timeout_ms))
        if self.failures:
            self.failures -= 1
            raise KafkaTimeoutError()
        self.committed.update({tp: meta.offset for tp, meta in offsets.items()})


def _worker(consumer: Consumer) -> KafkaIngest:
    writer: Any = SimpleNamespace(store=None)  # never asked to write here
    worker = KafkaIngest(load_settings(env={}), writer, IngestStats(), threading.Event())
    worker.consumer = consumer
    return worker


def test_a_failed_commit_is_kept_and_retried_after_a_back_off() -> None:
    consumer = Consumer(failures=1)
    worker = _worker(consumer)
    worker.inserted.put(("spans", 0, 9))
    worker._commit_inserted()
    assert consumer.calls == [({TopicPartition("spans", 0): 10}, COMMIT_TIMEOUT_MS)]  # bounded try
    worker.inserted.put(("spans", 1, 4))
    worker._commit_inserted()
    assert len(consumer.calls) == 1, "retried before its back-off"
    worker.commit_after = 0.0  # the back-off is over
    worker.inserted.put(("spans", 0, 19))
    worker._commit_inserted()
    assert consumer.committed == {TopicPartition("spans", 0): 20, TopicPartition("spans", 1): 5}
    assert not worker.uncommitted and worker.commit_failures == 0


def test_shutdown_commits_without_waiting_out_the_back_off() -> None:
    consumer = Consumer(failures=1)
    worker = _worker(consumer)
    worker.inserted.put(("spans", 0, 9))
    worker._commit_inserted()
    worker._commit_inserted(force=True)
    assert consumer.committed == {TopicPartition("spans", 0): 10}


def test_a_revoked_partition_is_not_committed_again() -> None:
    consumer = Consumer(failures=1)
    worker = _worker(consumer)
    worker.inserted.put(("spans", 0, 9))
    worker.inserted.put(("spans", 1, 9))
    worker._commit_inserted()
    worker.events.put(("revoked", {TopicPartition("spans", 0)}))
    worker._apply_rebalance_events()
    worker._commit_inserted(force=True)
    assert consumer.committed == {TopicPartition("spans", 1): 10}
