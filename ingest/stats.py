"""Ingest's own telemetry: OpenTelemetry SDK metrics, a status snapshot file and an HTTP endpoint.

The worker records rows/s, bytes/s, batches, dead letters, insert latency and consumer lag as
OpenTelemetry instruments (meter ``warroom.ingest``). A snapshot is written atomically to
``$WARROOM_HOME/ingest-status.json`` every few seconds so ``warroom ingest status`` can read it
from another process (the embedded engine cannot be opened twice), and, when
``WARROOM_STATUS_PORT`` is set, served as JSON on ``/status`` and as Prometheus text on ``/metrics``.

``state`` says what the worker is doing: ``starting``, ``running``, ``retrying`` (ClickHouse is
unreachable: consumption is paused, the group membership kept, the batch retried with back-off),
``broker_unavailable`` (Kafka is unreachable: the client reconnects by itself, offsets of stored
batches are committed once it is back) and ``stopped``. ``/healthz`` answers 200 in every state (an
outage is waited out, not a reason to restart the process); ``/readyz`` 200 only while ``running``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

log = logging.getLogger("warroom.ingest")


class IngestStats:
    """Counters of one ingest process, mirrored into OpenTelemetry instruments."""

    def __init__(self, status_path: Path | None = None) -> None:
        self.started = time.time()
        self.status_path = status_path
        self.lock = threading.Lock()
        self.items: dict[str, int] = {"traces": 0, "logs": 0, "metrics": 0}
        self.records = 0
        self.bytes = 0
        self.batches = 0
        self.dead_letters = 0
        self.retries = 0
        self.insert_ms: list[float] = []
        self.lag: dict[str, int] = {}
        self.state = "starting"
        self.unreachable: set[str] = set()  # "store", "broker": what an outage took away
        # Wall and CPU time from the first consumed record to the last stored batch: throughput
        # figures that exclude start-up and group-join time.
        self.first_record: tuple[float, float] | None = None
        self.last_batch: tuple[float, float] | None = None
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        meter = self.provider.get_meter("warroom.ingest")
        self._rows = meter.create_counter("warroom.ingest.items", unit="{item}", description="items stored")
        self._bytes = meter.create_counter("warroom.ingest.bytes", unit="By", description="payload bytes")
        self._batches = meter.create_counter("warroom.ingest.batches", unit="{batch}")
        self._dead = meter.create_counter("warroom.ingest.dead_letters", unit="{record}")
        self._latency = meter.create_histogram("warroom.ingest.insert.duration", unit="ms")
        meter.create_observable_gauge("warroom.ingest.consumer_lag", [self._observe_lag], unit="{record}")

    def _observe_lag(self, _options: CallbackOptions) -> list[Observation]:
        with self.lock:
            return [Observation(v, {"partition": k}) for k, v in self.lag.items()]

    def reachable(self, dependency: str, up: bool) -> None:
        """Record that ``dependency`` (``store`` or ``broker``) failed or answered again, and derive
        :attr:`state` from it: ``retrying`` while the store is away (nothing is stored, whatever
        else is up), ``broker_unavailable`` while only the broker is, else ``running``. A worker
        that is stopping or stopped keeps its state."""
        with self.lock:
            if up:
                self.unreachable.discard(dependency)
            else:
                self.unreachable.add(dependency)
            if self.state in ("starting", "running", "retrying", "broker_unavailable"):
                if "store" in self.unreachable:
                    self.state = "retrying"
                elif "broker" in self.unreachable:
                    self.state = "broker_unavailable"
                else:
                    self.state = "running"

    def consuming(self) -> None:
        """Mark the first consumed record (cheap after the first call)."""
        if self.first_record is None:
            self.first_record = (time.time(), time.process_time())

    def batch(self, signal: str, items: int, records: int, size: int, dead: int, insert_ms: float) -> None:
        self.consuming()
        with self.lock:
            self.last_batch = (time.time(), time.process_time())
            self.items[signal] += items
            self.records += records
            self.bytes += size
            self.batches += 1
            self.dead_letters += dead
            self.insert_ms.append(insert_ms)
            del self.insert_ms[:-1000]
        attrs = {"signal": signal}
        self._rows.add(items, attrs)
        self._bytes.add(size, attrs)
        self._batches.add(1, attrs)
        if dead:
            self._dead.add(dead, attrs)
        self._latency.record(insert_ms, attrs)

    def set_lag(self, lag: dict[str, int]) -> None:
        with self.lock:
            self.lag = dict(lag)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            elapsed = max(time.time() - self.started, 1e-9)
            latencies = sorted(self.insert_ms)
            p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0
            return {
                "state": self.state,
                "pid": os.getpid(),
                "uptime_s": round(elapsed, 1),
                "items": dict(self.items),
                "items_per_s": {k: round(v / elapsed, 1) for k, v in self.items.items()},
                "records": self.records,
                "bytes": self.bytes,
                "bytes_per_s": round(self.bytes / elapsed, 1),
                "batches": self.batches,
                "dead_letters": self.dead_letters,
                "insert_retries": self.retries,
                "insert_ms_p99": round(p99, 1),
                "consumer_lag": dict(self.lag),
                "consumer_lag_total": sum(self.lag.values()),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "busy_wall_s": self._busy(0),
                "busy_cpu_s": self._busy(1),
                "first_record_at": self.first_record[0] if self.first_record else None,
                "last_batch_at": self.last_batch[0] if self.last_batch else None,
                "updated": time.time(),
            }

    def _busy(self, index: int) -> float:
        if self.first_record is None or self.last_batch is None:
            return 0.0
        return round(self.last_batch[index] - self.first_record[index], 4)

    def write_status(self) -> None:
        if self.status_path is None:
            return
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=2))
        os.replace(tmp, self.status_path)

    def prometheus(self) -> str:
        snap = self.snapshot()
        lines = []
        for signal, n in snap["items"].items():
            lines.append(f'warroom_ingest_items_total{{signal="{signal}"}} {n}')
        lines.append(f"warroom_ingest_bytes_total {snap['bytes']}")
        lines.append(f"warroom_ingest_batches_total {snap['batches']}")
        lines.append(f"warroom_ingest_dead_letters_total {snap['dead_letters']}")
        lines.append(f"warroom_ingest_consumer_lag {snap['consumer_lag_total']}")
        lines.append(f"warroom_ingest_insert_ms_p99 {snap['insert_ms_p99']}")
        return "\n".join(lines) + "\n"

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """``warroom ingest kafka``'s own status endpoint (``warroom up`` serves :mod:`app.health`)."""
        stats = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path == "/status":
                    body, ctype = json.dumps(stats.snapshot()).encode(), "application/json"
                elif self.path == "/metrics":
                    body, ctype = stats.prometheus().encode(), "text/plain; version=0.0.4"
                elif self.path in ("/healthz", "/readyz"):
                    ok = stats.state == "running" or self.path == "/healthz"
                    self.send_response(200 if ok else 503)
                    self.end_headers()
                    self.wfile.write(stats.state.encode())
                    return
                else:
                    self.send_error(404, "try /status, /metrics, /healthz or /readyz")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="ingest-status", daemon=True).start()
        return server


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
