"""``warroom bench ingest``: Kafka → ClickHouse throughput of the real ingest worker vs a naive baseline.

For each signal a fresh topic is filled on a local Tansu broker, then ``warroom ingest kafka`` runs
as its own process (one per ``--workers``) against its own embedded ClickHouse until every item is
stored; its throughput is measured over its busy window (first consumed record → last stored
batch), so process start-up and consumer-group join are excluded, and per CPU-second. The same
workload (a fraction of it: the baseline is slow) goes through :mod:`ingest.baseline` in this
process. Decode-only figures parse and flatten without Kafka or MergeTree writes. Every run checks
that the rows stored equal the items produced.

``--workers 1,2`` runs the end-to-end figure once per worker count, on the same records and the
same partition count, and reports the speed-up: the scaling of ingest with processes on this
machine, which the README's sizing section extrapolates from.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from app import wiring
from ingest import baseline
from ingest.otlp_parse import Limits
from ingest.writer import NativeWriter, Record
from warroom import schema as s
from warroom.clickhouse import ClickHouse
from warroom.config import load_settings
from warroom.localbroker import LocalBroker

ITEMS_PER_RECORD = 1000
SERVICES = ("frontend", "checkout", "payment", "cart", "catalog", "shipping")
ROUTES = ("/api/cart", "/api/checkout", "/api/products/{id}", "/api/ship", "/healthz")


def _kv(key: str, value: str | int | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def _resource(kvs: Any, service: str) -> None:
    kvs.extend(
        [
            _kv("service.name", service),
            _kv("service.version", "1.4.2"),
            _kv("host.name", f"node-{service}"),
            _kv("k8s.pod.name", f"{service}-7d9f-x2"),
            _kv("deployment.environment.name", "bench"),
        ]
    )


def trace_request(rng: random.Random, now: int) -> bytes:
    req = ExportTraceServiceRequest()
    per = ITEMS_PER_RECORD // 4
    for service in rng.sample(SERVICES, 4):
        rs = req.resource_spans.add()
        _resource(rs.resource.attributes, service)
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = "opentelemetry.instrumentation.flask", "0.48b0"
        for _ in range(per):
            start = now - rng.randrange(10**9, 60 * 10**9)
            sp = ss.spans.add(
                trace_id=rng.randbytes(16),
                span_id=rng.randbytes(8),
                parent_span_id=rng.randbytes(8),
                name=f"GET {rng.choice(ROUTES)}",
                kind=2,
                start_time_unix_nano=start,
                end_time_unix_nano=start + rng.randrange(10**5, 10**9),
            )
            status = rng.choice((200, 200, 200, 200, 500))
            sp.attributes.extend(
                [
                    _kv("http.request.method", "GET"),
                    _kv("http.route", rng.choice(ROUTES)),
                    _kv("http.response.status_code", status),
                    _kv("server.address", "10.0.3.17"),
                    _kv("url.scheme", "http"),
                    _kv("network.peer.port", rng.randrange(1024, 65535)),
                ]
            )
            if status == 500:
                sp.status.code, sp.status.message = 2, "Internal Server Error"
                sp.events.add(time_unix_nano=start + 10, name="exception").attributes.extend(
                    [_kv("exception.type", "ValueError"), _kv("exception.message", "cart total is negative")]
                )
    return req.SerializeToString()


def log_request(rng: random.Random, now: int) -> bytes:
    req = ExportLogsServiceRequest()
    per = ITEMS_PER_RECORD // 4
    for service in rng.sample(SERVICES, 4):
        rl = req.resource_logs.add()
        _resource(rl.resource.attributes, service)
        sl = rl.scope_logs.add()
        sl.scope.name = "app.logger"
        for _ in range(per):
            order = rng.randrange(10**6)
            rec = sl.log_records.add(
                time_unix_nano=now - rng.randrange(10**9, 60 * 10**9),
                severity_number=9,
                severity_text="INFO",
                trace_id=rng.randbytes(16),
                span_id=rng.randbytes(8),
            )
            rec.body.string_value = (
                f"payment {order} authorised for user {rng.randrange(10**5)} in {order % 97} ms"
            )
            rec.attributes.extend(
                [_kv("code.function", "authorise"), _kv("order.id", order), _kv("thread.name", "worker-3")]
            )
    return req.SerializeToString()


def metric_request(rng: random.Random, now: int) -> bytes:
    req = ExportMetricsServiceRequest()
    per = ITEMS_PER_RECORD // 4
    for service in rng.sample(SERVICES, 4):
        rm = req.resource_metrics.add()
        _resource(rm.resource.attributes, service)
        sm = rm.scope_metrics.add()
        sm.scope.name = "app.meter"
        gauge = sm.metrics.add(name="process.cpu.utilization", unit="1")
        counter = sm.metrics.add(name="http.server.request.count", unit="{request}")
        counter.sum.is_monotonic, counter.sum.aggregation_temporality = True, 2
        for i in range(per // 2):
            t = now - rng.randrange(10**9, 60 * 10**9)
            gauge.gauge.data_points.add(time_unix_nano=t, as_double=rng.random()).attributes.extend(
                [_kv("cpu", i), _kv("state", "user")]
            )
            counter.sum.data_points.add(
                time_unix_nano=t, start_time_unix_nano=t - 60 * 10**9, as_int=rng.randrange(10**6)
            ).attributes.extend([_kv("http.route", rng.choice(ROUTES)), _kv("worker", i)])
    return req.SerializeToString()


BUILDERS = {"traces": trace_request, "logs": log_request, "metrics": metric_request}
LABEL = {"traces": "spans", "logs": "log records", "metrics": "metric points"}


def _workload(signal_name: str, items: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    now = time.time_ns()
    return [BUILDERS[signal_name](rng, now) for _ in range(max(1, items // ITEMS_PER_RECORD))]


def _produce(broker: LocalBroker, topic: str, payloads: list[bytes], partitions: int) -> None:
    from kafka import KafkaProducer

    broker.create_topics([topic], partitions=partitions)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, max_request_size=8 << 20, linger_ms=5)
    for i, payload in enumerate(payloads):
        producer.send(topic, payload, key=str(i).encode())
    producer.flush()
    producer.close()


def _status(home: Path) -> dict[str, Any]:
    try:
        return json.loads((home / "ingest-status.json").read_text())
    except (OSError, ValueError):
        return {}


def _run_workers(
    broker: LocalBroker, signal_name: str, payloads: list[bytes], workers: int, root: Path, partitions: int
) -> dict:
    """The real worker(s) as separate processes; returns throughput over their busy window."""
    uid = uuid.uuid4().hex[:8]
    topics = {sig: f"bench-{sig}-{uid}" for sig in BUILDERS}
    _produce(broker, topics[signal_name], payloads, partitions=max(2, partitions))
    for sig, topic in topics.items():
        if sig != signal_name:
            broker.create_topics([topic])
    total = len(payloads) * ITEMS_PER_RECORD
    homes = [root / f"{signal_name}-{uid}-{i}" for i in range(workers)]
    procs = []
    for home in homes:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
        env.update(
            {
                "WARROOM_HOME": str(home),
                "WARROOM_KAFKA_BOOTSTRAP": broker.bootstrap,
                "WARROOM_KAFKA_GROUP_ID": f"bench-{uid}",
                "WARROOM_TOPIC_TRACES": topics["traces"],
                "WARROOM_TOPIC_LOGS": topics["logs"],
                "WARROOM_TOPIC_METRICS": topics["metrics"],
                "WARROOM_LOG_LEVEL": "WARNING",
            }
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", "ingest", "kafka"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = sum(_status(h).get("items", {}).get(signal_name, 0) for h in homes)
        if done >= total:
            break
        for p in procs:
            if p.poll() is not None:
                raise click.ClickException(f"ingest worker exited early: {p.communicate()[1][-2000:]}")
        time.sleep(0.2)
    else:
        raise click.ClickException(f"ingest did not finish {total} {LABEL[signal_name]} in 600 s")
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        _, err = p.communicate(timeout=120)
        if p.returncode != 0:
            raise click.ClickException(f"ingest worker failed: {err[-2000:]}")
    statuses = [_status(h) for h in homes]
    stored = sum(_count_rows(h, signal_name) for h in homes)
    start = min(st["first_record_at"] for st in statuses if st.get("first_record_at"))
    end = max(st["last_batch_at"] for st in statuses if st.get("last_batch_at"))
    cpu = sum(st.get("busy_cpu_s", 0.0) for st in statuses)
    return {
        "items": total,
        "stored": stored,
        "per_s": total / max(end - start, 1e-9),
        "per_cpu_s": total / max(cpu, 1e-9),
        "peak_rss_mb": max(st.get("peak_rss_mb", 0.0) for st in statuses),
    }


def _count_rows(home: Path, signal_name: str) -> int:
    tables = {"traces": [s.TRACES], "logs": [s.LOGS], "metrics": list(s.METRIC_TABLES)}[signal_name]
    code = (
        "import sys, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(dsn=sys.argv[1], database='otel')\n"
        "print(sum(c.query(f'SELECT count() FROM {t}').result_rows[0][0] for t in sys.argv[2:]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, f"chdb://{home.resolve()}/clickhouse", *tables],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _scratch_store(root: Path) -> ClickHouse:
    settings = load_settings(env={}, home=str(root / "inproc"), clickhouse_database="bench_baseline")
    db, _ = wiring.migrated_store(settings)
    return db


def _null_targets(db: ClickHouse) -> ClickHouse:
    """A database whose staging views write into Null tables: decoding without MergeTree writes."""
    settings = load_settings(env={}, clickhouse_dsn=db.dsn, clickhouse_database="bench_decode")
    scratch = ClickHouse(db.dsn, settings.clickhouse_database)
    wiring.migrated_store(settings)
    for table in (*s.TELEMETRY_TABLES, s.DEAD_LETTERS):
        scratch.command(
            f"CREATE TABLE IF NOT EXISTS {scratch.table(table + '_null')} AS {scratch.table(table)} "
            "ENGINE = Null"
        )
        scratch.command(f"EXCHANGE TABLES {scratch.table(table)} AND {scratch.table(table + '_null')}")
    return scratch


def _decode_only(db: ClickHouse, signal_name: str, payloads: list[bytes]) -> dict:
    writer = NativeWriter(db, Limits(), time.time_ns)
    started, cpu = time.perf_counter(), time.process_time()
    prepared = [
        writer.prepare(Record(signal_name, "otlp_proto", p, "bench", "b", 0, i))
        for i, p in enumerate(payloads)
    ]
    writer.write(signal_name, prepared, f"decode-{uuid.uuid4().hex}")
    wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    total = len(payloads) * ITEMS_PER_RECORD
    return {"per_s": total / wall, "per_cpu_s": total / max(cpu_s, 1e-9)}


def _baseline_e2e(broker: LocalBroker, db: ClickHouse, signal_name: str, payloads: list[bytes]) -> dict:
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    topic = f"bench-baseline-{signal_name}-{uuid.uuid4().hex[:8]}"
    _produce(broker, topic, payloads, partitions=1)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=f"baseline-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=10000,
        session_timeout_ms=10000,
    )
    consumer.subscribe([topic])
    rows, records, first = 0, 0, None
    cpu0 = 0.0
    deadline = time.monotonic() + 600
    while records < len(payloads) and time.monotonic() < deadline:
        for tp, messages in consumer.poll(timeout_ms=200).items():
            for message in messages:
                if first is None:
                    first, cpu0 = time.perf_counter(), time.process_time()
                rows += baseline.insert_record(db, signal_name, "otlp_proto", message.value)
                consumer.commit(
                    {TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(message.offset + 1, "", -1)}
                )
                records += 1
    wall, cpu = time.perf_counter() - (first or time.perf_counter()), time.process_time() - cpu0
    consumer.close()
    return {"items": rows, "per_s": rows / max(wall, 1e-9), "per_cpu_s": rows / max(cpu, 1e-9)}


def _baseline_decode(signal_name: str, payloads: list[bytes]) -> dict:
    started = time.perf_counter()
    rows = sum(baseline.decode_record(signal_name, "otlp_proto", p) for p in payloads)
    return {"per_s": rows / (time.perf_counter() - started)}


def run(
    spans: int, logs: int, points: int, baseline_fraction: float, workers: Sequence[int], as_json: bool
) -> dict:
    """Run every signal end to end once per worker count in ``workers`` (e.g. ``(1, 2)``).

    Each count gets a fresh topic and consumer group over the *same* payloads and partition count
    (twice the largest count), so the figures differ only by the number of processes and the
    scaling factor is a like-for-like ratio. The baseline and decode-only figures run once.
    """
    counts = sorted(set(workers))
    if not counts or counts[0] < 1:
        raise click.BadParameter("worker counts must be positive integers", param_hint="--workers")
    amounts = {"traces": spans, "logs": logs, "metrics": points}
    results: dict[str, Any] = {"workers": counts, "items_per_record": ITEMS_PER_RECORD}
    with tempfile.TemporaryDirectory(prefix="warroom-bench-") as tmp, LocalBroker() as broker:
        root = Path(tmp)
        db = _scratch_store(root)
        decode_db = _null_targets(db)
        for signal_name, amount in amounts.items():
            if amount <= 0:
                continue
            label = LABEL[signal_name]
            click.echo(f"[{signal_name}] generating {amount:,} {label} …", err=True)
            payloads = _workload(signal_name, amount, seed=len(signal_name))
            by_workers: dict[int, dict] = {}
            for n in counts:
                click.echo(f"[{signal_name}] warroom ingest kafka ({n} process(es)) …", err=True)
                real = _run_workers(broker, signal_name, payloads, n, root, partitions=2 * counts[-1])
                if real["stored"] != real["items"]:
                    raise click.ClickException(
                        f"{signal_name}, {n} worker(s): stored {real['stored']} of {real['items']} items"
                    )
                by_workers[n] = real
            fraction = payloads[: max(1, int(len(payloads) * baseline_fraction))]
            click.echo(
                f"[{signal_name}] naive baseline on {len(fraction) * ITEMS_PER_RECORD:,} {label} …", err=True
            )
            base = _baseline_e2e(broker, db, signal_name, fraction)
            results[signal_name] = {
                "e2e": by_workers[counts[-1]],
                "e2e_by_workers": by_workers,
                "decode": _decode_only(decode_db, signal_name, payloads),
                "baseline_e2e": base,
                "baseline_decode": _baseline_decode(signal_name, fraction),
            }
    results["bench_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    _print(results, as_json)
    return results


def _print(results: dict[str, Any], as_json: bool) -> None:
    counts: list[int] = results["workers"]
    top = counts[-1]
    rows = []
    for signal_name, label in LABEL.items():
        r = results.get(signal_name)
        if not r:
            continue
        rows.append((f"{label}/s end to end", r["e2e"]["per_s"], r["baseline_e2e"]["per_s"]))
        rows.append((f"{label}/s per CPU-second", r["e2e"]["per_cpu_s"], r["baseline_e2e"]["per_cpu_s"]))
        rows.append((f"{label}/s decode only", r["decode"]["per_s"], r["baseline_decode"]["per_s"]))
    click.echo(f"{'figure':<36}{'warroom':>14}{'naive baseline':>16}{'ratio':>9}")
    for name, ours, base in rows:
        click.echo(f"{name:<36}{ours:>14,.0f}{base:>16,.0f}{ours / max(base, 1e-9):>8.1f}x")
    rss = max((results[k]["e2e"]["peak_rss_mb"] for k in LABEL if k in results), default=0.0)
    click.echo(f"{'ingest process peak RSS (MB)':<36}{rss:>14,.0f}")
    click.echo(f"workers: {top} process(es) above; {ITEMS_PER_RECORD} items per Kafka record")
    if len(counts) > 1:
        _print_scaling(results, counts)

    def fig(signal_name: str, key: str, sub: str = "per_s") -> float | None:
        r = results.get(signal_name)
        return round(r[key][sub], 1) if r else None

    def by_workers(signal_name: str, sub: str = "per_s") -> dict[str, float] | None:
        r = results.get(signal_name)
        return {str(n): round(r["e2e_by_workers"][n][sub], 1) for n in counts} if r else None

    summary = {
        "spans_per_s": fig("traces", "e2e"),
        "logs_per_s": fig("logs", "e2e"),
        "points_per_s": fig("metrics", "e2e"),
        "spans_per_cpu_s": fig("traces", "e2e", "per_cpu_s"),
        "decode_spans_per_s": fig("traces", "decode"),
        "decode_logs_per_s": fig("logs", "decode"),
        "decode_points_per_s": fig("metrics", "decode"),
        "baseline_spans_per_s": fig("traces", "baseline_e2e"),
        "baseline_logs_per_s": fig("logs", "baseline_e2e"),
        "baseline_points_per_s": fig("metrics", "baseline_e2e"),
        "baseline_decode_spans_per_s": fig("traces", "baseline_decode"),
        "peak_rss_mb": rss,
        "workers": top,
        "spans_per_s_by_workers": by_workers("traces"),
        "spans_per_cpu_s_by_workers": by_workers("traces", "per_cpu_s"),
        "logs_per_s_by_workers": by_workers("logs"),
        "points_per_s_by_workers": by_workers("metrics"),
    }
    if len(counts) > 1 and "traces" in results:
        low = counts[0]
        summary[f"scaling_{top}_vs_{low}"] = round(_speedup(results["traces"], low, top), 2)
        # Spans per CPU-second with more processes over fewer: ~1 means adding processes costs no
        # extra CPU per span, so throughput grows with the cores given — the figure that survives
        # a machine shared with other work, where the wall-clock speed-up does not.
        summary[f"cpu_efficiency_{top}_vs_{low}"] = round(
            _speedup(results["traces"], low, top, "per_cpu_s"), 2
        )
    if as_json:
        click.echo(json.dumps(summary))


def _speedup(signal_results: dict[str, Any], low: int, high: int, figure: str = "per_s") -> float:
    by = signal_results["e2e_by_workers"]
    return float(by[high][figure] / max(by[low][figure], 1e-9))


def _print_scaling(results: dict[str, Any], counts: list[int]) -> None:
    """Throughput per worker count side by side, with the speed-up over the smallest count."""
    click.echo()
    click.echo(
        f"{'end to end, by processes':<36}" + "".join(f"{f'{n} proc':>14}" for n in counts) + "   speed-up"
    )
    for signal_name, label in LABEL.items():
        r = results.get(signal_name)
        if not r:
            continue
        by = r["e2e_by_workers"]
        for name, sub in ((f"{label}/s", "per_s"), (f"{label}/s per CPU-second", "per_cpu_s")):
            figures = "".join(f"{by[n][sub]:>14,.0f}" for n in counts)
            speedup = by[counts[-1]][sub] / max(by[counts[0]][sub], 1e-9)
            click.echo(f"{name:<36}{figures}{speedup:>11.2f}x")
