"""Time series for detection, aggregated in ClickHouse from the exporter's tables (issue #3, part 1).

::

    series, report = fetch_series(store, start, end, step_s=60, limits=SeriesLimits(max_edges=50))
    for s in series:
        print(s.key, s.values[-1], report.query_for(s.key))   # the SQL that produced it

What comes back, each on the grid ``[floor(start/step)·step, ceil(end/step)·step)`` (Unix seconds):

* ``REQUEST_RATE`` (per second), ``ERROR_RATIO`` (status Error or HTTP 5xx) and
  ``LATENCY_P50/P95/P99`` (ms) of *entry spans* (Server/Consumer/root) per service (no labels) and
  per operation (``(("operation", span_name),)``) — :mod:`detect.series_spans`;
* ``REQUEST_RATE``, ``ERROR_RATIO``, ``LATENCY_P95`` per call edge, entity and label
  ``caller->callee``: callee spans whose parent is in another service, and Client spans to
  databases and brokers (``payment->postgres``) — :mod:`detect.series_spans`;
* ``LOG_RATE`` (records per second) per service and ``(("severity", "WARN"),)`` —
  :mod:`detect.series_logs`;
* ``METRIC`` per service (or host) and ``(("metric", name), ("attributes", "k=v,…"), ("host", …),
  ("unit", …))`` (the last three when they apply): gauges averaged, sums as per-second rates with
  counter resets handled, histograms as a p95 from bucket-count increases —
  :mod:`detect.series_metrics`.

**Empty buckets.** A bucket without data is ``None``, except in *rate* series of events (requests,
calls, log records): there a bucket is 0.0 from the step the entity (the service; an edge's caller)
was first seen — in the grid or up to ``presence_lookback_s`` before it — because "nothing happened"
is then a fact, and a detector needs those zeros as the baseline a first burst stands out from.
Before that the entity did not exist yet: ``None``. Ratios and latencies are ``None`` without
requests (undefined, not zero). Metric series are ``None`` where no point arrived.

**Cardinality.** :class:`SeriesLimits` bounds what is fetched: allow/deny regexes on service and
metric names (applied in Python to candidate lists from cheap ``GROUP BY`` queries, then passed as
array parameters), and top-N operations per service, edges, severities per service, metrics per
service and attribute sets per metric. :class:`SeriesReport` counts considered, kept and dropped
series per rule, keeps the statement behind every key (:meth:`SeriesReport.query_for`) and the
seconds spent per family.
"""

from __future__ import annotations

from datetime import datetime

from detect import series_logs, series_metrics, series_spans
from detect.series_common import Grid, SeriesLimits, SeriesQuery, SeriesReport
from warroom.clickhouse import ClickHouse
from warroom.model import Series

__all__ = ["DEFAULT_LIMITS", "Grid", "SeriesLimits", "SeriesQuery", "SeriesReport", "fetch_series"]

DEFAULT_LIMITS = SeriesLimits()
"""The limits :func:`fetch_series` uses unless told otherwise (a frozen, shared instance)."""


def fetch_series(
    store: ClickHouse,
    start: datetime,
    end: datetime,
    step_s: int = 60,
    limits: SeriesLimits = DEFAULT_LIMITS,
) -> tuple[list[Series], SeriesReport]:
    """All series of ``[start, end)`` on a ``step_s`` grid, and the report of what was kept and why.

    ``start``/``end`` must be timezone-aware; raises :class:`~warroom.errors.InputError` for a bad
    range or step and :class:`~warroom.errors.StoreError` when ClickHouse fails. Series come ordered
    by family (services, edges, logs, metrics), each family sorted by key.
    """
    grid = Grid.of(start, end, step_s, limits.max_buckets)
    report = SeriesReport(grid)
    series: list[Series] = []
    with report.timed("presence"):
        traced = series_spans.presence(store, grid, limits)
        logged = series_logs.presence(store, grid, limits)
    with report.timed("services"):
        series += _sorted(series_spans.service_series(store, grid, limits, report, traced))
    with report.timed("edges"):
        series += _sorted(series_spans.edge_series(store, grid, limits, report, traced))
    with report.timed("logs"):
        series += _sorted(series_logs.log_series(store, grid, limits, report, logged))
    with report.timed("metrics"):
        series += _sorted(series_metrics.metric_series(store, grid, limits, report))
    report.kept = len(series)
    return series, report


def _sorted(series: list[Series]) -> list[Series]:
    return sorted(series, key=lambda s: (s.key.entity, s.key.kind.value, s.key.labels))
