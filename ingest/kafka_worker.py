"""``warroom ingest kafka``: a consumer-group member that stores OTLP records in ClickHouse.

One Kafka record is one Export*ServiceRequest (the Collector's Kafka exporter, ``otlp_proto`` or
``otlp_json`` per topic). Offsets are committed only after ClickHouse acknowledged the batch's
insert, and batch boundaries follow the ledger (:mod:`ingest.ledger`) after a crash or rebalance,
so delivery is exactly once in ClickHouse. A record that cannot be decoded goes to the dead
letters and the worker moves on; an unavailable ClickHouse pauses consumption (still heartbeating)
and is retried with back-off; SIGTERM flushes, commits and exits 0.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Any

from ingest.batcher import Batch, Limits, PartitionBuffer
from ingest.ledger import Ledger
from ingest.sink import Sink
from ingest.stats import IngestStats
from ingest.writer import NativeWriter, Record
from warroom import failpoints
from warroom.config import Settings
from warroom.errors import BrokerError
from warroom.retry import Stopped

log = logging.getLogger("warroom.ingest")


class KafkaIngest:
    def __init__(
        self, settings: Settings, writer: NativeWriter, stats: IngestStats, stop: threading.Event
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.stats = stats
        self.stop = stop
        self.worker = f"{socket.gethostname()}:{id(self):x}"
        self.ledger = Ledger(writer.store, self.worker)
        self.routes = {topic: (signal, enc) for signal, (topic, enc) in settings.topics().items()}
        self.limits = Limits(settings.batch_max_rows, settings.batch_max_bytes, settings.batch_max_seconds)
        self.buffers: dict[Any, PartitionBuffer] = {}
        self.events: queue.Queue[tuple[str, set[Any]]] = queue.Queue()
        self.consumer: Any = None
        # The inserter thread owns this sink; the consumer itself is only ever touched by the main
        # thread (kafka-python is not thread-safe), which keeps polling while inserts run.
        self.sink = Sink(writer, stats, settings.retry_max_seconds, stop, self.ledger)
        self.lookup = Sink(writer, stats, settings.retry_max_seconds, stop, keepalive=self._keepalive)
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self.inserted: queue.Queue[tuple[str, int, int]] = queue.Queue()
        self.failure: BaseException | None = None

    # -- consumer ------------------------------------------------------------------------------

    def _connect(self) -> Any:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        try:
            return KafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap.split(","),
                group_id=self.settings.kafka_group_id,
                client_id=f"warroom-ingest-{self.worker}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.settings.kafka_max_poll_records,
                max_poll_interval_ms=self.settings.kafka_max_poll_interval_ms,
                session_timeout_ms=self.settings.kafka_max_poll_interval_ms,
                heartbeat_interval_ms=max(1000, self.settings.kafka_max_poll_interval_ms // 4),
                max_partition_fetch_bytes=max(1 << 20, self.settings.batch_max_bytes // 4),
                fetch_max_bytes=max(1 << 20, self.settings.batch_max_bytes),
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot reach Kafka at {self.settings.kafka_bootstrap}: {exc}") from exc

    def _keepalive(self) -> None:
        """While ClickHouse is down: stay in the group without fetching (partitions are paused)."""
        consumer = self.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        if assigned:
            consumer.pause(*assigned)
            consumer.poll(timeout_ms=0)
            consumer.resume(*assigned)

    def _apply_rebalance_events(self) -> None:
        """Apply what the rebalance listener queued (it runs on kafka-python's IO thread and must
        not block, so the main thread does the work).

        A revoked partition's buffered records are dropped, not flushed: they are uncommitted, so
        the new owner reads them again, and any range already in the ledger is replayed with the
        same token. An assigned partition gets its buffer when its first records arrive.
        """
        while True:
            try:
                kind, partitions = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "revoked":
                for tp in partitions:
                    self.buffers.pop(tp, None)

    def _buffer_for(self, tp: Any, first_offset: int) -> PartitionBuffer:
        buffer = self.buffers.get(tp)
        if buffer is None:
            signal, _ = self.routes[tp.topic]
            forced = self.lookup.retry(lambda: self.ledger.pending(tp.topic, tp.partition, first_offset))
            buffer = PartitionBuffer(tp.topic, tp.partition, signal, self.limits, list(forced))
            self.buffers[tp] = buffer
            if forced:
                log.info("replaying ledger ranges", extra={"partition": str(tp), "ranges": len(forced)})
        return buffer

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> None:
        from kafka import ConsumerRebalanceListener

        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                worker.events.put(("revoked", set(revoked)))

            def on_partitions_assigned(self, assigned: Any) -> None:
                worker.events.put(("assigned", set(assigned)))

        self.consumer = self._connect()
        self.consumer.subscribe(sorted(self.routes), listener=Listener())
        inserter = threading.Thread(target=self._insert_loop, name="ingest-inserter", daemon=True)
        inserter.start()
        self.stats.state = "running"
        last_status = 0.0
        try:
            while not self.stop.is_set():
                polled = self.consumer.poll(timeout_ms=100)
                self._apply_rebalance_events()
                self._commit_inserted()
                for tp, messages in polled.items():
                    self._consume(tp, messages)
                now = time.monotonic()
                for buffer in list(self.buffers.values()):
                    batch = buffer.due(now)
                    if batch is not None:
                        self._flush(batch)
                if now - last_status > 2.0:
                    self._update_lag()
                    self.stats.write_status()
                    last_status = now
            self._shutdown(inserter)
        except Stopped:
            log.warning("stopping while ClickHouse is unavailable: uncommitted records will be re-read")
        finally:
            self.stop.set()
            self._put(None, wait=False)
            inserter.join(timeout=30)
            self.stats.state = "stopped"
            self.stats.write_status()
            self.consumer.close(autocommit=False)

    def _consume(self, tp: Any, messages: list[Any]) -> None:
        if not messages or tp not in self.consumer.assignment():
            return
        self.stats.consuming()
        buffer = self._buffer_for(tp, messages[0].offset)
        signal, encoding = self.routes[tp.topic]
        for message in messages:
            record = Record(
                signal, encoding, message.value or b"", "kafka", tp.topic, tp.partition, message.offset
            )
            for batch in buffer.add(self.writer.prepare(record)):
                self._flush(batch)

    def _flush(self, batch: Batch) -> None:
        """Hand a complete batch to the inserter; blocks (still heartbeating) while two are queued."""
        self._apply_rebalance_events()
        self._put(batch, wait=True)

    def _put(self, batch: Batch | None, wait: bool) -> None:
        while True:
            if wait:
                self._raise_if_failed()
            try:
                self.queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                if not wait:
                    return
                self._keepalive()
                self._commit_inserted()

    def _insert_loop(self) -> None:
        """Insert batches in order (ledger, idempotent insert, retries), reporting what is stored.

        Running inserts beside the consumer overlaps ClickHouse's work with fetching and framing the
        next records; per-partition order is kept because there is one inserter and one queue.
        """
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            try:
                self.sink.flush(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which stops
                self.failure = exc
                return
            failpoints.hit("ingest.after_insert")
            self.inserted.put((batch.topic, batch.partition, batch.last))

    def _raise_if_failed(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _commit_inserted(self) -> None:
        """Commit the offsets of every batch ClickHouse has acknowledged (never before)."""
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        offsets: dict[Any, Any] = {}
        while True:
            try:
                topic, partition, last = self.inserted.get_nowait()
            except queue.Empty:
                break
            offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(last + 1, "", -1)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            # Rebalanced away: the rows are in ClickHouse under the batch's token; the new owner
            # replays the ledger range and the copy is dropped.
            log.warning("offset commit failed", extra={"partitions": len(offsets), "error": str(exc)})

    def _shutdown(self, inserter: threading.Thread) -> None:
        for buffer in list(self.buffers.values()):
            batch = buffer.drain()
            if batch is not None:
                self._flush(batch)
        self._put(None, wait=True)
        while inserter.is_alive():
            self._keepalive()
            self._commit_inserted()
            inserter.join(timeout=0.1)
        self._raise_if_failed()
        self._commit_inserted()
        log.info("ingest stopped cleanly", extra=self.stats.snapshot()["items"])

    def _update_lag(self) -> None:
        lag: dict[str, int] = {}
        for tp in list(self.buffers):
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = self.consumer.position(tp, timeout_ms=100)
            except Exception:  # noqa: BLE001 - lag is best effort
                continue
            if position is not None:
                lag[f"{tp.topic}/{tp.partition}"] = max(0, high - position)
        self.stats.set_lag(lag)
