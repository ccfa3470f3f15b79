"""Log record rates per service and severity, from ``otel_logs``.

The severity is ``SeverityText`` in upper case (``warn`` → ``WARN``); records without one are named
by their ``SeverityNumber`` range (OTel data model: 1–4 TRACE, 5–8 DEBUG, 9–12 INFO, 13–16 WARN,
17–20 ERROR, 21–24 FATAL, 0 UNSPECIFIED). A rate is 0.0 (not ``None``) from the bucket the service
first logged anything in, so a service's first ERROR burst has a baseline of zeros to stand out from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detect.series_common import (
    BUCKET,
    HI,
    WINDOW,
    Candidate,
    Grid,
    SeriesLimits,
    SeriesQuery,
    SeriesReport,
    SeriesTable,
    compose,
    fetch,
    narrowed,
    top,
    window_params,
)
from warroom import schema
from warroom.clickhouse import ClickHouse
from warroom.model import Series, SeriesKey, SignalKind

SEVERITY = (
    "if(trimBoth(SeverityText) != '', upper(trimBoth(SeverityText)), "
    "multiIf(SeverityNumber = 0, 'UNSPECIFIED', SeverityNumber <= 4, 'TRACE', SeverityNumber <= 8, 'DEBUG', "
    "SeverityNumber <= 12, 'INFO', SeverityNumber <= 16, 'WARN', SeverityNumber <= 20, 'ERROR', 'FATAL'))"
)

_PRESENCE = """
SELECT ServiceName, toInt64(min(toUnixTimestamp(Timestamp))) AS first_seen
FROM {logs}
WHERE Timestamp >= toDateTime64({since:Int64}, 9, 'UTC') AND Timestamp < {HI}
GROUP BY ServiceName
"""

_CANDIDATES = """
SELECT ServiceName, severity, n, severities
FROM (
    SELECT ServiceName, {SEVERITY} AS severity, count() AS n,
        count() OVER (PARTITION BY ServiceName) AS severities
    FROM {logs}
    WHERE {WINDOW}
    GROUP BY ServiceName, severity
)
ORDER BY ServiceName, n DESC, severity
LIMIT {top:UInt32} BY ServiceName
"""

_SERIES = """
SELECT ServiceName, {SEVERITY} AS severity, {BUCKET} AS t, count() / {step:UInt32} AS log_rate
FROM {logs}
WHERE {WINDOW} AND has({services:Array(String)}, ServiceName)
    AND (ServiceName, severity) IN {pairs:Array(Tuple(String, String))}
GROUP BY ServiceName, severity, t
ORDER BY ServiceName, severity, t
"""

_MEANING = "log records per second"


def _sql(store: ClickHouse, template: str) -> str:
    return compose(
        template, logs=store.table(schema.LOGS), SEVERITY=SEVERITY, WINDOW=WINDOW, HI=HI, BUCKET=BUCKET
    ).strip()


def presence(store: ClickHouse, grid: Grid, limits: SeriesLimits) -> dict[str, int]:
    """Service → first second it logged anything, from ``presence_lookback_s`` before the grid."""
    params = {**window_params(grid), "since": grid.start - limits.presence_lookback_s}
    return {str(name): int(first) for name, first in fetch(store, _sql(store, _PRESENCE), params)}


def _select(rows: list[tuple[Any, ...]], limits: SeriesLimits, report: SeriesReport) -> list[tuple[str, str]]:
    """Service rules, then the ``max_log_severities_per_service`` most frequent severities."""
    names = limits.services()
    per_service: dict[str, tuple[int, list[Candidate]]] = {}
    for service, severity, n, total in rows:
        per_service.setdefault(str(service), (int(total), []))[1].append(
            Candidate((str(severity),), float(n))
        )
    pairs: list[tuple[str, str]] = []
    for service, (total, candidates) in sorted(per_service.items()):
        report.consider(total)
        rule = names.verdict(service)
        if rule is not None:
            report.drop(f"service_{rule}", service, total)
            continue
        kept, _ = top(candidates, limits.max_log_severities_per_service)
        pairs.extend((service, c.name[0]) for c in kept)
        report.drop("severity_limit", f"{service} (+{total - len(kept)} severities)", total - len(kept))
    return pairs


def log_series(
    store: ClickHouse, grid: Grid, limits: SeriesLimits, report: SeriesReport, seen: Mapping[str, int]
) -> list[Series]:
    """``LOG_RATE`` per (service, severity), labels ``(("severity", …),)``."""
    params = window_params(grid)
    top_n = max(1, limits.max_log_severities_per_service)
    pairs = _select(fetch(store, _sql(store, _CANDIDATES), {**params, "top": top_n}), limits, report)
    if not pairs:
        return []
    sql = _sql(store, _SERIES)
    bound = {**params, "services": sorted({service for service, _ in pairs}), "pairs": pairs}
    table = SeriesTable(grid)
    for service, severity in pairs:
        key = SeriesKey(SignalKind.LOG_RATE, service, (("severity", severity),))
        first = seen.get(service)
        table.declare(key, None if first is None else max(grid.start, grid.floor(first)))
        one = narrowed(bound, services=[service], pairs=[(service, severity)])
        report.queries[key] = SeriesQuery.of(sql, one, _MEANING)
    for service, severity, t, rate in fetch(store, sql, bound):
        table.put(SeriesKey(SignalKind.LOG_RATE, str(service), (("severity", str(severity)),)), t, rate)
    return table.series()
