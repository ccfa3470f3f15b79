"""Kafka → ClickHouse through the real Tansu broker and the embedded engine, as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.conftest import WARROOM, query_home, run_warroom
from tests.otlp_builders import sdk_logs, sdk_metrics, sdk_spans
from warroom.otlp_json import from_proto

pytestmark = pytest.mark.integration


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [WARROOM, "ingest", "kafka"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_items(
    env: dict[str, str], want: dict[str, int], proc: subprocess.Popen[str], timeout: float = 90
) -> dict:
    status_path = Path(env["WARROOM_HOME"]) / "ingest-status.json"
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        if status_path.exists():
            try:
                status = json.loads(status_path.read_text())
            except ValueError:
                status = {}
            items = status.get("items", {})
            if all(items.get(k, 0) >= v for k, v in want.items()):
                return status
        time.sleep(0.3)
    raise AssertionError(f"ingest did not reach {want}: {status}")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_sdk_encoded_telemetry_lands_in_every_table(env: dict[str, str], broker) -> None:
    topics = [env["WARROOM_TOPIC_TRACES"], env["WARROOM_TOPIC_LOGS"], env["WARROOM_TOPIC_METRICS"]]
    broker.create_topics(topics, partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    spans = logs = points = 0
    for i in range(5):
        req = sdk_spans(f"svc-{i}", traces=20)
        spans += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        producer.send(topics[0], req.SerializeToString())
        lreq = sdk_logs(f"svc-{i}", 30)
        logs += 30
        producer.send(topics[1], lreq.SerializeToString())
        mreq = sdk_metrics(f"svc-{i}", 4)
        points += sum(
            len(getattr(m, m.WhichOneof("data")).data_points)
            for rm in mreq.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        )
        producer.send(topics[2], mreq.SerializeToString())
    # raw kafka-python producer with a hand-built record and a poison record in the middle
    producer.send(topics[0], b"\x0a\x05garbage-not-protobuf")
    producer.send(topics[0], sdk_spans("raw", traces=1, children=0).SerializeToString())
    spans += 1
    producer.flush()

    proc = _start(env)
    _wait_items(env, {"traces": spans, "logs": logs, "metrics": points}, proc)
    _stop(proc)

    home = env["WARROOM_HOME"]
    assert query_home(home, "SELECT count() FROM otel_traces")[0][0] == spans
    assert query_home(home, "SELECT count() FROM otel_logs")[0][0] == logs
    total_points = sum(
        query_home(home, f"SELECT count() FROM {t}")[0][0]
        for t in ("otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram")
    )
    assert total_points == points
    # values, not just counts
    row = query_home(
        home,
        "SELECT ServiceName, SpanAttributes['ratio'], SpanKind, length(TraceId), "
        "ResourceAttributes['host.name'] FROM otel_traces WHERE SpanName = 'GET /checkout' "
        "AND ServiceName = 'svc-0' LIMIT 1",
    )[0]
    assert row == ["svc-0", "0.5", "Internal", 32, "node-1"]
    log_row = query_home(
        home,
        "SELECT Body, SeverityText, SeverityNumber, LogAttributes['order'] FROM otel_logs "
        "WHERE ServiceName = 'svc-1' ORDER BY toInt64(LogAttributes['order']) LIMIT 1",
    )[0]
    assert log_row == ["payment 0 authorised in 0 ms", "INFO", 9, "0"]
    hist = query_home(
        home,
        "SELECT MetricName, Count, Sum, length(BucketCounts) > 0, MetricUnit "
        "FROM otel_metrics_histogram WHERE Attributes['route'] = '/r2' AND ServiceName = 'svc-3'",
    )
    assert hist == [["http.server.request.duration", 1, 0.03, 1, "s"]]
    dead = query_home(home, "SELECT Topic, Reason, Raw FROM warroom_dead_letters")
    assert len(dead) == 1 and dead[0][0] == topics[0] and dead[0][1] == "invalid_protobuf"


def test_otlp_json_topic_and_status_command(env: dict[str, str], broker) -> None:
    env = {**env, "WARROOM_ENCODING_TRACES": "otlp_json"}
    topic = env["WARROOM_TOPIC_TRACES"]
    broker.create_topics([topic, env["WARROOM_TOPIC_LOGS"], env["WARROOM_TOPIC_METRICS"]])
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    req = sdk_spans("json-svc", traces=10)
    producer.send(topic, json.dumps(from_proto("traces", req)).encode())
    producer.send(topic, req.SerializeToString())  # wrong encoding for this topic
    producer.flush()
    proc = _start(env)
    _wait_items(env, {"traces": 30}, proc)
    status = run_warroom(["ingest", "status", "--json"], env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["items"]["traces"] == 30
    _stop(proc)
    assert query_home(env["WARROOM_HOME"], "SELECT count(), uniqExact(TraceId) FROM otel_traces") == [
        [30, 10]
    ]
    dead = query_home(env["WARROOM_HOME"], "SELECT Reason FROM warroom_dead_letters")
    assert dead and dead[0][0] in ("invalid_utf8", "invalid_json")
