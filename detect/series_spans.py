"""Request series from ``otel_traces``: per service, per operation, per call edge and per peer.

*Entry spans* are where a service receives work: ``SpanKind`` Server or Consumer, or a root span
(empty ``ParentSpanId``, e.g. a cron job). A request *failed* when its status is Error or its
``http.response.status_code`` (or the older ``http.status_code``) is 5xx — instrumentations differ in
whether they set the status for a 5xx, so both are checked.

Call edges ``caller->callee`` come from two places:

* **parent/child across services**: an entry span (Server/Consumer) whose parent span (same trace)
  belongs to another service — a self-join of ``otel_traces`` on ``(TraceId, ParentSpanId) =
  (TraceId, SpanId)``. The child (callee) side gives rate, failures and p95, so the edge shows what
  the callee did for that caller. Both sides are time-filtered; the caller side from
  ``edge_parent_slack_s`` before the grid, because a parent starts before its child. Any kind of
  parent span counts (usually the caller's Client span).
* **uninstrumented peers**: Client/Producer spans with ``db.system`` (``db.system.name``) or
  ``messaging.system``; the callee is ``peer.service``, else the first label of ``server.address``
  (``postgres.shop.svc`` → ``postgres``), else the system and database name. Measured on the client
  span, since the peer has no spans of its own.
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
    NameFilter,
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

ENTRY = "(SpanKind IN ('Server', 'Consumer', 'SPAN_KIND_SERVER', 'SPAN_KIND_CONSUMER') OR ParentSpanId = '')"
FAILED = (
    "(StatusCode IN ('Error', 'STATUS_CODE_ERROR')"
    " OR toUInt16OrZero(SpanAttributes['http.response.status_code']) >= 500"
    " OR toUInt16OrZero(SpanAttributes['http.status_code']) >= 500)"
)

#: Error ratios are shrunk toward zero by this many requests per step (``errors / (n + PRIOR)``):
#: one failure among seven requests on a quiet endpoint reads 5.9%, not 14%, so a single unlucky
#: request does not look like an outage, while at real volume the ratio is unchanged (n ≫ PRIOR).
ERROR_PRIOR = "10"

_FRAGMENTS = {
    "WINDOW": WINDOW,
    "HI": HI,
    "BUCKET": BUCKET,
    "ENTRY": ENTRY,
    "FAILED": FAILED,
    "PRIOR": ERROR_PRIOR,
}

_PRESENCE = """
SELECT ServiceName, toInt64(min(toUnixTimestamp(Timestamp))) AS first_seen
FROM {traces}
WHERE Timestamp >= toDateTime64({since:Int64}, 9, 'UTC') AND Timestamp < {HI}
GROUP BY ServiceName
"""

_OPERATION_CANDIDATES = """
SELECT ServiceName, SpanName, n, operations
FROM (
    SELECT ServiceName, SpanName, count() AS n, count() OVER (PARTITION BY ServiceName) AS operations
    FROM {traces}
    WHERE {WINDOW} AND {ENTRY}
    GROUP BY ServiceName, SpanName
)
ORDER BY ServiceName, n DESC, SpanName
LIMIT {top:UInt32} BY ServiceName
"""

_REQUEST_VALUES = """
    count() / {step:UInt32} AS request_rate,
    countIf({FAILED}) / (count() + {PRIOR}) AS error_ratio,
    arrayMap(d -> d / 1e6, quantilesTDigest(0.5, 0.95, 0.99)(Duration)) AS latency_ms"""

_SERVICE_SERIES = (
    """
SELECT ServiceName, {BUCKET} AS t,"""
    + _REQUEST_VALUES
    + """
FROM {traces}
WHERE {WINDOW} AND has({services:Array(String)}, ServiceName) AND {ENTRY}
GROUP BY ServiceName, t
ORDER BY ServiceName, t
"""
)

_OPERATION_SERIES = (
    """
SELECT ServiceName, SpanName, {BUCKET} AS t,"""
    + _REQUEST_VALUES
    + """
FROM {traces}
WHERE {WINDOW} AND has({services:Array(String)}, ServiceName) AND {ENTRY}
    AND (ServiceName, SpanName) IN {operations:Array(Tuple(String, String))}
GROUP BY ServiceName, SpanName, t
ORDER BY ServiceName, SpanName, t
"""
)

_JOIN = """
    SELECT TraceId, ParentSpanId, ServiceName, Duration, {BUCKET} AS t, {FAILED} AS failed
    FROM {traces}
    WHERE {WINDOW} AND ParentSpanId != '' AND {ENTRY}{CHILD_FILTER}
) AS c
INNER JOIN (
    SELECT TraceId, SpanId, ServiceName
    FROM {traces}
    WHERE Timestamp >= toDateTime64({parent_lo:Int64}, 9, 'UTC') AND Timestamp < {HI}{PARENT_FILTER}
) AS p ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId"""

_EDGE_CANDIDATES = (
    """
SELECT p.ServiceName AS caller, c.ServiceName AS callee, count() AS n
FROM ("""
    + _JOIN
    + """
WHERE caller != callee
GROUP BY caller, callee
"""
)

_EDGE_SERIES = (
    """
SELECT p.ServiceName AS caller, c.ServiceName AS callee, c.t AS t,
    count() / {step:UInt32} AS request_rate,
    countIf(c.failed) / (count() + {PRIOR}) AS error_ratio,
    quantileTDigest(0.95)(c.Duration) / 1e6 AS latency_p95_ms
FROM ("""
    + _JOIN
    + """
WHERE (caller, callee) IN {edges:Array(Tuple(String, String))}
GROUP BY caller, callee, t
ORDER BY caller, callee, t
"""
)

_HOST = "arrayFirst(x -> x != '', [SpanAttributes['server.address'], SpanAttributes['net.peer.name']])"
_SYSTEM = (
    "arrayFirst(x -> x != '', [SpanAttributes['db.system.name'], SpanAttributes['db.system'], "
    "SpanAttributes['messaging.system']])"
)
_DB_NAME = "arrayFirst(x -> x != '', [SpanAttributes['db.namespace'], SpanAttributes['db.name']])"
PEER = (
    "multiIf(SpanAttributes['peer.service'] != '', SpanAttributes['peer.service'], "
    f"{_HOST} != '' AND NOT isIPv4String({_HOST}) AND NOT isIPv6String({_HOST}), "
    f"splitByChar('.', {_HOST})[1], {_DB_NAME} != '', concat({_SYSTEM}, '/', {_DB_NAME}), {_SYSTEM})"
)
_PEER_SPANS = (
    "SpanKind IN ('Client', 'Producer', 'SPAN_KIND_CLIENT', 'SPAN_KIND_PRODUCER') AND "
    "(SpanAttributes['db.system'] != '' OR SpanAttributes['db.system.name'] != '' "
    "OR SpanAttributes['messaging.system'] != '')"
)

_PEER_CANDIDATES = """
SELECT ServiceName AS caller, {PEER} AS callee, count() AS n
FROM {traces}
WHERE {WINDOW} AND {PEER_SPANS}
GROUP BY caller, callee
HAVING caller != callee
"""

_PEER_SERIES = """
SELECT ServiceName AS caller, {PEER} AS callee, {BUCKET} AS t,
    count() / {step:UInt32} AS request_rate,
    countIf({FAILED}) / (count() + {PRIOR}) AS error_ratio,
    quantileTDigest(0.95)(Duration) / 1e6 AS latency_p95_ms
FROM {traces}
WHERE {WINDOW} AND has({callers:Array(String)}, ServiceName) AND {PEER_SPANS}
    AND (caller, callee) IN {edges:Array(Tuple(String, String))}
GROUP BY caller, callee, t
ORDER BY caller, callee, t
"""

REQUEST_KINDS = (
    SignalKind.REQUEST_RATE,
    SignalKind.ERROR_RATIO,
    SignalKind.LATENCY_P50,
    SignalKind.LATENCY_P95,
    SignalKind.LATENCY_P99,
)
EDGE_KINDS = (SignalKind.REQUEST_RATE, SignalKind.ERROR_RATIO, SignalKind.LATENCY_P95)

_MEANING = {
    SignalKind.REQUEST_RATE: "requests per second (entry spans)",
    SignalKind.ERROR_RATIO: "share of entry spans with status Error or HTTP 5xx",
    SignalKind.LATENCY_P50: "p50 of entry span duration, ms (t-digest)",
    SignalKind.LATENCY_P95: "p95 of entry span duration, ms (t-digest)",
    SignalKind.LATENCY_P99: "p99 of entry span duration, ms (t-digest)",
}
_EDGE_MEANING = {
    SignalKind.REQUEST_RATE: "calls per second",
    SignalKind.ERROR_RATIO: "share of calls with status Error or HTTP 5xx",
    SignalKind.LATENCY_P95: "p95 call duration, ms (t-digest)",
}


def _sql(store: ClickHouse, template: str, **extra: str) -> str:
    tables = {"traces": store.table(schema.TRACES)}
    return compose(template, **tables, PEER=PEER, PEER_SPANS=_PEER_SPANS, **_FRAGMENTS, **extra).strip()


def presence(store: ClickHouse, grid: Grid, limits: SeriesLimits) -> dict[str, int]:
    """Service → first second it has any span, from ``presence_lookback_s`` before the grid."""
    params = {**window_params(grid), "since": grid.start - limits.presence_lookback_s}
    return {str(name): int(first) for name, first in fetch(store, _sql(store, _PRESENCE), params)}


def _zero_from(grid: Grid, seen: Mapping[str, int], service: str) -> int | None:
    first = seen.get(service)
    return None if first is None else max(grid.start, grid.floor(first))


# --- per service and operation ----------------------------------------------------------------


def _select_operations(
    rows: list[tuple[Any, ...]], limits: SeriesLimits, names: NameFilter, report: SeriesReport
) -> tuple[list[str], list[tuple[str, str]]]:
    """Apply the service rules and the per-service operation bound; count what each rule drops.

    ``rows`` are the top operations of every service (``LIMIT … BY`` in SQL) with each service's
    total number of operations, so the report can count the ones SQL did not return.
    """
    per_service: dict[str, tuple[int, list[Candidate]]] = {}
    for service, operation, n, total in rows:
        entry = per_service.setdefault(str(service), (int(total), []))
        entry[1].append(Candidate((str(operation),), float(n)))
    services: list[str] = []
    operations: list[tuple[str, str]] = []
    width = len(REQUEST_KINDS)
    for service, (total, candidates) in sorted(per_service.items()):
        report.consider(width * (1 + total))
        rule = names.verdict(service)
        if rule is not None:
            report.drop(f"service_{rule}", service, width * (1 + total))
            continue
        kept, _ = top(candidates, limits.max_operations_per_service)
        services.append(service)
        operations.extend((service, c.name[0]) for c in kept)
        beyond = total - len(kept)
        report.drop("operation_limit", f"{service} (+{beyond} operations)", width * beyond)
    return services, operations


def _declare(
    table: SeriesTable,
    report: SeriesReport,
    query: SeriesQuery,
    keys: list[SeriesKey],
    meanings: Mapping[SignalKind, str],
    zero_from: int | None,
) -> None:
    """Register a candidate's series (so each exists even without rows) and the query behind each."""
    for key in keys:
        table.declare(key, zero_from if key.kind is SignalKind.REQUEST_RATE else None)
        report.queries[key] = SeriesQuery.of(query.sql, query.params, meanings[key.kind])


def _put(table: SeriesTable, keys: list[SeriesKey], t: int, values: list[Any]) -> None:
    for key, value in zip(keys, values, strict=True):
        table.put(key, t, value)


def _request_keys(service: str, labels: tuple[tuple[str, str], ...] = ()) -> list[SeriesKey]:
    return [SeriesKey(kind, service, labels) for kind in REQUEST_KINDS]


def _services_part(
    store: ClickHouse, grid: Grid, report: SeriesReport, seen: Mapping[str, int], services: list[str]
) -> SeriesTable:
    """One query for every kept service: five series each."""
    sql = _sql(store, _SERVICE_SERIES)
    bound = {**window_params(grid), "services": services}
    table = SeriesTable(grid)
    for service in services:
        query = SeriesQuery(sql, narrowed(bound, services=[service]))
        _declare(table, report, query, _request_keys(service), _MEANING, _zero_from(grid, seen, service))
    for service, t, rate, errors, latency in fetch(store, sql, bound):
        _put(table, _request_keys(str(service)), t, [rate, errors, *latency])
    return table


def _operations_part(
    store: ClickHouse,
    grid: Grid,
    report: SeriesReport,
    seen: Mapping[str, int],
    services: list[str],
    operations: list[tuple[str, str]],
) -> SeriesTable:
    """One query for every kept (service, operation): five series each, labelled ``operation``."""
    sql = _sql(store, _OPERATION_SERIES)
    bound = {**window_params(grid), "services": services, "operations": operations}
    table = SeriesTable(grid)
    for service, operation in operations:
        query = SeriesQuery(sql, narrowed(bound, services=[service], operations=[(service, operation)]))
        keys = _request_keys(service, (("operation", operation),))
        _declare(table, report, query, keys, _MEANING, _zero_from(grid, seen, service))
    for service, operation, t, rate, errors, latency in fetch(store, sql, bound):
        _put(
            table, _request_keys(str(service), (("operation", str(operation)),)), t, [rate, errors, *latency]
        )
    return table


def service_series(
    store: ClickHouse, grid: Grid, limits: SeriesLimits, report: SeriesReport, seen: Mapping[str, int]
) -> list[Series]:
    """Rate, error ratio and p50/p95/p99 per service and per (service, operation) of entry spans.

    A rate is 0.0 (not ``None``) from the bucket the service was first seen in (``seen``).
    """
    top_n = max(1, limits.max_operations_per_service)  # LIMIT 0 BY would hide the services too
    candidates = fetch(store, _sql(store, _OPERATION_CANDIDATES), {**window_params(grid), "top": top_n})
    services, operations = _select_operations(candidates, limits, limits.services(), report)
    if not services:
        return []
    series = _services_part(store, grid, report, seen, services).series()
    if operations:
        series += _operations_part(store, grid, report, seen, services, operations).series()
    return series


# --- call edges and peers ---------------------------------------------------------------------

_SPAN_EDGE, _PEER_EDGE = "span", "peer"


def _edge_params(grid: Grid, limits: SeriesLimits) -> dict[str, Any]:
    return {**window_params(grid), "parent_lo": grid.start - limits.edge_parent_slack_s}


def _edge_candidates(
    store: ClickHouse, grid: Grid, limits: SeriesLimits
) -> dict[tuple[str, str], tuple[float, str]]:
    """(caller, callee) → (calls in the window, origin); a parent/child edge wins over a peer edge."""
    params = _edge_params(grid, limits)
    found: dict[tuple[str, str], tuple[float, str]] = {}
    sql = _sql(store, _EDGE_CANDIDATES, CHILD_FILTER="", PARENT_FILTER="")
    for caller, callee, n in fetch(store, sql, params):
        found[(str(caller), str(callee))] = (float(n), _SPAN_EDGE)
    for caller, callee, n in fetch(store, _sql(store, _PEER_CANDIDATES), params):
        found.setdefault((str(caller), str(callee)), (float(n), _PEER_EDGE))
    return found


def _select_edges(
    found: Mapping[tuple[str, str], tuple[float, str]], limits: SeriesLimits, report: SeriesReport
) -> list[tuple[str, str]]:
    """Service rules on both ends, then the ``max_edges`` busiest edges."""
    names = limits.services()
    width = len(EDGE_KINDS)
    eligible = []
    for (caller, callee), (n, _) in sorted(found.items()):
        report.consider(width)
        rule = names.verdict(caller) or names.verdict(callee)
        if rule is not None:
            report.drop(f"service_{rule}", f"{caller}->{callee}", width)
        else:
            eligible.append(Candidate((caller, callee), n))
    kept, dropped = top(eligible, limits.max_edges)
    for c in dropped:
        report.drop("edge_limit", "->".join(c.name), width)
    return [(c.name[0], c.name[1]) for c in kept]


def _edge_keys(caller: str, callee: str) -> list[SeriesKey]:
    edge = f"{caller}->{callee}"
    return [SeriesKey(kind, edge, (("edge", edge),)) for kind in EDGE_KINDS]


def _edge_sql(store: ClickHouse, peer: bool) -> str:
    if peer:
        return _sql(store, _PEER_SERIES)
    return _sql(
        store,
        _EDGE_SERIES,
        CHILD_FILTER=" AND has({callees:Array(String)}, ServiceName)",
        PARENT_FILTER=" AND has({callers:Array(String)}, ServiceName)",
    )


def _edge_bind(edges: list[tuple[str, str]], params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters for a set of edges: callers and callees are also pushed into each side's scan."""
    callers = sorted({caller for caller, _ in edges})
    callees = sorted({callee for _, callee in edges})
    return {**params, "callers": callers, "callees": callees, "edges": edges}


def edge_series(
    store: ClickHouse, grid: Grid, limits: SeriesLimits, report: SeriesReport, seen: Mapping[str, int]
) -> list[Series]:
    """Rate, error ratio and p95 per call edge (callee side) and per database/messaging peer.

    The rate of an edge is 0.0 (not ``None``) from the bucket its caller was first seen in.
    """
    found = _edge_candidates(store, grid, limits)
    kept = _select_edges(found, limits, report)
    params = _edge_params(grid, limits)
    table = SeriesTable(grid)
    for peer in (False, True):
        edges = [edge for edge in kept if (found[edge][1] == _PEER_EDGE) is peer]
        if not edges:
            continue
        sql = _edge_sql(store, peer)
        for caller, callee in edges:
            query = SeriesQuery(sql, _edge_bind([(caller, callee)], params))
            zero = _zero_from(grid, seen, caller)
            _declare(table, report, query, _edge_keys(caller, callee), _EDGE_MEANING, zero)
        for caller, callee, t, *values in fetch(store, sql, _edge_bind(edges, params)):
            _put(table, _edge_keys(str(caller), str(callee)), t, values)
    return table.series()
