"""The evidence pack: numbered facts about one incident, each with the exact query behind it.

A summary may only say what this pack holds, so the pack is built from the stored telemetry alone,
by small collectors listed in :data:`COLLECTORS` (their order is the order of the ids):

* ``impact`` — error ratio and p95 latency of each affected service and its worst endpoints,
  during the incident against the hour before;
* ``anomaly`` — each alert: detector, observed against baseline, its series and the detector's query;
* ``change`` — a service whose ``service.version`` changed shortly before the onset (a deploy);
* ``topology`` — call edges whose latency or errors changed (CLIENT spans, so a database without
  telemetry of its own is seen through its callers), and the call path from the entry service
  to each candidate cause;
* ``log_template`` — new or spiking warning/error log patterns (numbers and ids masked in SQL);
* ``saturation`` — process CPU, memory growth and restarts (memory drops), and host CPU, for the
  incident's services and every workload sharing their nodes (a noisy neighbour shows up);
* ``trace_exemplar`` — the slowest and failing server spans of the candidate causes.

Every query binds its values (``{name:Type}``) and the item keeps them: ``clickhouse-client
--param_name=value`` or ``store.rows(item.query, item.params)`` re-runs it as is.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from summarize.model import EvidenceItem, EvidenceKind, EvidencePack
from warroom import schema
from warroom.alerts import ALERTS
from warroom.clickhouse import ClickHouse
from warroom.incident import Incident
from warroom.model import Alert

__all__ = ["COLLECTORS", "EvidenceConfig", "Scope", "collect"]


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    lead: timedelta = timedelta(minutes=20)
    """Detection lags the onset: the incident window starts this long before its first alert."""
    baseline: timedelta = timedelta(hours=1)
    """Length of the "before" window the incident is compared with."""
    change_lookback: timedelta = timedelta(minutes=45)
    """A deploy this long before the window start still counts as a change behind the incident."""
    max_alerts: int = 12
    max_endpoints: int = 3
    max_templates: int = 6
    max_edges: int = 8
    exemplars: int = 5


@dataclass(frozen=True, slots=True)
class Scope:
    """What the collectors look at: the incident's services and windows, bound once."""

    incident: Incident
    alerts: tuple[Alert, ...]
    services: tuple[str, ...]  # the incident's, its alerts' and the degraded callees downstream
    candidates: tuple[str, ...]  # root-cause candidates, best first
    start: datetime
    end: datetime
    base_start: datetime
    calls: Calls  # the window's call graph: it widens ``services`` to the degraded callees
    config: EvidenceConfig

    def params(self, **extra: Any) -> dict[str, Any]:
        """The bound values every query shares, written as ``clickhouse-client`` accepts them."""
        return {
            "base_start": _ts(self.base_start),
            "start": _ts(self.start),
            "end": _ts(self.end),
            **extra,
        }

    @property
    def during_s(self) -> float:
        return max((self.end - self.start).total_seconds(), 1.0)

    @property
    def before_s(self) -> float:
        return max((self.start - self.base_start).total_seconds(), 1.0)


@dataclass(frozen=True, slots=True)
class Draft:
    """An item before it is numbered."""

    kind: EvidenceKind
    service: str
    title: str
    start: datetime
    end: datetime
    values: Mapping[str, Any] = field(default_factory=dict)
    samples: tuple[str, ...] = ()
    points: tuple[tuple[int, float | None], ...] = ()
    query: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)


Collector = Callable[[ClickHouse, Scope], list[Draft]]


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _r(value: float | None, digits: int = 3) -> float:
    if value is None or not math.isfinite(value):
        return 0.0
    return round(float(value), digits)


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f}%"


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


# --- impact ---------------------------------------------------------------------------------------

_IMPACT_SQL = """
SELECT ServiceName{group},
       countIf(Timestamp >= {{start:DateTime64(3)}}) AS requests,
       countIf(Timestamp >= {{start:DateTime64(3)}} AND StatusCode = 'Error') AS errors,
       quantileIf(0.95)(Duration, Timestamp >= {{start:DateTime64(3)}}) / 1e6 AS p95_ms,
       countIf(Timestamp < {{start:DateTime64(3)}}) AS requests_before,
       countIf(Timestamp < {{start:DateTime64(3)}} AND StatusCode = 'Error') AS errors_before,
       quantileIf(0.95)(Duration, Timestamp < {{start:DateTime64(3)}}) / 1e6 AS p95_ms_before,
       any(ResourceAttributes['k8s.namespace.name']) AS namespace
FROM {table}
WHERE ServiceName IN {{services:Array(String)}} AND SpanKind = 'Server'
  AND Timestamp >= {{base_start:DateTime64(3)}} AND Timestamp < {{end:DateTime64(3)}}
GROUP BY ServiceName{group}
ORDER BY ServiceName{group}
"""


def _impact_values(row: Sequence[Any]) -> dict[str, Any]:
    requests, errors, p95, before, errors_before, p95_before = row[:6]
    namespace = {"namespace": str(row[6])} if len(row) > 6 and row[6] else {}
    return {
        **namespace,
        "requests": int(requests),
        "errors": int(errors),
        "error_ratio": _r(errors / requests if requests else 0.0, 4),
        "p95_ms": _r(p95, 1),
        "requests_before": int(before),
        "error_ratio_before": _r(errors_before / before if before else 0.0, 4),
        "p95_ms_before": _r(p95_before, 1),
    }


def _impact_title(subject: str, v: Mapping[str, Any]) -> str:
    return (
        f"{subject}: {_pct(v['error_ratio'])} errors of {v['requests']} requests "
        f"(before {_pct(v['error_ratio_before'])}), p95 {_ms(v['p95_ms'])} (before {_ms(v['p95_ms_before'])})"
    )


def _degraded(v: Mapping[str, Any]) -> float:
    """How much worse than before: extra error ratio plus relative latency growth (0 = unchanged)."""
    extra_errors = max(0.0, v["error_ratio"] - v["error_ratio_before"])
    slower = max(0.0, v["p95_ms"] / v["p95_ms_before"] - 1.0) if v["p95_ms_before"] > 0 else 0.0
    return extra_errors * 10 + min(slower, 10.0) / 2


def impact(store: ClickHouse, scope: Scope) -> list[Draft]:
    table = store.table(schema.TRACES)
    out: list[Draft] = []
    services_sql = _IMPACT_SQL.format(table=table, group="")
    params = scope.params(services=list(scope.services))
    for name, *row in store.rows(services_sql, params):
        values = _impact_values(row)
        out.append(
            Draft(
                EvidenceKind.IMPACT,
                name,
                _impact_title(name, values),
                scope.start,
                scope.end,
                values,
                query=services_sql,
                params=params,
            )
        )
    endpoint_sql = _IMPACT_SQL.format(table=table, group=", SpanName")
    endpoints = []
    for name, span, *row in store.rows(endpoint_sql, params):
        values = _impact_values(row)
        if values["requests"] >= 5 and _degraded(values) > 0.3:
            endpoints.append((_degraded(values), name, span, values))
    endpoints.sort(key=lambda e: (-e[0], e[1], e[2]))
    for _, name, span, values in endpoints[: scope.config.max_endpoints]:
        out.append(
            Draft(
                EvidenceKind.IMPACT,
                name,
                _impact_title(f"{name} {span}", {**values}),
                scope.start,
                scope.end,
                {**values, "endpoint": span},
                query=endpoint_sql,
                params=params,
            )
        )
    return out


# --- anomalies (the alerts themselves) -------------------------------------------------------------


_ALERT_SQL = """
SELECT * FROM {table} FINAL
WHERE Fingerprint = {{fingerprint:String}} AND StartsAt = {{starts_at:DateTime64(3)}}
"""


def anomalies(store: ClickHouse, scope: Scope) -> list[Draft]:
    out = []
    seen: set[str] = set()
    for alert in sorted(scope.alerts, key=lambda a: (a.starts_at, a.fingerprint)):
        if alert.fingerprint in seen:
            continue
        seen.add(alert.fingerprint)
        finding = max(alert.findings, key=lambda f: f.score, default=None)
        values: dict[str, Any] = {"score": _r(alert.score), "severity": alert.severity.value}
        if finding is not None:
            values["detector"] = finding.detector
            if finding.observed is not None:
                values["observed"] = _r(finding.observed, 4)
            if finding.baseline is not None:
                values["baseline"] = _r(finding.baseline, 4)
        for label in ("signal", "metric", "operation", "edge"):
            if alert.labels.get(label):
                values[label] = alert.labels[label]
        ev = alert.evidence
        points = tuple(
            (ev.window_start + i * ev.step_s, v) for i, v in enumerate(ev.values) if ev.window_start
        )
        end = alert.ends_at or scope.end
        out.append(
            Draft(
                EvidenceKind.ANOMALY,
                alert.service,
                f"alert {alert.title} from {alert.starts_at:%H:%M}"
                + (f" to {alert.ends_at:%H:%M}" if alert.ends_at else ", still firing"),
                alert.starts_at,
                end,
                values,
                samples=(*ev.log_samples[:3], *(f"trace {t}" for t in ev.trace_ids[:3])),
                points=points,
                # The detector's own query when it has one; else the alert row itself.
                query=ev.query or _ALERT_SQL.format(table=store.table(ALERTS)),
                params={}
                if ev.query
                else {"fingerprint": alert.fingerprint, "starts_at": _ts(alert.starts_at)},
            )
        )
        if len(out) >= scope.config.max_alerts:
            break
    return out


# --- deploys -------------------------------------------------------------------------------------

_CHANGE_SQL = """
SELECT ServiceName, ResourceAttributes['service.version'] AS version,
       min(Timestamp) AS first_seen, max(Timestamp) AS last_seen, count() AS spans,
       any(ResourceAttributes['k8s.namespace.name']) AS namespace
FROM {table}
WHERE ServiceName IN {{services:Array(String)}} AND SpanKind = 'Server'
  AND Timestamp >= {{base_start:DateTime64(3)}} AND Timestamp < {{end:DateTime64(3)}}
GROUP BY ServiceName, version
ORDER BY ServiceName, first_seen
"""


def changes(store: ClickHouse, scope: Scope) -> list[Draft]:
    sql = _CHANGE_SQL.format(table=store.table(schema.TRACES))
    params = scope.params(services=list(scope.services))
    versions: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in store.rows(sql, params):
        versions[row[0]].append(row[1:])
    onset = scope.incident.started_at
    earliest = scope.start - scope.config.change_lookback
    out = []
    for service, rows in sorted(versions.items()):
        if len(rows) < 2:
            continue
        old, new = rows[-2], rows[-1]
        first_seen = _aware(new[1], onset)
        if not earliest <= first_seen <= onset + timedelta(minutes=5) or first_seen <= scope.base_start:
            continue
        lead_min = round((onset - first_seen).total_seconds() / 60)
        values = {
            "from_version": str(old[0]),
            "to_version": str(new[0]),
            "first_seen": first_seen.strftime("%H:%M"),
            "minutes_before_first_alert": lead_min,
            "namespace": str(new[4] or ""),
            "spans_new_version": int(new[3]),
        }
        out.append(
            Draft(
                EvidenceKind.CHANGE,
                service,
                f"deploy: {service} {old[0]} → {new[0]}, first seen {first_seen:%H:%M} "
                f"({lead_min} min before the first alert)",
                first_seen,
                scope.end,
                values,
                query=sql,
                params=params,
            )
        )
    return out


def _aware(value: Any, like: datetime) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=like.tzinfo)
    assert isinstance(value, datetime)
    return value


# --- call edges and paths -----------------------------------------------------------------------

_EDGE_SQL = """
WITH (
    SELECT groupUniqArray(ServiceName) FROM {table}
    WHERE SpanKind = 'Server'
      AND Timestamp >= {{base_start:DateTime64(3)}} AND Timestamp < {{end:DateTime64(3)}}
) AS instrumented
SELECT ServiceName AS caller, SpanAttributes['peer.service'] AS callee,
       countIf(Timestamp >= {{start:DateTime64(3)}}) AS calls,
       countIf(Timestamp >= {{start:DateTime64(3)}} AND StatusCode = 'Error') AS errors,
       quantileIf(0.95)(Duration, Timestamp >= {{start:DateTime64(3)}}) / 1e6 AS p95_ms,
       countIf(Timestamp < {{start:DateTime64(3)}}) AS calls_before,
       countIf(Timestamp < {{start:DateTime64(3)}} AND StatusCode = 'Error') AS errors_before,
       quantileIf(0.95)(Duration, Timestamp < {{start:DateTime64(3)}}) / 1e6 AS p95_ms_before,
       has(instrumented, callee) AS callee_instrumented
FROM {table}
WHERE SpanKind = 'Client' AND SpanAttributes['peer.service'] != ''
  AND Timestamp >= {{base_start:DateTime64(3)}} AND Timestamp < {{end:DateTime64(3)}}
GROUP BY caller, callee
ORDER BY caller, callee
"""


@dataclass(frozen=True, slots=True)
class Calls:
    """The call graph of the window (CLIENT spans) and its degraded edges, with the query behind it."""

    graph: Mapping[str, frozenset[str]]
    degraded: Mapping[tuple[str, str], Mapping[str, Any]]
    query: str
    params: Mapping[str, Any]

    def downstream(self, start: Iterable[str]) -> set[str]:
        """``start`` and every service reached from it over degraded edges (caller → callee).

        Latency and errors travel from callee to caller, so this walk goes where they came from.
        """
        reached = set(start)
        frontier = list(reached)
        while frontier:
            node = frontier.pop()
            for caller, callee in self.degraded:
                if caller == node and callee not in reached:
                    reached.add(callee)
                    frontier.append(callee)
        return reached

    def sinks(self, edges: Iterable[tuple[str, str]]) -> set[str]:
        """Callees of ``edges`` whose own calls did not degrade: where the trouble starts."""
        return {callee for _, callee in edges if not any(c == callee for c, _ in self.degraded)}


def calls(store: ClickHouse, params: Mapping[str, Any]) -> Calls:
    sql = _EDGE_SQL.format(table=store.table(schema.TRACES))
    graph: dict[str, set[str]] = defaultdict(set)
    degraded: dict[tuple[str, str], dict[str, Any]] = {}
    for caller, callee, *row in store.rows(sql, params):
        graph[caller].add(callee)
        values = _impact_values(row[:6])
        if values["requests"] >= 5 and _degraded(values) > 0.3:
            degraded[(caller, callee)] = {**values, "callee_instrumented": "yes" if row[6] else "no"}
    return Calls({k: frozenset(v) for k, v in graph.items()}, degraded, sql, dict(params))


def edges(store: ClickHouse, scope: Scope) -> list[Draft]:
    """Degraded call edges downstream of the incident, then the call paths to the likely causes.

    A degraded callee with no degraded call of its own (a *sink*) is where the trouble starts, even
    when it has no telemetry of its own (a database).
    """
    sql, params, degraded = scope.calls.query, scope.calls.params, scope.calls.degraded
    relevant = sorted(
        ((e, v) for e, v in degraded.items() if e[0] in scope.services or e[1] in scope.services),
        key=lambda ev: (-_degraded(ev[1]), ev[0]),
    )
    sinks = scope.calls.sinks(e for e, _ in relevant)
    out = []
    for (caller, callee), v in relevant[: scope.config.max_edges]:
        values = {
            "caller": caller,
            "callee": callee,
            "calls": v["requests"],
            "error_ratio": v["error_ratio"],
            "error_ratio_before": v["error_ratio_before"],
            "p95_ms": v["p95_ms"],
            "p95_ms_before": v["p95_ms_before"],
            "callee_instrumented": v["callee_instrumented"],
            "callee_calls_degraded": "no" if callee in sinks else "yes",
        }
        out.append(
            Draft(
                EvidenceKind.TOPOLOGY,
                callee,
                f"calls {caller} → {callee}: p95 {_ms(v['p95_ms'])} (before {_ms(v['p95_ms_before'])}), "
                f"{_pct(v['error_ratio'])} errors (before {_pct(v['error_ratio_before'])}) "
                f"over {v['requests']} calls",
                scope.start,
                scope.end,
                values,
                query=sql,
                params=params,
            )
        )
    graph = scope.calls.graph
    called = {c for callees in graph.values() for c in callees}
    entries = sorted(s for s in graph if s not in called)
    for target in dict.fromkeys([*scope.candidates[:3], *sorted(sinks)]):
        path = _path(graph, entries, target)
        if len(path) > 1:
            out.append(
                Draft(
                    EvidenceKind.TOPOLOGY,
                    target,
                    "call path " + " → ".join(path),
                    scope.start,
                    scope.end,
                    {"path": " → ".join(path), "hops": len(path) - 1},
                    query=sql,
                    params=params,
                )
            )
    return out


def _path(graph: Mapping[str, Iterable[str]], entries: Sequence[str], target: str) -> list[str]:
    """Shortest caller → callee path from an entry service to ``target`` (breadth first)."""
    for entry in entries:
        parents: dict[str, str] = {entry: entry}
        frontier = [entry]
        while frontier:
            nxt = []
            for node in frontier:
                for callee in sorted(graph.get(node, ())):
                    if callee not in parents:
                        parents[callee] = node
                        nxt.append(callee)
            frontier = nxt
        if target in parents:
            path = [target]
            while path[-1] != entry:
                path.append(parents[path[-1]])
            return path[::-1]
    return []


# --- logs ----------------------------------------------------------------------------------------

_MASK = r"[0-9a-fA-F]{8,}(-[0-9a-fA-F]{4,})*|\d+(\.\d+)*"
_LOG_SQL = """
SELECT ServiceName, SeverityText, replaceRegexpAll(Body, {{mask:String}}, '<*>') AS template,
       countIf(Timestamp >= {{start:DateTime64(3)}}) AS during,
       countIf(Timestamp < {{start:DateTime64(3)}}) AS before,
       minIf(Timestamp, Timestamp >= {{start:DateTime64(3)}}) AS first_seen,
       groupUniqArrayIf(3)(Body, Timestamp >= {{start:DateTime64(3)}}) AS samples
FROM {table}
WHERE ServiceName IN {{services:Array(String)}} AND SeverityNumber >= 13
  AND Timestamp >= {{base_start:DateTime64(3)}} AND Timestamp < {{end:DateTime64(3)}}
GROUP BY ServiceName, SeverityText, template
HAVING during >= 3
ORDER BY during DESC, ServiceName, template
LIMIT 50
"""


def log_templates(store: ClickHouse, scope: Scope) -> list[Draft]:
    sql = _LOG_SQL.format(table=store.table(schema.LOGS))
    params = scope.params(services=list(scope.services), mask=_MASK)
    scale = scope.during_s / scope.before_s
    picked = []
    for service, severity, template, during, before, first_seen, samples in store.rows(sql, params):
        expected = before * scale
        if before and during < 3 * expected + 3:
            continue  # as common as before: not part of this incident
        picked.append((service, severity, template, int(during), int(before), first_seen, samples))
    out = []
    for service, severity, template, during, before, first_seen, samples in picked[
        : scope.config.max_templates
    ]:
        first = _aware(first_seen, scope.start)
        status = "new" if before == 0 else "spiking"
        out.append(
            Draft(
                EvidenceKind.LOG_TEMPLATE,
                service,
                f"{status} {severity} log pattern in {service}: {template[:160]!r} "
                f"×{during} (before ×{before}), first at {first:%H:%M}",
                first,
                scope.end,
                {
                    "template": template,
                    "severity": severity,
                    "count": during,
                    "count_before": before,
                    "status": status,
                },
                samples=tuple(sorted(str(s) for s in samples))[:3],
                query=sql,
                params=params,
            )
        )
    return out


# --- saturation ----------------------------------------------------------------------------------

_SATURATION_SQL = """
SELECT ServiceName, MetricName, toStartOfMinute(TimeUnix) AS minute, max(Value) AS value,
       any(ResourceAttributes['k8s.node.name']) AS node,
       uniqExact(ResourceAttributes['service.instance.id']) AS instances
FROM {table}
WHERE (ServiceName IN {{services:Array(String)}}
       OR ResourceAttributes['k8s.node.name'] IN {{services:Array(String)}}
       OR ResourceAttributes['k8s.node.name'] IN (
           SELECT ResourceAttributes['k8s.node.name'] FROM {table}
           WHERE ServiceName IN {{services:Array(String)}}
             AND TimeUnix >= {{base_start:DateTime64(3)}} AND TimeUnix < {{end:DateTime64(3)}}))
  AND MetricName IN ('process.cpu.utilization', 'process.memory.usage')
  AND TimeUnix >= {{base_start:DateTime64(3)}} AND TimeUnix < {{end:DateTime64(3)}}
GROUP BY ServiceName, MetricName, minute
ORDER BY ServiceName, MetricName, minute
"""
_HOST_SQL = """
SELECT ResourceAttributes['host.name'] AS host, toStartOfMinute(TimeUnix) AS minute, max(Value) AS value
FROM {table}
WHERE MetricName = 'system.cpu.utilization' AND ResourceAttributes['host.name'] IN {{hosts:Array(String)}}
  AND TimeUnix >= {{base_start:DateTime64(3)}} AND TimeUnix < {{end:DateTime64(3)}}
GROUP BY host, minute
ORDER BY host, minute
"""


def saturation(store: ClickHouse, scope: Scope) -> list[Draft]:
    table = store.table(schema.GAUGE)
    sql = _SATURATION_SQL.format(table=table)
    params = scope.params(services=list(scope.services))
    series: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    nodes: dict[str, str] = {}
    instances: dict[str, int] = defaultdict(int)
    for service, metric, minute, value, node, count in store.rows(sql, params):
        series[(service, metric)].append((_aware(minute, scope.start), float(value)))
        if node:
            nodes[service] = str(node)
        instances[service] = max(instances[service], int(count))
    out = []
    for (service, metric), points in sorted(series.items()):
        draft = (_cpu if metric == "process.cpu.utilization" else _memory)(service, points, scope)
        if draft is not None:
            values = {**draft.values, "instances": instances[service], "node": nodes.get(service, "")}
            out.append(replace(draft, values=values, query=sql, params=params))
    hosts = sorted(set(nodes.values()))
    if hosts:
        host_sql = _HOST_SQL.format(table=table)
        host_params = scope.params(hosts=hosts)
        by_host: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
        for host, minute, value in store.rows(host_sql, host_params):
            by_host[host].append((_aware(minute, scope.start), float(value)))
        for host, points in sorted(by_host.items()):
            draft = _cpu(host, points, scope, what="host CPU")
            if draft is not None:
                workloads = sorted(s for s, n in nodes.items() if n == host)
                out.append(
                    replace(
                        draft,
                        values={**draft.values, "host": host, "workloads": ", ".join(workloads)},
                        title=draft.title + f" (runs {', '.join(workloads)})",
                        query=host_sql,
                        params=host_params,
                    )
                )
    return out


def _split(points: Sequence[tuple[datetime, float]], scope: Scope) -> tuple[list[float], list[float]]:
    before = [v for t, v in points if t < scope.start]
    during = [v for t, v in points if t >= scope.start]
    return before, during


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _chart(
    points: Sequence[tuple[datetime, float]], scale: float = 1.0
) -> tuple[tuple[int, float | None], ...]:
    return tuple((int(t.timestamp()), round(v * scale, 4)) for t, v in points)


def _cpu(
    subject: str, points: Sequence[tuple[datetime, float]], scope: Scope, what: str = "process CPU"
) -> Draft | None:
    before, during = _split(points, scope)
    if not during:
        return None
    high = _quantile(during, 0.9)
    usual = _quantile(before, 0.5) if before else 0.0
    if not (high >= 0.8 or (high >= 0.5 and high >= 1.6 * max(usual, 0.01))):
        return None
    values = {"cpu_p90": _r(high), "cpu_median_before": _r(usual), "metric": what}
    return Draft(
        EvidenceKind.SATURATION,
        subject,
        f"{subject} {what} at {_pct(high)} (p90 per minute; median before {_pct(usual)})",
        scope.start,
        scope.end,
        values,
        points=_chart(points),
    )


def _memory(subject: str, points: Sequence[tuple[datetime, float]], scope: Scope) -> Draft | None:
    """Memory that keeps growing, or saw drops of a third or more (a restart frees it: OOM kills)."""
    before, during = _split(points, scope)
    if len(during) < 3 or not before:
        return None
    usual = _quantile(before, 0.5)
    peak = max(during)
    drops = sum(1 for (_, a), (_, b) in zip(points, points[1:], strict=False) if b < a * 0.67 and a > usual)
    growth = peak / usual if usual > 0 else 0.0
    if growth < 1.5 and drops == 0:
        return None
    mib = 1024 * 1024
    values = {
        "memory_mib_peak": _r(peak / mib, 0),
        "memory_mib_median_before": _r(usual / mib, 0),
        "growth": _r(growth, 2),
        "restarts": drops,
        "metric": "process memory",
    }
    return Draft(
        EvidenceKind.SATURATION,
        subject,
        f"{subject} memory grew to {peak / mib:.0f} MiB (median before {usual / mib:.0f} MiB, ×{growth:.2f})"
        + (f", {drops} drop(s) of a third or more (restarts)" if drops else ""),
        scope.start,
        scope.end,
        values,
        points=_chart(points, 1 / mib),
    )


# --- trace exemplars -----------------------------------------------------------------------------

_EXEMPLAR_SQL = """
SELECT TraceId, SpanName, Duration / 1e6 AS ms, StatusCode, StatusMessage, Timestamp,
       SpanAttributes['url.path'] AS path, SpanAttributes['url.query'] AS query
FROM {table}
WHERE ServiceName = {{service:String}} AND SpanKind = 'Server'
  AND Timestamp >= {{start:DateTime64(3)}} AND Timestamp < {{end:DateTime64(3)}}
ORDER BY StatusCode = 'Error' DESC, Duration DESC
LIMIT {{limit:UInt32}}
"""


def exemplars(store: ClickHouse, scope: Scope) -> list[Draft]:
    sql = _EXEMPLAR_SQL.format(table=store.table(schema.TRACES))
    out = []
    for service in scope.candidates[:3]:
        params = scope.params(service=service, limit=scope.config.exemplars)
        rows = store.rows(sql, params)
        if not rows:
            continue
        errors = sum(1 for r in rows if r[3] == "Error")
        samples = tuple(
            f"trace {trace} {name} {ms:.0f} ms {status}"
            + (f" {path}" if path else "")
            + (f"?{query[:200]}" if query else "")
            + (f": {message[:120]}" if message else "")
            for trace, name, ms, status, message, _, path, query in rows
        )
        slowest = max(float(r[2]) for r in rows)
        out.append(
            Draft(
                EvidenceKind.TRACE_EXEMPLAR,
                service,
                f"{service}: {len(rows)} exemplar traces, {errors} failing, slowest {slowest:.0f} ms",
                scope.start,
                scope.end,
                {"exemplars": len(rows), "failing": errors, "slowest_ms": _r(slowest, 1)},
                samples=samples,
                query=sql,
                params=params,
            )
        )
    return out


COLLECTORS: tuple[tuple[str, Collector], ...] = (
    ("impact", impact),
    ("anomalies", anomalies),
    ("changes", changes),
    ("edges", edges),
    ("log_templates", log_templates),
    ("saturation", saturation),
    ("exemplars", exemplars),
)
"""The collectors, in the order their items are numbered."""


def collect(
    store: ClickHouse,
    incident: Incident,
    alerts: Sequence[Alert],
    *,
    timeline: Sequence[Mapping[str, Any]] = (),
    now: datetime,
    config: EvidenceConfig | None = None,
) -> EvidencePack:
    """Build the pack of ``incident`` from its ``alerts`` and the telemetry around it.

    ``now`` ends the window of an incident that is still open (the latest data time).
    """
    cfg = config or EvidenceConfig()
    end = incident.resolved_at or now
    start = incident.started_at - cfg.lead
    # A fingerprint that fired in an earlier incident too: keep only this incident's fires.
    alerts = [
        a
        for a in alerts
        if a.starts_at <= end and (a.ends_at is None or a.ends_at >= incident.started_at - cfg.lead)
    ]
    candidates = tuple(str(c["service"]) for c in incident.root_causes if c.get("service"))
    involved = {*incident.services, *candidates, *(a.service for a in alerts if a.service)}
    end = max(end, start)
    base_start = start - cfg.baseline
    graph = calls(store, {"base_start": _ts(base_start), "start": _ts(start), "end": _ts(end)})
    services = tuple(sorted(graph.downstream(involved)))
    scope = Scope(incident, tuple(alerts), services, candidates, start, end, base_start, graph, cfg)
    drafts = [draft for _, collector in COLLECTORS for draft in collector(store, scope)]
    items = tuple(
        EvidenceItem(
            id=f"E{n}",
            kind=d.kind,
            service=d.service,
            title=d.title,
            start=d.start,
            end=d.end,
            values=dict(d.values),
            samples=d.samples,
            points=d.points,
            query=d.query.strip(),
            params=dict(d.params),
        )
        for n, d in enumerate(drafts, start=1)
    )
    return EvidencePack(incident, scope.start, scope.end, items, tuple(dict(e) for e in timeline))
