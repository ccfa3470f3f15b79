"""``warroom ingest kafka``: a consumer-group member that stores OTLP records in ClickHouse.

One Kafka record is one Export*ServiceRequest (the Collector's Kafka exporter, ``otlp_proto`` or
``otlp_json`` per topic). Offsets are committed only after ClickHouse acknowledged the batch's
insert, and batch boundaries follow the ledger (:mod:`ingest.ledger`) after a crash or rebalance,
so delivery is exactly once in ClickHouse. A record that cannot be decoded goes to the dead
letters and the worker moves on; an unavailable ClickHouse pauses consumption (still heartbeating)
and is retried with back-off; an unreachable broker is waited out (kafka-python reconnects, failed
offset commits are retried with back-off); SIGTERM flushes, commits and exits 0.
"""

from __future__ import annotations

import logging
import queue
import random
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

COMMIT_TIMEOUT_MS = 2000
"""How long one offset commit may take (one normally takes milliseconds)."""
COMMIT_BACKOFF_MAX_S = 10.0
"""The longest wait between tries of a failed commit."""


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
        # Partitions whose buffer was dropped at a revocation: their next records must start at the
        # group's committed offset (see _restart_at_committed).
        self.restart: set[Any] = set()
        # Revocations per partition, and the count each flushed batch was cut under: an acknowledged
        # batch is committed only if its partition was not revoked since (see _commit_inserted).
        self.revocations: dict[Any, int] = {}
        self.flushed_under: dict[tuple[str, int, int], int] = {}
        self.events: queue.Queue[tuple[str, set[Any]]] = queue.Queue()
        self.consumer: Any = None
        # The inserter thread owns this sink; the consumer itself is only ever touched by the main
        # thread (kafka-python is not thread-safe), which keeps polling while inserts run.
        self.sink = Sink(writer, stats, settings.retry_max_seconds, stop, self.ledger)
        self.lookup = Sink(writer, stats, settings.retry_max_seconds, stop, keepalive=self._keepalive)
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self.inserted: queue.Queue[tuple[str, int, int]] = queue.Queue()
        self.failure: BaseException | None = None
        self._last_status = 0.0
        # Acknowledged by ClickHouse, not yet committed to Kafka (a commit failed): retried.
        self.uncommitted: dict[Any, Any] = {}
        self.commit_failures = 0
        self.commit_after = 0.0

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
        self._report()

    def _report(self) -> None:
        """Refresh the lag and the status file every 2 s — from the main loop, and from the waits
        of an outage too, so that the status says ``retrying`` while it lasts instead of going stale
        at the last figure before it (the main thread then waits in :meth:`_put` or a lookup)."""
        now = time.monotonic()
        if now - self._last_status > 2.0:
            self._update_lag()
            self.stats.write_status()
            self._last_status = now

    def _apply_rebalance_events(self) -> None:
        """Apply what the rebalance listener queued (it runs on kafka-python's IO thread and must
        not block, so the main thread does the work).

        A revoked partition's buffered records are dropped, not flushed: they are uncommitted, so
        the new owner reads them again, and any range already in the ledger is replayed with the
        same token. An assigned partition gets its buffer when its first records arrive. Both are
        logged (kafka-python's own INFO lines are silenced): a rebalance is then visible in the logs.
        """
        while True:
            try:
                kind, partitions = self.events.get_nowait()
            except queue.Empty:
                return
            names = sorted(f"{tp.topic}/{tp.partition}" for tp in partitions)
            log.info("partitions %s", kind, extra={"partitions": names})
            if kind == "revoked":
                for tp in partitions:
                    self.revocations[tp] = self.revocations.get(tp, 0) + 1
                    self.uncommitted.pop(tp, None)
                    # This member may get the partition back at its old fetch position (kafka-python
                    # keeps it), past the dropped records: it must restart at the committed offset.
                    if self.buffers.pop(tp, None) is not None:
                        self.restart.add(tp)

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
                worker._await_inserts(worker.settings.kafka_max_poll_interval_ms / 2000)

            def on_partitions_assigned(self, assigned: Any) -> None:
                worker.events.put(("assigned", set(assigned)))

        self.consumer = self._connect()
        self.consumer.subscribe(sorted(self.routes), listener=Listener())
        inserter = threading.Thread(target=self._insert_loop, name="ingest-inserter", daemon=True)
        inserter.start()
        self.stats.state = "running"
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
                self._report()
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
        if tp in self.restart and self._restart_at_committed(tp, messages[0].offset):
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

    def _restart_at_committed(self, tp: Any, first_offset: int) -> bool:
        """Seek back to the committed offset if these records start after it; True if it did.

        Without this, the records dropped with a revoked buffer were skipped when the partition came
        back to this member at its old position, and committing its later batches lost them (found
        by the multi-process scale-out test). Checked once per revocation, so a committed offset in
        a gap of the log (compaction, transaction markers) cannot make it seek again and again.
        """
        from kafka.errors import KafkaError

        try:
            committed = self.consumer.committed(tp)
            start = committed if committed is not None else self.consumer.beginning_offsets([tp])[tp]
        except KafkaError as exc:
            log.warning("cannot read the committed offset", extra={"partition": str(tp), "error": str(exc)})
            start = first_offset  # fetch these records again, and ask again then
        else:
            self.restart.discard(tp)
        if first_offset <= start and tp not in self.restart:
            return False
        try:
            self.consumer.seek(tp, start)
        except ValueError:  # no longer assigned: its next owner starts at the committed offset
            self.restart.discard(tp)
        log.info("restarting at the committed offset", extra={"partition": str(tp), "offset": start})
        return True

    def _flush(self, batch: Batch) -> None:
        """Hand a complete batch to the inserter; blocks (still heartbeating) while two are queued."""
        self._apply_rebalance_events()
        from kafka.structs import TopicPartition

        tp = TopicPartition(batch.topic, batch.partition)
        self.flushed_under[(batch.topic, batch.partition, batch.last)] = self.revocations.get(tp, 0)
        self._put(batch, wait=True)

    def _await_inserts(self, timeout: float) -> None:
        """Let the inserter finish the batches already handed to it (at most ``timeout`` seconds).

        Called when partitions are revoked, before this member rejoins the group: the ledger then
        holds every range this member may have inserted before any next owner — or this member,
        given the partition back — reads the ledger, so the replay cuts the same batches with the
        same tokens. Without the wait, a range written a moment after the next owner looked was
        stored twice under different tokens (found by the multi-process scale-out test).
        """
        deadline = time.monotonic() + timeout
        with self.queue.all_tasks_done:
            # Stopping: the shutdown drains the inserter itself (and a sentinel may stay queued).
            while self.queue.unfinished_tasks and self.failure is None and not self.stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("rejoining with inserts still running", extra={"timeout_s": timeout})
                    return
                self.queue.all_tasks_done.wait(min(remaining, 0.1))

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
                self.queue.task_done()
                return
            try:
                self.sink.flush(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which stops
                self.failure = exc
                self.queue.task_done()
                return
            failpoints.hit("ingest.after_insert")
            self.inserted.put((batch.topic, batch.partition, batch.last))
            self.queue.task_done()

    def _raise_if_failed(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _commit_inserted(self, force: bool = False) -> None:
        """Commit the offsets of every batch ClickHouse has acknowledged (never before).

        A failed commit (the broker restarting, the coordinator moving) keeps its offsets for the
        next try, after a jittered back-off (``force`` skips the wait, at shutdown), so a partition
        that receives nothing more still gets its offset committed. Each try is bounded by
        :data:`COMMIT_TIMEOUT_MS`: kafka-python's default (the request timeout, 30 s) froze this
        loop — polling, status — for as long as the broker was away. A revoked partition's offsets
        are dropped instead: its rows are in ClickHouse under the batch's token, and whoever reads
        the range again replays it from the ledger, so the copy is dropped.
        """
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        while True:
            try:
                topic, partition, last = self.inserted.get_nowait()
            except queue.Empty:
                break
            tp = TopicPartition(topic, partition)
            if self.flushed_under.pop((topic, partition, last), 0) != self.revocations.get(tp, 0):
                # Revoked since it was cut: committing now could move back an offset that the next
                # owner has already committed past. Whoever reads the range again replays it.
                continue
            self.uncommitted[tp] = OffsetAndMetadata(last + 1, "", -1)
        now = time.monotonic()
        if not self.uncommitted or (now < self.commit_after and not force):
            return
        try:
            self.consumer.commit(dict(self.uncommitted), timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            self.commit_failures += 1
            delay = min(COMMIT_BACKOFF_MAX_S, 0.25 * 2**self.commit_failures) * random.uniform(0.5, 1.0)
            self.commit_after = now + delay
            log.warning(
                "offset commit failed, retrying",
                extra={
                    "partitions": len(self.uncommitted),
                    "attempt": self.commit_failures,
                    "delay_s": round(delay, 2),
                    "error": str(exc),
                },
            )
            return
        if self.commit_failures:
            log.info("offset commit succeeded again", extra={"attempts": self.commit_failures + 1})
        self.uncommitted.clear()
        self.commit_failures = 0

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
        self._commit_inserted(force=True)
        log.info("ingest stopped cleanly", extra=self.stats.snapshot()["items"])

    def _update_lag(self) -> None:
        """Records not yet read, per partition: the log end minus the position.

        The log end is asked of the broker (``end_offsets``), not taken from the last fetch
        (``highwater``): while ClickHouse is down the partitions are paused and nothing is fetched,
        so the highwater stays where the outage began and the lag would read 0 while the backlog
        grows. The same request tells whether the broker answers (state ``broker_unavailable``
        while it does not; the last fetched highwater then stands in).
        """
        from kafka.errors import KafkaError

        partitions = list(self.buffers)
        try:
            ends = self.consumer.end_offsets(partitions, timeout_ms=1000) if partitions else {}
        except KafkaError:  # no answer in a second: the broker is away (say so in the status)
            ends = {tp: self.consumer.highwater(tp) for tp in partitions}
            self.stats.reachable("broker", False)
        except Exception:  # noqa: BLE001 - lag is best effort
            ends = {tp: self.consumer.highwater(tp) for tp in partitions}
        else:
            if partitions:
                self.stats.reachable("broker", True)
        lag: dict[str, int] = {}
        for tp in partitions:
            high = ends.get(tp)
            if high is None:
                continue
            try:
                position = self.consumer.position(tp, timeout_ms=100)
            except Exception:  # noqa: BLE001 - lag is best effort
                continue
            if position is not None:
                lag[f"{tp.topic}/{tp.partition}"] = max(0, high - position)
        self.stats.set_lag(lag)
