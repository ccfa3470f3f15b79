"""ClickHouse unavailable: the worker retries with back-off, commits nothing, loses nothing."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from ingest.kafka_worker import KafkaIngest
from ingest.otlp_parse import Limits
from ingest.stats import IngestStats
from ingest.writer import NativeWriter
from tests.otlp_builders import sdk_spans
from warroom import schema as s
from warroom.config import load_settings
from warroom.errors import StoreError

pytestmark = pytest.mark.integration


class FlakyWriter(NativeWriter):
    """The real writer, with ClickHouse 'down' until ``healthy`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.healthy = threading.Event()
        self.refused = 0

    def write(self, *args: Any, **kwargs: Any) -> Any:
        if not self.healthy.is_set():
            self.refused += 1
            raise StoreError("Connection refused (simulated outage)", retryable=True)
        return super().write(*args, **kwargs)


def _committed(broker, group: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


def test_outage_then_recovery_commits_only_after_inserts(store: Any, env: dict[str, str], broker) -> None:
    settings = load_settings(
        env={k: v for k, v in env.items() if k.startswith("WARROOM_") and k != "WARROOM_HOME"},
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
        retry_max_seconds=0.5,
    )
    topic = settings.topic_traces
    broker.create_topics([topic, settings.topic_logs, settings.topic_metrics], partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(20):
        producer.send(topic, sdk_spans(f"svc-{i}", traces=5).SerializeToString())
    producer.flush()

    writer = FlakyWriter(store, Limits(), time.time_ns)
    stop = threading.Event()
    worker = KafkaIngest(settings, writer, IngestStats(), stop)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 40
    while writer.refused < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert writer.refused >= 5, "the worker never tried to insert"
    assert _committed(broker, settings.kafka_group_id) == 0, "offsets committed during the outage"
    assert thread.is_alive()

    writer.healthy.set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            int(store.scalar(f"SELECT count() FROM {store.table(s.TRACES)}")) >= 300
            and _committed(broker, settings.kafka_group_id) == 20
        ):
            break
        time.sleep(0.3)
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert store.rows(f"SELECT count(), uniqExact(SpanId) FROM {store.table(s.TRACES)}") == [(300, 300)]
    assert _committed(broker, settings.kafka_group_id) == 20
