"""Kill the ingest process mid-stream and restart it: ClickHouse holds every item exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.conftest import WARROOM, query_home
from tests.otlp_builders import sdk_spans

pytestmark = pytest.mark.integration


def _produce(broker, topic: str, records: int, traces_per_record: int) -> int:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    spans = 0
    for i in range(records):
        req = sdk_spans(f"svc-{i % 7}", traces=traces_per_record, children=2)
        spans += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        producer.send(topic, req.SerializeToString(), key=str(i).encode())
    producer.flush()
    producer.close()
    return spans


def _status(env: dict[str, str]) -> dict:
    path = Path(env["WARROOM_HOME"]) / "ingest-status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _run_until_drained(env: dict[str, str], timeout: float = 120) -> int:
    """Run a worker until its consumer lag is zero, then stop it with SIGTERM."""
    proc = subprocess.Popen(
        [WARROOM, "ingest", "kafka"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            status = _status(env)
            if (
                status.get("pid") == proc.pid
                and status.get("consumer_lag")
                and status["consumer_lag_total"] == 0
            ):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"worker did not drain: {_status(env)}")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    return int(_status(env).get("items", {}).get("traces", 0))


@pytest.mark.parametrize("how", ["sigkill", "failpoint_after_insert", "failpoint_after_ledger"])
def test_killed_worker_restarts_without_loss_or_duplicates(env: dict[str, str], broker, how: str) -> None:
    env = {**env, "WARROOM_BATCH_MAX_ROWS": "300", "WARROOM_BATCH_MAX_SECONDS": "0.3"}
    topic = env["WARROOM_TOPIC_TRACES"]
    broker.create_topics([topic, env["WARROOM_TOPIC_LOGS"], env["WARROOM_TOPIC_METRICS"]], partitions=3)
    total = _produce(broker, topic, records=120, traces_per_record=10)  # 3,600 spans in 120 records

    first_env = dict(env)
    if how == "failpoint_after_insert":
        first_env["WARROOM_FAILPOINTS"] = "ingest.after_insert:4"
    elif how == "failpoint_after_ledger":
        first_env["WARROOM_FAILPOINTS"] = "ingest.after_ledger:4"
    proc = subprocess.Popen(
        [WARROOM, "ingest", "kafka"], env=first_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if how == "sigkill" and _status(env).get("items", {}).get("traces", 0) >= 600:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.communicate(timeout=60)
    assert proc.returncode in (-signal.SIGKILL, 137), f"first worker ended with {proc.returncode}"

    _run_until_drained(env)
    counts = query_home(env["WARROOM_HOME"], "SELECT count(), uniqExact(SpanId) FROM otel_traces")
    assert counts == [[total, total]], (
        f"{how}: stored {counts[0][0]} rows, {counts[0][1]} distinct, produced {total}"
    )
    replays = query_home(env["WARROOM_HOME"], "SELECT count() FROM warroom_ingest_ledger")[0][0]
    assert replays > 0
