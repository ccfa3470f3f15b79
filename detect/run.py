"""``warroom detect run`` / ``watch``: series from ClickHouse → layered detectors → the ``alerts`` table.

One run covers ``[start, end)`` on the step grid. It fetches the series (with ``history`` before
``start`` so baselines exist), mines log templates of the window's log records (template ids go to
``warroom_log_template_ids`` so every log row can be joined to its template; per-template counts
become ``log_template_rate`` series — a brand-new error template is a series jumping from zero),
runs :func:`detect.alerting.detect_series`, attaches exemplar trace ids and log lines to each
alert, and writes alerts. All state — detectors, hysteresis, template miner, the last processed
step — is saved as versioned JSON after every run, so runs resume where the previous one stopped
and ``watch`` is simply a run per step.

**Shards** (:mod:`detect.sharding`). With ``RunConfig.shard`` = ``I/N`` a runner drops the series
its shard does not own right after building them (metric, log and template series alike), before
any detector sees them, so its state only ever holds owned series and N runners over the same store
score every series exactly once. Each shard needs its own state file; choosing it is the caller's
job (:func:`state_file`). Log-template mining is not sharded: every shard mines the window's logs
(template ids are needed for the template series of its services) and writes the same rows to the
idempotent template side tables.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from detect.alerting import AlertPolicy, DetectState, alerts_from_changes, detect_series
from detect.log_templates import TemplateMiner
from detect.ml import MlConfig
from detect.rules import RuleSet, load_rules
from detect.series import fetch_series
from detect.series_common import SeriesLimits
from detect.sharding import Shard
from warroom import alerts as alert_store
from warroom import schema as s
from warroom.clickhouse import ClickHouse
from warroom.errors import InputError, StoreError
from warroom.model import Alert, Evidence, Series, SeriesKey, SignalKind

log = logging.getLogger("warroom.detect")

STATE_FORMAT = 1
TEMPLATE_IDS = "warroom_log_template_ids"
TEMPLATES = "warroom_log_templates"

_TEMPLATE_IDS_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} {on_cluster} (
    BodyHash UInt64,
    ServiceName LowCardinality(String),
    TemplateId String,
    Seen DateTime64(3)
) ENGINE = {engine} ORDER BY (BodyHash, ServiceName)
"""
_TEMPLATES_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} {on_cluster} (
    TemplateId String,
    ServiceName LowCardinality(String),
    Template String,
    FirstSeen DateTime64(3),
    Seen DateTime64(3)
) ENGINE = {engine} ORDER BY (TemplateId, ServiceName)
"""
#: On a cluster: one row per distinct log body can grow large, so ids are spread by their sort key
#: (every version of a row meets on one shard for ``FINAL``); templates are few, on one shard.
_TEMPLATE_SPECS = (
    s.TableSpec(
        TEMPLATE_IDS,
        _TEMPLATE_IDS_DDL,
        engine="ReplacingMergeTree(Seen)",
        shard_key="cityHash64(BodyHash, ServiceName)",
    ),
    s.TableSpec(TEMPLATES, _TEMPLATES_DDL, engine="ReplacingMergeTree(Seen)"),
)


def _create_template_tables(store: ClickHouse, opts: s.SchemaOptions) -> None:
    for spec in _TEMPLATE_SPECS:
        s.create_table(store, opts, spec)


MIGRATION = s.Migration(200, "log template side tables", _create_template_tables)


@dataclass
class RunConfig:
    step_s: int = 60
    history: timedelta = timedelta(hours=2)
    rules: RuleSet = field(default_factory=RuleSet)
    limits: SeriesLimits = field(default_factory=SeriesLimits)
    # Layer 2 (PyOD over per-service feature vectors) is on: it corroborates what L1 escalates.
    policy: AlertPolicy = field(default_factory=lambda: AlertPolicy(ml=MlConfig()))
    max_log_lines: int = 200_000
    template_top_n: int = 200
    template_warmup: timedelta = timedelta(minutes=30)  # templates seen first after this are "new"
    shard: Shard = Shard(0, 1)  # score only the series this shard owns; 0/1 owns them all


@dataclass
class RunResult:
    start: datetime
    end: datetime
    series: int
    opened: list[Alert]
    written: int
    templates: int
    new_templates: int
    not_owned: int = 0  # series skipped because another shard owns them
    keys: tuple[SeriesKey, ...] = ()  # the series scored by this run, in scoring order


class DetectRunner:
    """Owns the persistent detection state of one installation (or one shard)."""

    def __init__(self, store: ClickHouse, state_path: Path, config: RunConfig | None = None) -> None:
        self.store = store
        self.state_path = state_path
        self.config = config or RunConfig()
        self.state, self.miner, self.last_end, self.known_templates, self.new_templates = self._load()
        self.first_log: int | None = self._first_log

    # -- state -------------------------------------------------------------------------------

    def _load(self) -> tuple[DetectState, TemplateMiner, int | None, set[str], dict[str, int]]:
        self._first_log: int | None = None
        if not self.state_path.exists():
            return DetectState(), TemplateMiner(bucket_seconds=self.config.step_s), None, set(), {}
        try:
            payload = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                f"detection state {self.state_path} is unreadable: {exc}", reason="bad_state"
            ) from exc
        if payload.get("format") != STATE_FORMAT:
            raise InputError(f"detection state {self.state_path}: unknown format {payload.get('format')!r}")
        saved_shard = payload.get("shard", "0/1")  # states from before sharding were unsharded
        if saved_shard != str(self.config.shard):
            # Another shard's (or another N's) series and models: resuming from it would score
            # series this shard does not own and miss the ones it does.
            raise InputError(
                f"detection state {self.state_path} belongs to shard {saved_shard}, not {self.config.shard}",
                reason="wrong_shard",
            )
        state = DetectState.from_json(json.dumps(payload["alerting"]), slos=self.config.rules.slos)
        miner = TemplateMiner.loads(payload["templates"].encode())
        known = set(payload.get("known_templates", []))
        self._first_log = payload.get("first_log")
        return state, miner, payload.get("last_end"), known, dict(payload.get("new_templates", {}))

    def save(self) -> None:
        payload = {
            "format": STATE_FORMAT,
            "kind": "warroom.detect.run",
            "shard": str(self.config.shard),
            "last_end": self.last_end,
            "alerting": json.loads(self.state.to_json()),
            "templates": self.miner.dumps().decode(),
            "known_templates": sorted(self.known_templates),
            "first_log": self.first_log,
            "new_templates": self.new_templates,
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self.state_path)

    # -- one run -----------------------------------------------------------------------------

    def run(self, start: datetime, end: datetime) -> RunResult:
        """Detect over ``[start, end)``; points already processed by earlier runs are skipped."""
        step = self.config.step_s
        start, end = _floor(start, step), _floor(end, step)
        if end <= start:
            raise InputError(
                f"empty detection window {start.isoformat()} … {end.isoformat()}", reason="bad_window"
            )
        fetch_start = start - self.config.history
        series, report = fetch_series(self.store, fetch_start, end, step, self.config.limits)
        template_series, new_templates = self._template_series(fetch_start, end, start)
        # Shard filter first: no detector, and so no saved state, ever sees another shard's series.
        series, not_owned = self.config.shard.split(series + template_series)
        resource = self._resource(fetch_start, end)
        result = detect_series(
            series, rules=self.config.rules, state=self.state, policy=self.config.policy, resource=resource
        )
        # The history before ``start`` only trains the detectors on a first run: what it would have
        # raised is not news. Later runs resume from their saved state and report everything.
        first_run = self.last_end is None
        changed = [a for a in alerts_from_changes(result.changes) if not (first_run and a.starts_at < start)]
        enriched = [self._enrich(a) for a in changed]
        written = alert_store.write(self.store, enriched) if enriched else 0
        self.last_end = int(end.timestamp())
        self.save()
        opened = [self._enrich(a) for a in result.opened if not (first_run and a.starts_at < start)]
        log.info(
            "detection run",
            extra={
                "start": start.isoformat(),
                "end": end.isoformat(),
                "series": len(series),
                "opened": len(opened),
                "written": written,
                "dropped_series": report.dropped_total,
                "shard": str(self.config.shard),
                "not_owned_series": not_owned,
            },
        )
        return RunResult(
            start,
            end,
            len(series),
            opened,
            written,
            len(self.miner),
            len(new_templates),
            not_owned,
            tuple(s.key for s in series),
        )

    # -- log templates -----------------------------------------------------------------------

    def _template_series(
        self, fetch_start: datetime, end: datetime, start: datetime
    ) -> tuple[list[Series], list[str]]:
        """Mine the window's log bodies; per (service, template) counts on the grid."""
        step = self.config.step_s
        rows = self.store.rows(
            "SELECT toUnixTimestamp(Timestamp), ServiceName, Body, cityHash64(Body), SeverityNumber "
            f"FROM {self.store.table(s.LOGS)} "
            "WHERE Timestamp >= {a:DateTime64(3)} AND Timestamp < {b:DateTime64(3)} "
            "ORDER BY Timestamp LIMIT {n:UInt32}",
            {"a": fetch_start, "b": end, "n": self.config.max_log_lines},
        )
        grid0 = int(fetch_start.timestamp()) // step * step
        buckets = (int(end.timestamp()) - grid0) // step
        counts: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
        ids: dict[tuple[int, str], str] = {}
        new: list[str] = []
        known_before = set(self.known_templates)
        if rows and self.first_log is None:
            self.first_log = int(rows[0][0])
        warm = (self.first_log or 0) + self.config.template_warmup.total_seconds()
        for ts, service, body, body_hash, severity in rows:
            match = self.miner.add(f"{body}", float(ts))
            counts[(service, match.template_id)][(int(ts) - grid0) // step] += 1
            ids[(int(body_hash), service)] = match.template_id
            known = f"{service}\x1f{match.template_id}"
            if known not in self.known_templates:
                self.known_templates.add(known)
                if ts >= warm and severity >= 13 and known not in known_before:
                    self.new_templates[known] = int(ts)  # a new WARN/ERROR pattern after warm-up
                    new.append(match.template_id)
        self._write_template_ids(ids)
        ranked = sorted(counts.items(), key=lambda kv: -sum(kv[1].values()))[: self.config.template_top_n]
        out = []
        grid = tuple(grid0 + i * step for i in range(buckets))
        for (service, tid), per_bucket in ranked:
            rate_key = SeriesKey(SignalKind.LOG_TEMPLATE_RATE, service, (("template", tid),))
            values = tuple(float(per_bucket.get(i, 0)) / step for i in range(buckets))
            out.append(Series(rate_key, step, grid, values))
        # New WARN/ERROR templates get their own series, in lines per step, zero before they appeared:
        # the code fault that metrics miss shows up here first.
        for key_text in self.new_templates:
            service, tid = key_text.split("\x1f")
            per_bucket = counts.get((service, tid), Counter())
            new_key = SeriesKey(SignalKind.NEW_LOG_TEMPLATE, service, (("template", tid),))
            values = tuple(float(per_bucket.get(i, 0)) for i in range(buckets))
            out.append(Series(new_key, step, grid, values))
        return out, new

    def _write_template_ids(self, ids: dict[tuple[int, str], str]) -> None:
        if not ids:
            return
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        items = list(ids.items())
        self.store.insert(
            TEMPLATE_IDS,
            ("BodyHash", "ServiceName", "TemplateId", "Seen"),
            [
                [k[0] for k, _ in items],
                [k[1] for k, _ in items],
                [v for _, v in items],
                [now_ms] * len(items),
            ],
        )
        templates = {(svc, tid) for (_, svc), tid in items}
        rows = [(tid, svc, self.miner.template(tid) or "") for svc, tid in sorted(templates)]
        self.store.insert(
            TEMPLATES,
            ("TemplateId", "ServiceName", "Template", "FirstSeen", "Seen"),
            [
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [now_ms] * len(rows),
                [now_ms] * len(rows),
            ],
        )

    # -- context for alerts ------------------------------------------------------------------

    def _resource(self, start: datetime, end: datetime) -> dict[str, dict[str, str]]:
        """Per service: the resource attributes correlation uses (host, pod, node, version)."""
        rows = self.store.rows(
            "SELECT ServiceName, argMax(ResourceAttributes['host.name'], Timestamp), "
            "argMax(ResourceAttributes['k8s.pod.name'], Timestamp), "
            "argMax(ResourceAttributes['k8s.node.name'], Timestamp), "
            "argMax(ResourceAttributes['service.version'], Timestamp) "
            f"FROM {self.store.table(s.TRACES)} WHERE Timestamp >= {{a:DateTime64(3)}} AND Timestamp < "
            "{b:DateTime64(3)} GROUP BY ServiceName",
            {"a": start, "b": end},
        )
        names = ("host.name", "k8s.pod.name", "k8s.node.name", "service.version")
        return {r[0]: {n: v for n, v in zip(names, r[1:], strict=True) if v} for r in rows}

    def _enrich(self, alert: Alert) -> Alert:
        """Exemplar trace ids and sample log lines from the alert's service around its onset."""
        service = alert.service
        if not service or alert.evidence.trace_ids:
            return alert
        window_start = alert.starts_at - timedelta(seconds=2 * self.config.step_s)
        window_end = alert.starts_at + timedelta(seconds=5 * self.config.step_s)
        traces = self.store.rows(
            f"SELECT TraceId FROM {self.store.table(s.TRACES)} WHERE ServiceName = {{svc:String}} "
            "AND Timestamp >= {a:DateTime64(3)} AND Timestamp < {b:DateTime64(3)} AND TraceId != '' "
            "ORDER BY (StatusCode = 'Error') DESC, Duration DESC LIMIT 5",
            {"svc": service, "a": window_start, "b": window_end},
        )
        logs = self.store.rows(
            f"SELECT Body FROM {self.store.table(s.LOGS)} WHERE ServiceName = {{svc:String}} "
            "AND Timestamp >= {a:DateTime64(3)} AND Timestamp < {b:DateTime64(3)} "
            "ORDER BY SeverityNumber DESC, Timestamp LIMIT 5",
            {"svc": service, "a": window_start, "b": window_end},
        )
        template = ""
        if alert.labels.get("template"):
            template = self.miner.template(alert.labels["template"]) or ""
        evidence = Evidence(
            window_start=alert.evidence.window_start,
            step_s=alert.evidence.step_s,
            values=alert.evidence.values,
            trace_ids=tuple(r[0] for r in traces),
            log_samples=tuple(r[0][:500] for r in logs),
            log_template=template or alert.evidence.log_template,
            query=alert.evidence.query,
        )
        return replace(alert, evidence=evidence)


def _floor(when: datetime, step: int) -> datetime:
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(when.timestamp()) // step * step, tz=UTC)


def state_file(home: Path, shard: Shard) -> Path:
    """Where a runner of ``shard`` keeps its state under ``home``: ``state/detect.json`` unsharded
    (unchanged, so existing installs resume), ``state/detect-0of2.json`` otherwise — shards sharing
    one home must never share (and overwrite) each other's state, and a different N is a fresh
    split whose state must not be mixed with the old one's."""
    name = f"detect-{shard.tag}.json" if shard.sharded else "detect.json"
    return home / "state" / name


def load_rules_file(path: Path | None) -> RuleSet:
    return load_rules(path) if path else RuleSet()


def describe(result: RunResult) -> dict[str, Any]:
    return {
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "series": result.series,
        "alerts_opened": len(result.opened),
        "alert_rows_written": result.written,
        "log_templates": result.templates,
        "new_log_templates": result.new_templates,
        "not_owned_series": result.not_owned,
    }


def watch(runner: DetectRunner, stop: threading.Event, step: int, on_opened: Callable[[Alert], None]) -> None:
    """Detection over the newest complete step, every step, until ``stop``; resumes from the
    runner's state after a restart (its ``last_end``). A store outage skips the pass without
    marking the window done, so the next pass covers it too."""
    while not stop.is_set():
        end = datetime.fromtimestamp(int(time.time()) // step * step, tz=UTC)
        start = (
            datetime.fromtimestamp(runner.last_end, tz=UTC)
            if runner.last_end
            else end - timedelta(seconds=step)
        )
        if end > start:
            try:
                result = runner.run(start, end)
            except StoreError as exc:
                if not exc.retryable:
                    raise
                log.warning("detection pass failed; retrying next step", extra={"error": str(exc)})
            else:
                for alert in result.opened:
                    on_opened(alert)
        stop.wait(max(1.0, step - (time.time() - end.timestamp())))
