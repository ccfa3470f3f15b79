"""Metric series from the exporter's gauge, sum and histogram tables.

One series per (entity, metric, attribute set); the entity is ``ServiceName``, or ``host.name`` for
resources without a service (the hostmetrics receiver), which then also carry a ``host`` label.

* **Gauges**: the average of the step's points (over instances and points).
* **Sums**: monotonic cumulative (``IsMonotonic``, ``AggregationTemporality`` = 2) become per-second
  **rates**. Increases are computed per *stream* (resource, scope and attributes: one instance's
  counter) with ``lagInFrame``; a value below the previous one, or a new ``StartTimeUnix``, is a
  reset, and the new value is the increase since it. A stream's first point counts whole only if the
  stream started inside the fetched range (``StartTimeUnix`` after the look-back start); otherwise its
  baseline is unknown and it contributes nothing. The previous point is read from up to
  ``counter_lookback_s`` before the grid. Delta sums (temporality 1) are summed per step and divided
  by the step, so a counter reads the same in either temporality. Non-monotonic cumulative sums
  (up-down counters) are levels: averaged like gauges.
* **Histograms**: the p95 estimated from the step's bucket-count increases (per stream as above,
  deltas used as they are), summed over streams, interpolated linearly inside the bucket like
  Prometheus' ``histogram_quantile`` (0 as the lower edge of the first bucket, the highest finite
  bound for the overflow bucket). Streams of one series are assumed to share bucket bounds.

Points are stamped at the end of the interval they describe, so a point at exactly ``t`` belongs to
the step *ending* at ``t``: bucket = ``floor((TimeUnix − 1 ns) / step)``. An exporter aligned to the
step thus reports the minute that just ended in that minute's bucket, next to its spans and logs.
A metric series is ``None`` where no point arrived (metrics are sampled, not events).

The ``attributes`` label is the attribute set as ``k=v`` pairs sorted by key, present whenever the set
is not empty — even if the window holds only one set — so a series keeps its identity when a second
set (say status 500) appears later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detect.series_common import (
    Candidate,
    Grid,
    SeriesLimits,
    SeriesQuery,
    SeriesReport,
    SeriesTable,
    bind,
    compose,
    fetch,
    narrowed,
    top,
)
from warroom import schema
from warroom.clickhouse import ClickHouse
from warroom.model import Series, SeriesKey, SignalKind

ENTITY = "if(ServiceName != '', ServiceName, ResourceAttributes['host.name'])"
_SINCE = "toDateTime64({since:Int64}, 9, 'UTC')"
_LO = "toDateTime64({lo:Int64}, 9, 'UTC')"
_HI = "toDateTime64({hi:Int64}, 9, 'UTC')"
BUCKET = (
    "toUInt32(intDiv(toUnixTimestamp64Nano(toDateTime64(TimeUnix, 9)) - 1, {step_ns:Int64}) * {step:UInt32})"
)
_KEEP = (
    "has({services:Array(String)}, ServiceName) AND has({metrics:Array(String)}, MetricName)"
    " AND (entity, MetricName, attr_hash) IN {series:Array(Tuple(String, String, UInt64))}"
)
_STREAM = (
    "WINDOW stream AS (PARTITION BY ServiceName, MetricName,"
    " cityHash64(ResourceAttributes, ScopeName, Attributes)"
    " ORDER BY TimeUnix ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)"
)
_FIRST_COUNTS = f"StartTimeUnix >= {_SINCE} AND StartTimeUnix <= TimeUnix"
_RESET = (
    "StartTimeUnix != lagInFrame(StartTimeUnix) OVER stream OR {column} < lagInFrame({column}) OVER stream"
)

_CANDIDATES = """
SELECT entity, from_host, MetricName, attributes, attr_hash, unit, is_rate, metric_points, sets
FROM (
    SELECT {ENTITY} AS entity, any(ServiceName = '') AS from_host, MetricName,
        cityHash64(Attributes) AS attr_hash, any(Attributes) AS attributes, any(MetricUnit) AS unit,
        {IS_RATE} AS is_rate,
        count() AS n, {MAGNITUDE} AS magnitude,
        sum(n) OVER (PARTITION BY entity, MetricName) AS metric_points,
        count() OVER (PARTITION BY entity, MetricName) AS sets
    FROM {table}
    WHERE TimeUnix > {LO} AND TimeUnix <= {HI}
    GROUP BY entity, MetricName, attr_hash
)
ORDER BY entity, MetricName, n DESC, magnitude DESC, attr_hash
LIMIT {top:UInt32} BY entity, MetricName
"""

_GAUGE = """
SELECT {ENTITY} AS entity, MetricName, cityHash64(Attributes) AS attr_hash, {BUCKET} AS t, avg(Value) AS value
FROM {table}
WHERE TimeUnix > {LO} AND TimeUnix <= {HI} AND {KEEP}
GROUP BY entity, MetricName, attr_hash, t
ORDER BY entity, MetricName, attr_hash, t
"""

_SUM = """
SELECT entity, MetricName, attr_hash, t,
    if(max(level), avg(Value), sum(increase) / {step:UInt32}) AS value
FROM (
    SELECT {ENTITY} AS entity, MetricName, cityHash64(Attributes) AS attr_hash, {BUCKET} AS t, Value,
        NOT IsMonotonic AND AggregationTemporality = 2 AS level,
        multiIf(
            AggregationTemporality != 2, Value,
            row_number() OVER stream = 1, if({FIRST_COUNTS}, Value, NULL),
            {RESET_VALUE}, Value,
            Value - lagInFrame(Value) OVER stream
        ) AS increase
    FROM {table}
    WHERE TimeUnix > {SINCE} AND TimeUnix <= {HI} AND {KEEP}
    {STREAM}
)
WHERE t >= {lo:Int64}
GROUP BY entity, MetricName, attr_hash, t
ORDER BY entity, MetricName, attr_hash, t
"""

_HISTOGRAM = """
WITH arrayCumSum(counts) AS cumulative, arraySum(counts) AS total, {quantile:Float64} * total AS wanted,
    arrayFirstIndex(c -> c >= wanted, cumulative) AS i,
    if(i = 1, least(0., bounds[1]), bounds[i - 1]) AS lower
SELECT entity, MetricName, attr_hash, t,
    multiIf(
        total <= 0 OR empty(bounds), NULL,
        i > length(bounds), bounds[-1],
        lower + (bounds[i] - lower) * (wanted - cumulative[i] + counts[i]) / counts[i]
    ) AS value
FROM (
    SELECT entity, MetricName, attr_hash, t, sumForEach(increase) AS counts, any(ExplicitBounds) AS bounds
    FROM (
        SELECT {ENTITY} AS entity, MetricName, cityHash64(Attributes) AS attr_hash, {BUCKET} AS t,
            ExplicitBounds, arrayMap(c -> toInt64(c), BucketCounts) AS counts_now,
            lagInFrame(BucketCounts) OVER stream AS counts_before,
            multiIf(
                AggregationTemporality != 2, counts_now,
                row_number() OVER stream = 1, if({FIRST_COUNTS}, counts_now, []),
                {RESET_COUNT} OR length(BucketCounts) != length(counts_before), counts_now,
                arrayMap((c, p) -> greatest(c - toInt64(p), 0), counts_now, counts_before)
            ) AS increase
        FROM {table}
        WHERE TimeUnix > {SINCE} AND TimeUnix <= {HI} AND {KEEP}
        {STREAM}
    )
    WHERE t >= {lo:Int64}
    GROUP BY entity, MetricName, attr_hash, t
)
ORDER BY entity, MetricName, attr_hash, t
"""

QUANTILE = 0.95


@dataclass(frozen=True, slots=True)
class _Family:
    """One metric table: how to rank its attribute sets, the series statement, what a value means."""

    table: str
    magnitude: str  # ranks attribute sets with equal point counts
    is_rate: str  # whether a set's value is a per-second rate (its unit gets "/s")
    series: str
    meaning: str
    rate_meaning: str = ""


_FAMILIES = (
    _Family(schema.GAUGE, "max(abs(Value))", "false", _GAUGE, "average of the step's gauge points"),
    _Family(
        schema.SUM,
        "max(abs(Value))",
        "NOT any(NOT IsMonotonic AND AggregationTemporality = 2)",
        _SUM,
        "average level of an up-down (non-monotonic cumulative) sum",
        "per-second increase of a sum (cumulative: per-stream deltas, counter resets handled)",
    ),
    _Family(
        schema.HISTOGRAM,
        "max(Count)",
        "false",
        _HISTOGRAM,
        f"p{round(QUANTILE * 100)} estimated from the step's histogram bucket-count increases",
    ),
)


@dataclass(frozen=True, slots=True)
class _Set:
    """One candidate attribute set of a metric."""

    family: _Family
    entity: str
    from_host: bool
    metric: str
    attributes: tuple[tuple[str, str], ...]
    attr_hash: int
    unit: str
    rate: bool
    metric_points: int
    sets: int

    @property
    def meaning(self) -> str:
        return self.family.rate_meaning if self.rate else self.family.meaning

    def key(self) -> SeriesKey:
        labels = [("metric", self.metric)]
        if self.attributes:
            labels.append(("attributes", ",".join(f"{k}={v}" for k, v in self.attributes)))
        if self.from_host:
            labels.append(("host", self.entity))
        if self.unit:
            labels.append(("unit", f"{self.unit}/s" if self.rate else self.unit))
        return SeriesKey(SignalKind.METRIC, self.entity, tuple(labels))


def _sql(store: ClickHouse, family: _Family, template: str) -> str:
    return compose(
        template,
        table=store.table(family.table),
        ENTITY=ENTITY,
        BUCKET=BUCKET,
        KEEP=_KEEP,
        STREAM=_STREAM,
        RESET_VALUE=_RESET.replace("{column}", "Value"),
        RESET_COUNT=_RESET.replace("{column}", "Count"),
        FIRST_COUNTS=_FIRST_COUNTS,
        MAGNITUDE=family.magnitude,
        IS_RATE=family.is_rate,
        LO=_LO,
        HI=_HI,
        SINCE=_SINCE,
    ).strip()


def _params(grid: Grid, limits: SeriesLimits) -> dict[str, Any]:
    return {
        "lo": grid.start,
        "hi": grid.end,
        "step": grid.step,
        "step_ns": grid.step * 1_000_000_000,
        "since": grid.start - max(limits.counter_lookback_s, grid.step),
        "quantile": QUANTILE,
    }


def _candidates(store: ClickHouse, grid: Grid, limits: SeriesLimits) -> list[_Set]:
    """The busiest attribute sets of every (entity, metric) in every table, with their totals."""
    params = {**_params(grid, limits), "top": max(1, limits.max_attribute_sets_per_metric)}
    found: list[_Set] = []
    for family in _FAMILIES:
        for entity, host, metric, attrs, attr_hash, unit, rate, points, sets in fetch(
            store, _sql(store, family, _CANDIDATES), params
        ):
            attributes = tuple(sorted((str(k), str(v)) for k, v in dict(attrs).items()))
            found.append(
                _Set(
                    family,
                    str(entity),
                    bool(host),
                    str(metric),
                    attributes,
                    int(attr_hash),
                    str(unit),
                    bool(rate),
                    int(points),
                    int(sets),
                )
            )
    return found


def _tables_total(sets: list[_Set]) -> int:
    """Attribute sets of one metric over the tables it appears in (each row carries its table's total)."""
    return sum({s.family.table: s.sets for s in sets}.values())


def _select(found: list[_Set], limits: SeriesLimits, report: SeriesReport) -> list[_Set]:
    """Service rules, metric rules, top metrics per entity, then top attribute sets per metric."""
    services, metrics = limits.services(), limits.metrics()
    by_metric: dict[tuple[str, str], list[_Set]] = {}
    for s in found:
        by_metric.setdefault((s.entity, s.metric), []).append(s)
    eligible: dict[str, list[Candidate]] = {}
    for (entity, metric), sets in sorted(by_metric.items()):
        total = _tables_total(sets)
        report.consider(total)
        rule = services.verdict(entity)
        if rule is not None:
            report.drop(f"service_{rule}", entity, total)
            continue
        rule = metrics.verdict(metric)
        if rule is not None:
            report.drop(f"metric_{rule}", f"{entity} {metric}", total)
            continue
        eligible.setdefault(entity, []).append(Candidate((metric,), float(sets[0].metric_points)))
    kept: list[_Set] = []
    for entity, candidates in sorted(eligible.items()):
        chosen, dropped = top(candidates, limits.max_metrics_per_service)
        for c in dropped:
            report.drop(
                "metric_limit", f"{entity} {c.name[0]}", _tables_total(by_metric[(entity, c.name[0])])
            )
        for c in chosen:
            kept.extend(_attribute_sets(by_metric[(entity, c.name[0])], limits, report))
    return kept


def _attribute_sets(sets: list[_Set], limits: SeriesLimits, report: SeriesReport) -> list[_Set]:
    """The top attribute sets of one metric (SQL returned them ranked).

    A metric name in two tables (a gauge here, a sum there) would give two series one key: the
    first table in :data:`_FAMILIES` order wins and the other is dropped as a conflict.
    """
    family = sets[0].family
    mine = [s for s in sets if s.family is family]
    others = [s for s in sets if s.family is not family]
    if others:
        report.drop("metric_type_conflict", f"{mine[0].entity} {mine[0].metric}", _tables_total(others))
    chosen = mine[: limits.max_attribute_sets_per_metric]
    report.drop("attribute_set_limit", f"{mine[0].entity} {mine[0].metric}", mine[0].sets - len(chosen))
    return chosen


def _unique(key: SeriesKey, attr_hash: int, report: SeriesReport) -> SeriesKey:
    """``key``, or with the attribute hash appended when two attribute sets render alike.

    Only values containing ``,`` or ``=`` can make two sets print the same ``k=v`` signature.
    """
    if key not in report.queries:
        return key
    labels = tuple((k, f"{v} #{attr_hash:016x}" if k == "attributes" else v) for k, v in key.labels)
    return SeriesKey(key.kind, key.entity, labels)


def _services(sets: list[_Set]) -> list[str]:
    """``ServiceName`` values to read (host-level metrics have none), for the primary key."""
    return sorted({"" if s.from_host else s.entity for s in sets})


def metric_series(store: ClickHouse, grid: Grid, limits: SeriesLimits, report: SeriesReport) -> list[Series]:
    """``METRIC`` series for gauges, sums and histograms, labels ``(("metric", name), …)``."""
    kept = _select(_candidates(store, grid, limits), limits, report)
    params = _params(grid, limits)
    table = SeriesTable(grid)
    for family in _FAMILIES:
        sets = [s for s in kept if s.family is family]
        if not sets:
            continue
        sql = _sql(store, family, family.series)
        bound = bind(
            sql,
            {
                **params,
                "services": _services(sets),
                "metrics": sorted({s.metric for s in sets}),
                "series": [(s.entity, s.metric, s.attr_hash) for s in sets],
            },
        )
        keys: dict[tuple[str, str, int], SeriesKey] = {}
        for s in sets:
            key = keys[(s.entity, s.metric, s.attr_hash)] = _unique(s.key(), s.attr_hash, report)
            table.declare(key)
            one = narrowed(
                bound, services=_services([s]), metrics=[s.metric], series=[(s.entity, s.metric, s.attr_hash)]
            )
            report.queries[key] = SeriesQuery.of(sql, one, s.meaning)
        for entity, metric, attr_hash, t, value in fetch(store, sql, bound):
            table.put(keys[(str(entity), str(metric), int(attr_hash))], t, value)
    return table.series()
