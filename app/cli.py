"""The ``warroom`` command line. Errors become one line on stderr and a non-zero exit code."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from app.cli_context import settings_of
from warroom import logs
from warroom.config import load_settings
from warroom.errors import InputError, WarroomError
from warroom.retry import Stopped

F = TypeVar("F", bound=Callable[..., Any])


class WarroomGroup(click.Group):
    """Translates WarroomError (and Ctrl-C) into one clear line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Stopped as exc:
            click.echo(f"stopped: {exc}", err=True)
            sys.exit(0)
        except WarroomError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=WarroomGroup)
@click.option("--home", envvar="WARROOM_HOME", default=None, help="Overrides WARROOM_HOME.")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """warroom: OTLP from Kafka into ClickHouse, detection, incidents and evidence-bound summaries."""
    try:
        ctx.obj = load_settings(home=home)
    except WarroomError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    logs.setup(ctx.obj.log_level)


@cli.command("config")
@click.option("--markdown", is_flag=True, help="Print the documentation table of all settings instead.")
@click.pass_context
def config_cmd(ctx: click.Context, markdown: bool) -> None:
    """Show every setting, its value and where it came from (secrets masked)."""
    if markdown:
        from warroom.config import markdown_table

        click.echo(markdown_table())
        return
    for env, value, source in settings_of(ctx).describe():
        click.echo(f"{env:<36} {value:<48} {source}")


# -- db ------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Schema migrations and store status."""


@db.command("migrate")
@click.option(
    "--cluster",
    default=None,
    help="ClickHouse cluster: Replicated tables behind Distributed ones, ON CLUSTER (overrides setting).",
)
@click.option("--print-sql", is_flag=True, help="Print every statement for an empty server; run nothing.")
@click.pass_context
def db_migrate(ctx: click.Context, cluster: str | None, print_sql: bool) -> None:
    """Create or upgrade the tables (idempotent; records the schema version)."""
    from app import wiring
    from warroom.schema import ddl, schema_version

    settings = settings_of(ctx)
    if cluster is not None:
        settings = load_settings(home=str(settings.home), clickhouse_cluster=cluster)
    if print_sql:
        options = wiring.schema_options(settings)
        for statement in ddl(settings.clickhouse_database, options, wiring.migrations()):
            click.echo(statement + ";\n")
        return
    store, applied = wiring.migrated_store(settings)
    for m in applied:
        click.echo(f"applied {m.version}: {m.name}")
    click.echo(f"schema version {schema_version(store)} in database {settings.clickhouse_database}")


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def db_status(ctx: click.Context, as_json: bool) -> None:
    """Schema version and row counts of the telemetry tables."""
    from app import wiring
    from warroom import schema as s

    store = wiring.store(settings_of(ctx))
    counts = {}
    for table in (*s.TELEMETRY_TABLES, s.TRACE_ID_TS, s.DEAD_LETTERS):
        exists = store.scalar(
            "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {t:String}",
            {"d": store.database, "t": table},
        )
        counts[table] = int(store.scalar(f"SELECT count() FROM {store.table(table)}")) if exists else None
    report = {"schema_version": s.schema_version(store), "rows": counts}
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"schema version {report['schema_version']}")
    for table, n in counts.items():
        click.echo(f"  {table:<40} {'-' if n is None else n}")


# -- ingest --------------------------------------------------------------------------------------


@cli.group()
def ingest() -> None:
    """Store OpenTelemetry traces, logs and metrics in ClickHouse."""


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


@ingest.command("kafka")
@click.option("--bootstrap", default=None, help="Overrides WARROOM_KAFKA_BOOTSTRAP.")
@click.pass_context
def ingest_kafka(ctx: click.Context, bootstrap: str | None) -> None:
    """Consume the OTLP topics as a consumer-group member until SIGTERM/SIGINT."""
    from app import wiring
    from ingest.kafka_worker import KafkaIngest
    from ingest.stats import IngestStats

    settings = settings_of(ctx)
    if bootstrap:
        settings = load_settings(home=str(settings.home), kafka_bootstrap=bootstrap)
    stop = _stop_on_signals()
    stats = IngestStats(settings.home / "ingest-status.json")
    if settings.status_port:
        stats.serve(settings.status_port, settings.status_host)
    store, _ = wiring.migrated_store(settings, stop)
    KafkaIngest(settings, wiring.writer(settings, store), stats, stop).run()
    click.echo(json.dumps(stats.snapshot()["items"]))


@ingest.command("file")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--signal",
    "signal_name",
    type=click.Choice(["traces", "logs", "metrics"]),
    default=None,
    help="Signal of protobuf files whose name does not say it.",
)
@click.pass_context
def ingest_file(ctx: click.Context, paths: tuple[Path, ...], signal_name: str | None) -> None:
    """Ingest OTLP files: Collector file-exporter JSON lines, or (length-delimited) protobuf."""
    from app import wiring
    from ingest.files import ingest_files
    from ingest.stats import IngestStats

    settings = settings_of(ctx)
    store, _ = wiring.migrated_store(settings)
    stats = IngestStats()
    items = ingest_files(list(paths), settings, wiring.writer(settings, store), stats, signal_name)
    snap = stats.snapshot()
    click.echo(
        f"stored spans={items['traces']} logs={items['logs']} points={items['metrics']} "
        f"records={snap['records']} dead_letters={snap['dead_letters']}"
    )


@ingest.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ingest_status(ctx: click.Context, as_json: bool) -> None:
    """Throughput, lag and dead letters of the running (or last) ingest worker."""
    from ingest.stats import read_status

    path = settings_of(ctx).home / "ingest-status.json"
    status = read_status(path)
    if status is None:
        raise WarroomError(
            f"no ingest status at {path}: is `warroom ingest kafka` running with this WARROOM_HOME?"
        )
    if as_json:
        click.echo(json.dumps(status))
        return
    for key, value in status.items():
        click.echo(f"{key:<20} {value}")


@ingest.command("dead-letters")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.pass_context
def ingest_dead_letters(ctx: click.Context, limit: int) -> None:
    """The most recent dead letters: where they came from and why."""
    from app import wiring
    from warroom import schema as s

    store = wiring.store(settings_of(ctx))
    rows = store.rows(
        f"SELECT Time, Source, Topic, Partition, Offset, Signal, Reason, Error, length(Raw) "
        f"FROM {store.table(s.DEAD_LETTERS)} ORDER BY Time DESC LIMIT {{n:UInt32}}",
        {"n": limit},
    )
    for row in rows:
        click.echo("\t".join(str(v) for v in row))


# -- detect --------------------------------------------------------------------------------------


@cli.group()
def detect() -> None:
    """Anomaly detection over stored telemetry and over exported series."""


@detect.command("score-csv")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--timestamp-col", default=None, help="Timestamp column (default: the first column).")
@click.option(
    "--value-cols", default=None, help="Comma-separated value columns (default: all numeric others)."
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output CSV (default: stdout).")
@click.option("--detector", default="default", show_default=True, help="A registered detector name.")
@click.option("--threshold", default=0.5, show_default=True, type=float, help="is_anomaly when score ≥ this.")
def detect_score_csv(
    path: Path,
    timestamp_col: str | None,
    value_cols: str | None,
    out: Path | None,
    detector: str,
    threshold: float,
) -> None:
    """Score a CSV time series row by row in streaming order: writes timestamp,score,is_anomaly."""
    from detect.csv_score import score_csv

    columns = [c.strip() for c in value_cols.split(",")] if value_cols else None
    result = score_csv(path, timestamp_col, columns, out, detector=detector, threshold=threshold)
    if out is not None:
        click.echo(f"scored {result.rows} rows, {result.anomalies} flagged; wrote {out}", err=True)


@detect.command("run")
@click.option("--from", "start", default="now-1h", show_default=True, help="ISO-8601 or now-2h.")
@click.option("--to", "end", default="now", show_default=True, help="ISO-8601 or now.")
@click.option(
    "--step", default=60, show_default=True, type=click.IntRange(10, 3600), help="Seconds per point."
)
@click.option("--rules", type=click.Path(path_type=Path), default=None, help="Rules/SLO TOML file.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def detect_run(
    ctx: click.Context, start: str, end: str, step: int, rules: Path | None, as_json: bool
) -> None:
    """Detect over stored telemetry in [--from, --to) and write alerts (resumes from saved state)."""
    from app import wiring
    from detect.run import DetectRunner, RunConfig, describe, load_rules_file, state_file
    from detect.sharding import Shard
    from warroom.timeparse import parse_time

    settings = settings_of(ctx)
    store, _ = wiring.migrated_store(settings)
    shard = Shard.parse(settings.detect_shard)
    runner = DetectRunner(
        store,
        state_file(settings.home, shard),
        RunConfig(step_s=step, rules=load_rules_file(rules), shard=shard),
    )
    result = runner.run(parse_time(start), parse_time(end))
    if as_json:
        click.echo(json.dumps(describe(result)))
        return
    for alert in result.opened:
        click.echo(
            f"{alert.starts_at:%Y-%m-%d %H:%M} {alert.severity.value:<8} {alert.service:<16} {alert.title}"
        )
    skipped = f" (shard {shard}: {result.not_owned} series left to other shards)" if shard.sharded else ""
    click.echo(f"{len(result.opened)} alert(s) opened over {result.series} series{skipped}", err=True)


@detect.command("watch")
@click.option("--step", default=60, show_default=True, type=click.IntRange(10, 3600))
@click.option("--rules", type=click.Path(path_type=Path), default=None)
@click.pass_context
def detect_watch(ctx: click.Context, step: int, rules: Path | None) -> None:
    """Run detection every step on the newest complete step, until SIGTERM/SIGINT."""
    from app import wiring
    from detect.run import DetectRunner, RunConfig, load_rules_file, state_file, watch
    from detect.sharding import Shard

    settings = settings_of(ctx)
    stop = _stop_on_signals()
    store, _ = wiring.migrated_store(settings, stop)
    shard = Shard.parse(settings.detect_shard)
    runner = DetectRunner(
        store,
        state_file(settings.home, shard),
        RunConfig(step_s=step, rules=load_rules_file(rules), shard=shard),
    )
    watch(
        runner,
        stop,
        step,
        lambda alert: click.echo(
            f"{alert.starts_at:%H:%M} {alert.severity.value:<8} {alert.service:<16} {alert.title}"
        ),
    )


# -- correlate -----------------------------------------------------------------------------------


@cli.group()
def correlate() -> None:
    """Alerts into incidents: grouping, root-cause ranking, replay."""


@correlate.command("run")
@click.option("--from", "start", default="now-1h", show_default=True, help="ISO-8601 or now-2h.")
@click.option("--to", "end", default="now", show_default=True, help="ISO-8601 or now.")
@click.option(
    "--learn-topology/--no-learn-topology",
    default=True,
    show_default=True,
    help="Learn the service topology from the traces of the range first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.pass_context
def correlate_run(ctx: click.Context, start: str, end: str, learn_topology: bool, as_json: bool) -> None:
    """Group the alerts that started in [--from, --to) into incidents and send their notices."""
    from app import wiring
    from correlate.topology_refresh import refresh
    from warroom.timeparse import parse_time

    settings = settings_of(ctx)
    since, until = parse_time(start), parse_time(end)
    store, _ = wiring.migrated_store(settings)
    if learn_topology:
        refresh(store, until, max(until - since, timedelta(hours=1)))
    state = wiring.state_db(settings)
    correlator, outbox = wiring.correlator(settings, store, state, data_time=until)
    with outbox:
        summary = correlator.run(since, until)
        _deliver_now(outbox)
    if as_json:
        click.echo(json.dumps(summary.to_json()))
        return
    click.echo(
        f"{summary.alerts} alert(s): {summary.opened} incident(s) opened, {summary.resolved} resolved, "
        f"{summary.open_incidents} open; {summary.notices} notice(s) queued"
    )


def _deliver_now(outbox: Any, timeout: float = 30.0) -> None:
    """One-shot commands try their queued notices before exiting; what fails stays queued."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not outbox.dispatch_once():
            return


@correlate.command("watch")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.5, 3600))
@click.option(
    "--topology-every",
    default=300,
    show_default=True,
    type=click.IntRange(30, 86400),
    help="Seconds between topology refreshes from the latest hour of traces.",
)
@click.pass_context
def correlate_watch(ctx: click.Context, interval: float, topology_every: int) -> None:
    """Correlate alerts as they arrive, resolve quiet incidents and deliver notices, until SIGTERM."""

    from app import up

    options = up.Options(only=("correlate",), correlate_interval=interval, topology_every=topology_every)
    up.run(settings_of(ctx), options, _stop_on_signals())


@correlate.command("replay")
@click.option("--alerts", "alerts_path", type=click.Path(path_type=Path), required=True, help="Alerts JSONL.")
@click.option(
    "--topology",
    "topology_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Topology JSON (as `Topology.to_json`).",
)
@click.option(
    "--traces-from",
    "traces_dsn",
    default=None,
    help="Learn the topology from the traces in this ClickHouse DSN (over the alerts' time range).",
)
@click.option(
    "--database", default=None, help="Database of --traces-from (default: WARROOM_CLICKHOUSE_DATABASE)."
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Incidents JSONL to write.")
@click.pass_context
def correlate_replay(
    ctx: click.Context,
    alerts_path: Path,
    topology_path: Path | None,
    traces_dsn: str | None,
    database: str | None,
    out: Path,
) -> None:
    """Group a recorded alert stream offline (deterministic) and write incidents with their 'why'.

    Without --topology or --traces-from, topology proximity scores 0.
    """
    from correlate.replay import replay
    from correlate.topology import Topology, build_topology
    from warroom.alert_json import read_alerts
    from warroom.clickhouse import ClickHouse
    from warroom.errors import InputError

    if topology_path is not None and traces_dsn is not None:
        raise InputError("give --topology or --traces-from, not both", reason="bad_arguments")
    topology = None
    if topology_path is not None:
        try:
            topology = Topology.from_json(topology_path.read_text())
        except OSError as exc:
            raise InputError(f"cannot read {topology_path}: {exc.strerror or exc}") from exc
    elif traces_dsn is not None:
        recorded = read_alerts(alerts_path)
        if recorded:
            first = min(a.starts_at for a in recorded)
            last = max(a.starts_at for a in recorded)
            store = ClickHouse(traces_dsn, database or settings_of(ctx).clickhouse_database)
            topology = build_topology(store, first - timedelta(hours=1), last + timedelta(minutes=1))
    summary = replay(alerts_path, out, topology)
    click.echo(
        f"{summary.alerts} alert(s) → {summary.incidents} incident(s) "
        f"({summary.duplicates} updates, compression {summary.compression:.2f}); wrote {out}"
    )


@cli.command("serve")
@click.option("--host", default=None, help="Overrides WARROOM_API_HOST.")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Overrides WARROOM_API_PORT.")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.5, 3600))
@click.pass_context
def serve_cmd(ctx: click.Context, host: str | None, port: int | None, interval: float) -> None:
    """The web console and the HTTP API (incidents, alerts, remediations, alert intake; token auth)
    plus the live correlator, notice delivery and the remediation executor, in one process
    (`warroom up --only correlate,executor,api`; correlator and executor run while this replica
    leads their roles).

    On the embedded default one process owns the store, so the API and correlation share it here;
    an accepted alert wakes the correlator at once, and notices queued by API commands are
    delivered by the same dispatcher. Every /api/v1 route needs a token: `warroom users add`.
    """
    from app import auth, up, wiring

    settings = settings_of(ctx)
    state = wiring.state_db(settings)
    if not any(not u.revoked for u in auth.users(state)):
        click.echo(
            "no API users yet: every /api/v1 request will get 401 until "
            "`warroom users add NAME --role admin` makes one",
            err=True,
        )
    state.dispose()

    def ready(_services: Sequence[str], url: str | None) -> None:
        click.echo(f"warroom serving on {url} (console at /, API docs at /docs; Ctrl-C stops)", err=True)

    options = up.Options(
        only=("correlate", "executor", "api"), host=host, port=port, correlate_interval=interval
    )
    up.run(settings, options, _stop_on_signals(), ready)


@cli.group("audit")
def audit_group() -> None:
    """The hash-chained audit log of people's actions (acks, merges, approvals)."""


@audit_group.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Recompute the chain; exit 1 naming the first entry that was altered, removed or reordered."""
    from app import wiring
    from warroom.audit import verify

    result = verify(wiring.state_db(settings_of(ctx)))
    if not result.ok:
        click.echo(f"audit log BROKEN at entry {result.first_bad_seq}: {result.problem}", err=True)
        sys.exit(1)
    click.echo(f"audit log intact: {result.entries} entr{'y' if result.entries == 1 else 'ies'}")


# -- incidents -----------------------------------------------------------------------------------


@cli.group()
def incidents() -> None:
    """Incidents: list, show, explain the grouping, and change them (ack, resolve, merge, split)."""


def _incident_line(record: Any) -> str:
    cause = record.root_causes[0]["service"] if record.root_causes else "-"
    flags = " flapping" if record.flapping else ""
    return (
        f"{record.id}  {record.status:<12} {record.severity:<8} {record.started_at:%Y-%m-%d %H:%M}  "
        f"alerts={record.alert_count:<4} cause={cause:<14} {record.title}{flags}"
    )


def _incident_store(ctx: click.Context) -> Any:
    from app import wiring

    settings = settings_of(ctx)
    return wiring.incident_store(settings, wiring.state_db(settings), lambda: None)


@incidents.command("list")
@click.option("--status", type=click.Choice(["open", "acknowledged", "resolved"]), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def incidents_list(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """Incidents, newest first."""
    for record in _incident_store(ctx).incidents(status, limit):
        click.echo(json.dumps(record.to_json()) if as_json else _incident_line(record))


@incidents.command("show")
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def incidents_show(ctx: click.Context, incident_id: str, as_json: bool) -> None:
    """One incident: root causes with their evidence, the audit trail and every notification attempt."""
    from correlate.notify.outbox import Outbox

    store = _incident_store(ctx)
    record, events = store.get(incident_id), store.events(incident_id)
    with Outbox(store.db, {}) as outbox:
        attempts = [a.to_json() for a in outbox.attempts(incident_id)]
    if as_json:
        click.echo(json.dumps({**record.to_json(), "events": events, "notifications": attempts}))
        return
    click.echo(_incident_line(record))
    click.echo(f"services: {', '.join(record.services)}")
    for i, cause in enumerate(record.root_causes, start=1):
        click.echo(f"root cause #{i}: {cause['service']} (confidence {cause['confidence']:.2f})")
        for reason in cause["reasons"]:
            click.echo(f"    - {reason}")
    for event in events:
        who = f" by {event['actor']}" if event["actor"] else ""
        sent = " [notified]" if event["notify"] else ""
        click.echo(f"{event['at']} {event['kind']}{who}{sent}: {'; '.join(event['reasons'])}")
    for a in attempts:
        result = "delivered" if a["ok"] else f"failed ({a['error'] or a['http_status']})"
        click.echo(f"{a['at']} notice {a['status']} → {a['receiver']} try {a['attempt_no']}: {result}")


@incidents.command("explain")
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per decision.")
@click.pass_context
def incidents_explain(ctx: click.Context, incident_id: str, as_json: bool) -> None:
    """Why each alert was grouped into this incident: every decision with its per-factor scores."""
    for d in _incident_store(ctx).explain(incident_id):
        if as_json:
            click.echo(json.dumps(d))
            continue
        who = f" ({d['actor']})" if d.get("actor") else ""
        click.echo(f"{d['starts_at']} {d['fingerprint'] or '-'}: {d['reason']}{who}")
        for c in d["candidates"]:
            f = c["factors"]
            click.echo(
                f"    {c['incident_id']} score={c['score']:.3f} topology={f['topology']:.2f} "
                f"resources={f['resources']:.2f} text={f['text']:.2f} time={f['time']:.2f} "
                f"change={f['change']:.2f}"
            )


def _apply(ctx: click.Context, action: Callable[[Any], list[Any]]) -> None:
    from app import wiring

    settings = settings_of(ctx)
    store, _ = wiring.migrated_store(settings)
    state = wiring.state_db(settings)
    correlator, outbox = wiring.correlator(settings, store, state)
    with outbox:
        changes = action(correlator)
        _deliver_now(outbox)
    for change in changes:
        click.echo(f"{change.incident.id} {change.kind}: {'; '.join(change.reasons)}")


_ACTOR = click.option("--actor", required=True, help="Who does this (recorded in the audit trail).")


@incidents.command("ack")
@click.argument("incident_id")
@_ACTOR
@click.pass_context
def incidents_ack(ctx: click.Context, incident_id: str, actor: str) -> None:
    """Acknowledge an incident (PagerDuty gets an acknowledge for the same dedup key)."""
    _apply(ctx, lambda c: c.acknowledge(incident_id, actor))


@incidents.command("resolve")
@click.argument("incident_id")
@_ACTOR
@click.pass_context
def incidents_resolve(ctx: click.Context, incident_id: str, actor: str) -> None:
    """Resolve an incident by hand."""
    _apply(ctx, lambda c: c.resolve(incident_id, actor))


@incidents.command("merge")
@click.argument("target_id")
@click.argument("source_ids", nargs=-1, required=True)
@_ACTOR
@click.pass_context
def incidents_merge(ctx: click.Context, target_id: str, source_ids: tuple[str, ...], actor: str) -> None:
    """Merge incidents into TARGET_ID (the sources resolve as 'merged into')."""
    _apply(ctx, lambda c: c.merge(target_id, list(source_ids), actor))


@incidents.command("split")
@click.argument("incident_id")
@click.argument("fingerprints", nargs=-1, required=True)
@_ACTOR
@click.pass_context
def incidents_split(ctx: click.Context, incident_id: str, fingerprints: tuple[str, ...], actor: str) -> None:
    """Move the alerts FINGERPRINTS of an incident into a new incident."""
    _apply(ctx, lambda c: c.split(incident_id, list(fingerprints), actor))


# -- alerts --------------------------------------------------------------------------------------


@cli.group("alerts")
def alerts_group() -> None:
    """The alerts table: detector output and alerts from outside (Alertmanager)."""


@alerts_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_context
def alerts_import(ctx: click.Context, path: Path) -> None:
    """Store the alerts of a Prometheus Alertmanager webhook payload (JSON file, '-' for stdin)."""
    from app import wiring
    from warroom import alerts
    from warroom.errors import InputError

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        payload = json.loads(text)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InputError(f"{path}: malformed JSON: {exc}") from exc
    converted = alerts.from_alertmanager(payload)
    store, _ = wiring.migrated_store(settings_of(ctx))
    alerts.write(store, converted)
    click.echo(f"stored {len(converted)} alert(s)")


@alerts_group.command("list")
@click.option("--since", default="24h", show_default=True, help="Look-back window, e.g. 90m, 24h, 7d.")
@click.option("--firing", is_flag=True, help="Only alerts that are still firing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def alerts_list(ctx: click.Context, since: str, firing: bool, as_json: bool) -> None:
    """Alerts that started within the window, oldest first."""
    from datetime import UTC, datetime

    from app import wiring
    from warroom import alerts
    from warroom.timeparse import parse_duration

    store, _ = wiring.migrated_store(settings_of(ctx))
    start = datetime.now(UTC) - parse_duration(since)
    for a in alerts.read(store, start, firing_only=firing):
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "fingerprint": a.fingerprint,
                        "title": a.title,
                        "severity": a.severity.value,
                        "service": a.service,
                        "starts_at": a.starts_at.isoformat(),
                        "ends_at": a.ends_at.isoformat() if a.ends_at else None,
                        "score": a.score,
                        "source": a.source,
                        "labels": dict(a.labels),
                    }
                )
            )
        else:
            state = "firing" if a.firing else "resolved"
            click.echo(
                f"{a.starts_at:%Y-%m-%d %H:%M} {state:<8} {a.severity.value:<8} {a.service:<16} {a.title}"
            )


# -- fixtures, broker ----------------------------------------------------------------------------


@cli.group()
def fixtures() -> None:
    """Seeded fault scenarios with ground truth."""


@fixtures.command(
    "generate",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
)
@click.option("--kafka", is_flag=True, help="Also produce the requests to the OTLP topics.")
@click.option("--bootstrap", default=None, help="Kafka bootstrap for --kafka (default: the setting).")
@click.pass_context
def fixtures_generate(ctx: click.Context, kafka: bool, bootstrap: str | None) -> None:
    """Simulate a scenario into --out DIR (OTLP files + ground_truth.json); --kafka also produces it.

    Options are those of `python -m fixtures generate` (run `warroom fixtures generate --help`):
    --scenario NAME --out DIR [--seed N] [--start ISO] [--duration 3h] [--step 1m] [--rate R]
    [--format json|proto|both] [--jobs N].
    """
    from fixtures import main as fixtures_main

    args = list(ctx.args)
    if "--help" in args or "-h" in args:
        click.echo(ctx.get_help())
        click.echo()
        fixtures_main(["generate", "--help"])
        return
    if kafka and "--format" in args and args[args.index("--format") + 1] == "proto":
        args[args.index("--format") + 1] = "both"
    code = fixtures_main(["generate", *args])
    if code:
        sys.exit(code)
    if kafka:
        from app.scenario_io import produce_dir

        settings = settings_of(ctx)
        out = Path(args[args.index("--out") + 1])
        target = bootstrap or settings.kafka_bootstrap
        sent = produce_dir(settings, target, out)
        click.echo(f"produced {sum(sent.values())} records to {target} ({sent})")


@fixtures.command("list")
def fixtures_list() -> None:
    """The scenarios and what each one injects."""
    from fixtures import main as fixtures_main

    sys.exit(fixtures_main(["list"]))


@cli.command("broker")
@click.option("--port", default=9092, show_default=True, type=int)
def broker_cmd(port: int) -> None:
    """Run a local in-memory Kafka-protocol broker (Tansu) until interrupted; for demos and tests."""
    import time

    from warroom.localbroker import LocalBroker

    with LocalBroker(port=port) as broker:
        click.echo(f"broker listening on {broker.bootstrap} (Ctrl-C stops it and forgets its data)")
        stop = _stop_on_signals()
        while not stop.is_set():
            time.sleep(0.2)


@cli.command("demo")
@click.option("--scenario", default="bad_deploy", show_default=True)
@click.option("--duration", default="3h", show_default=True, help="Simulated time span.")
@click.option("--rate", default=1.0, show_default=True, type=float, help="Mean entry requests per second.")
@click.option(
    "--kafka", is_flag=True, help="Ingest through a local Kafka-protocol broker (Tansu), not files."
)
@click.option("--files", is_flag=True, hidden=True, help="Deprecated: files are the default now.")
@click.option("--no-serve", is_flag=True, help="Exit after the pipeline instead of serving the console.")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Overrides WARROOM_API_PORT.")
@click.option(
    "--reset-state",
    is_flag=True,
    help="Allow emptying the incidents, notices and proposals of a WARROOM_STATE_DSN that is not "
    "the home's own SQLite file (PostgreSQL).",
)
@click.pass_context
def demo_cmd(
    ctx: click.Context,
    scenario: str,
    duration: str,
    rate: float,
    kafka: bool,
    files: bool,
    no_serve: bool,
    port: int | None,
    reset_state: bool,
) -> None:
    """Generate a fault scenario, ingest it (from files, or through a local broker with --kafka),
    detect, correlate and summarise it, then serve the console with a viewer and an approver token
    until Ctrl-C."""
    from app import demo

    if files:
        click.echo("--files is the default now (and deprecated); --kafka goes through a broker", err=True)
    demo.run(
        settings_of(ctx),
        demo.Options(scenario, duration, rate, kafka, serve=not no_serve, port=port, reset_state=reset_state),
    )


# -- summaries -----------------------------------------------------------------------------------

_FORMATS = click.Choice(["md", "html", "slack", "json"])


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}", reason="unwritable_output") from exc
    click.echo(f"wrote {out}", err=True)


@cli.command("summarize")
@click.argument("incident_id")
@click.option("--format", "fmt", type=_FORMATS, default="md", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write to FILE (default: stdout).")
@click.option("--at", "at", default="now", show_default=True, help="Data time that ends an open incident.")
@click.option("--no-llm", is_flag=True, help="Deterministic digest only, even when an LLM is configured.")
@click.option("--no-propose", is_flag=True, help="Do not record the remediations as proposals.")
@click.pass_context
def summarize_cmd(
    ctx: click.Context, incident_id: str, fmt: str, out: Path | None, at: str, no_llm: bool, no_propose: bool
) -> None:
    """An evidence-bound summary of one incident: impact, probable causes, timeline, next checks,
    proposed remediations (recorded for approval) and the numbered evidence with its queries."""
    from app import summaries, wiring
    from summarize.render import render
    from warroom.timeparse import parse_time

    settings = settings_of(ctx)
    store, _ = wiring.migrated_store(settings)
    state = wiring.state_db(settings)
    incidents = wiring.incident_store(settings, state, lambda: None)
    result = summaries.summarize_incident(
        settings,
        store,
        state,
        incidents,
        incident_id,
        now=parse_time(at),
        use_llm=not no_llm,
        propose=not no_propose,
    )
    text = (
        json.dumps(result.summary.to_json(), indent=2, default=str)
        if fmt == "json"
        else render(result.summary, fmt)
    )
    _emit(text, out)
    for proposal in result.proposals:
        click.echo(
            f"proposed {proposal.id}: {proposal.action} ({proposal.risk} risk) — "
            f"`warroom remediation show {proposal.id}`",
            err=True,
        )
    if result.outcome is not None and not result.outcome.accepted:
        click.echo(f"LLM narrative not used: {result.outcome.status}", err=True)


@cli.command("digest")
@click.option("--since", default="24h", show_default=True, help="Period length (30m, 24h, 7d).")
@click.option("--to", "end", default="now", show_default=True, help="End of the period (ISO-8601 or now).")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "slack"]), default="md", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write to FILE (default: stdout).")
@click.pass_context
def digest_cmd(ctx: click.Context, since: str, end: str, fmt: str, out: Path | None) -> None:
    """The SRE digest of a period: every incident, time to acknowledge and resolve, the noisiest
    alerts and the flapping signals."""
    from app import summaries, wiring
    from summarize.render import render_period
    from warroom.timeparse import parse_duration, parse_time

    settings = settings_of(ctx)
    store, _ = wiring.migrated_store(settings)
    incidents = wiring.incident_store(settings, wiring.state_db(settings), lambda: None)
    period = summaries.period_digest(store, incidents, parse_duration(since), parse_time(end))
    _emit(render_period(period, fmt), out)


# -- bench ---------------------------------------------------------------------------------------


@cli.group()
def bench() -> None:
    """Benchmarks: figures beside a baseline run in the same invocation."""


@bench.command("ingest")
@click.option("--spans", default=200_000, show_default=True, type=int, help="Spans to produce.")
@click.option("--logs", "log_count", default=100_000, show_default=True, type=int)
@click.option("--points", default=100_000, show_default=True, type=int)
@click.option(
    "--baseline-fraction",
    default=0.05,
    show_default=True,
    type=float,
    help="Share of the workload the (slow) naive baseline runs on.",
)
@click.option(
    "--workers",
    default="1",
    show_default=True,
    help="Ingest processes in one group; a comma list (1,2) runs each and reports the scaling.",
)
@click.option("--json", "as_json", is_flag=True, help="Last line: one JSON object with the figures.")
def bench_ingest(
    spans: int, log_count: int, points: int, baseline_fraction: float, workers: str, as_json: bool
) -> None:
    """Kafka → ClickHouse throughput (one process per worker) vs a naive row-by-row baseline."""
    from app.bench_ingest import run

    try:
        counts = [int(n) for n in workers.split(",") if n.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{workers!r} is not a comma list of integers", param_hint="--workers"
        ) from None
    run(spans, log_count, points, baseline_fraction, counts, as_json)


@bench.command("nab")
@click.option("--data", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def bench_nab(data: Path | None, as_json: bool) -> None:
    """NAB corpus: the layered detector scored with NAB's rules, beside the windowed Gaussian."""
    from detect.nab import bench as nab_bench

    sys.exit(nab_bench.main(_data_args(data, "nab", as_json)))


@bench.command("logs")
@click.option("--data", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def bench_logs(data: Path | None, as_json: bool) -> None:
    """Loghub-2k: template mining grouping/parsing accuracy beside the published Drain figures."""
    from detect import log_templates_bench

    sys.exit(log_templates_bench.main(_data_args(data, "loghub2k", as_json)))


@bench.command("correlate")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the generated alert stream.")
@click.option(
    "--rounds", default=4, show_default=True, type=int, help="Rounds of scenarios (12 faults each)."
)
@click.option(
    "--alerts", "alerts_path", type=click.Path(path_type=Path), default=None, help="Recorded alerts JSONL."
)
@click.option("--truth", "truth_path", type=click.Path(path_type=Path), default=None, help="Its truth JSON.")
@click.option("--write-stream", type=click.Path(path_type=Path), default=None, help="Save the stream in DIR.")
@click.option("--load-rate", default=1000, show_default=True, type=int, help="Throughput load, alerts/min.")
@click.option("--load-minutes", default=15, show_default=True, type=int, help="Simulated minutes; 0 skips.")
@click.option("--verbose", is_flag=True, help="Per-fault breakdown.")
@click.option("--json", "as_json", is_flag=True, help="Last line: one JSON object with the figures.")
def bench_correlate(
    seed: int,
    rounds: int,
    alerts_path: Path | None,
    truth_path: Path | None,
    write_stream: Path | None,
    load_rate: int,
    load_minutes: int,
    verbose: bool,
    as_json: bool,
) -> None:
    """Alert grouping (pairwise F1, compression) and root cause (AC@k) vs Alertmanager group_by service."""
    from app.bench_correlate import run

    if (alerts_path is None) != (truth_path is None):
        raise click.UsageError("--alerts and --truth go together")
    run(seed, rounds, alerts_path, truth_path, write_stream, as_json, verbose, load_rate, load_minutes)


@bench.command("summarize")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    help="Fixture scenario (repeatable; default: bad_deploy, dependency_latency, cpu_saturation, "
    "memory_leak, mixed).",
)
@click.option("--duration", default="3h", show_default=True, help="Simulated time span per scenario.")
@click.option("--rate", default=1.0, show_default=True, type=float, help="Mean entry requests per second.")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="Work in DIR and keep it.")
@click.option("--verbose", is_flag=True, help="One line per incident.")
@click.option("--json", "as_json", is_flag=True, help="Last line: one JSON object with the figures.")
@click.pass_context
def bench_summarize(
    ctx: click.Context,
    scenarios: tuple[str, ...],
    duration: str,
    rate: float,
    seed: int,
    keep: Path | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Digest root cause + fault kind hit rate and cited-claims share on the fixture scenarios,
    beside an alert-only baseline."""
    from app.bench_summarize import DEFAULT_SCENARIOS, run

    run(
        settings_of(ctx),
        scenarios or DEFAULT_SCENARIOS,
        duration=duration,
        rate=rate,
        seed=seed,
        as_json=as_json,
        verbose=verbose,
        keep=keep,
    )


@bench.command("soak")
@click.option(
    "--duration", default=600, show_default=True, type=click.IntRange(10), help="Seconds of traffic."
)
@click.option(
    "--rate", default=200.0, show_default=True, type=click.FloatRange(min=0.1), help="Shop requests/s."
)
@click.option(
    "--sample-every", default=10.0, show_default=True, type=click.FloatRange(min=0.5), help="Seconds apart."
)
@click.option(
    "--baseline", "baseline_s", default=None, type=click.IntRange(1), help="Idle seconds (duration/5)."
)
@click.option("--scenario", default="mixed", show_default=True, help="Fixture scenario replayed in a loop.")
@click.option("--json", "as_json", is_flag=True, help="Last line: one JSON object with the figures.")
def bench_soak(
    duration: int, rate: float, sample_every: float, baseline_s: int | None, scenario: str, as_json: bool
) -> None:
    """`warroom up` under steady scenario traffic: RSS curve and slope, lag, error logs, rows stored,
    beside the same process idle."""
    from app.bench_soak import run

    run(duration, rate, sample_every, as_json, scenario=scenario, baseline_s=baseline_s)


def _data_args(data: Path | None, name: str, as_json: bool) -> list[str]:
    path = data or Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / name
    return ["--data", str(path)] + (["--json"] if as_json else [])


from app.remediation_cli import remediation  # noqa: E402  (its own module; it does not import this one)

cli.add_command(remediation)

from app.users_cli import users  # noqa: E402  (its own module; it does not import this one)

cli.add_command(users)


@cli.command("up")
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="SERVICES",
    help="Comma-separated subset of: ingest, detect, correlate, summarize, executor, api (default: all).",
)
@click.option("--host", default=None, help="API address; overrides WARROOM_API_HOST.")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Overrides WARROOM_API_PORT.")
@click.option("--step", default=60, show_default=True, type=click.IntRange(10, 3600), help="Detect step, s.")
@click.option("--rules", type=click.Path(path_type=Path), default=None, help="Rules/SLO TOML file.")
@click.option(
    "--interval", default=5.0, show_default=True, type=click.FloatRange(0.5, 3600), help="Correlate poll, s."
)
@click.option(
    "--summarize-every",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 86400),
    help="Seconds between summarize passes.",
)
@click.pass_context
def up_cmd(
    ctx: click.Context,
    only: tuple[str, ...],
    host: str | None,
    port: int | None,
    step: int,
    rules: Path | None,
    interval: float,
    summarize_every: float,
) -> None:
    """Run ingest, detect, correlate, summarize and the API in one process (or --only some of them,
    to run each as its own service) until SIGTERM/SIGINT; a failing service stops them all."""
    from app import up

    try:
        names = up.parse_only(only)
    except InputError as exc:
        raise click.BadParameter(str(exc), param_hint="--only") from exc
    options = up.Options(
        only=names,
        host=host,
        port=port,
        detect_step=step,
        rules=rules,
        correlate_interval=interval,
        summarize_every=summarize_every,
    )

    def ready(services: Sequence[str], url: str | None) -> None:
        where = f"; API on {url}/" if url else ""
        click.echo(f"warroom up: {', '.join(services)}{where} (SIGTERM or Ctrl-C stops)", err=True)

    up.run(settings_of(ctx), options, up.stop_on_signals(), ready)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
