"""Ingest's own telemetry: OpenTelemetry SDK instruments, the status file and the HTTP endpoint."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from ingest.stats import IngestStats, read_status
from warroom.localbroker import free_port


def test_counters_reach_otel_instruments_status_file_and_http(tmp_path: Path) -> None:
    stats = IngestStats(tmp_path / "ingest-status.json")
    stats.state = "running"
    stats.batch("traces", items=1200, records=3, size=4096, dead=1, insert_ms=12.5)
    stats.batch("logs", items=50, records=1, size=100, dead=0, insert_ms=3.0)
    stats.set_lag({"otlp_spans/0": 7})

    data = stats.reader.get_metrics_data()
    names = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {
        "warroom.ingest.items",
        "warroom.ingest.bytes",
        "warroom.ingest.dead_letters",
        "warroom.ingest.insert.duration",
        "warroom.ingest.consumer_lag",
    } <= set(names)
    items = {dict(p.attributes)["signal"]: p.value for p in names["warroom.ingest.items"].data.data_points}
    assert items == {"traces": 1200, "logs": 50}

    stats.write_status()
    status = read_status(tmp_path / "ingest-status.json")
    assert status is not None and status["items"]["traces"] == 1200 and status["dead_letters"] == 1
    assert status["consumer_lag_total"] == 7

    port = free_port()
    server = stats.serve(port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
            assert json.loads(response.read())["batches"] == 2
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'warroom_ingest_items_total{signal="traces"} 1200' in text
        assert "warroom_ingest_consumer_lag 7" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_state_follows_what_is_unreachable_and_store_outage_wins() -> None:
    """``retrying`` while the store is away (nothing is stored), ``broker_unavailable`` while only
    Kafka is, ``running`` once both answer; a stopped worker stays stopped."""
    stats = IngestStats()
    stats.state = "running"
    stats.reachable("broker", False)
    assert stats.state == "broker_unavailable"
    stats.reachable("store", False)
    assert stats.state == "retrying"
    stats.reachable("store", True)
    assert stats.state == "broker_unavailable"
    stats.reachable("broker", True)
    assert stats.state == "running"
    stats.state = "stopped"
    stats.reachable("store", True)
    assert stats.state == "stopped"
