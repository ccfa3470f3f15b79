"""What every series family shares: the step grid, the limits, the report, queries and row → Series.

Conventions (the families in ``detect.series_*`` all keep them):

* **The grid** is ``[floor(start/step)·step, ceil(end/step)·step)`` in Unix seconds; bucket ``t`` covers
  ``[t, t + step)``. Every series of one fetch has the full grid, ``None`` where there is no value.
* **Aggregation happens in ClickHouse.** Python receives one row per (series, bucket) at most, plus
  short candidate lists; it never sees raw spans, log records or points.
* **Parameters are bound server-side** (``{name:Type}``). Names the user chose with regexes travel as
  ``Array(String)`` / ``Array(Tuple(…))`` parameters, never inside the SQL text.
* **Every series has its query**: :attr:`SeriesReport.queries` maps each key to the statement and the
  parameters narrowed to that series, so re-running it returns exactly that series' rows.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.binding import format_query_value

from warroom.clickhouse import ClickHouse
from warroom.errors import ConfigError, InputError
from warroom.model import Series, SeriesKey

__all__ = [
    "BUCKET",
    "HI",
    "WINDOW",
    "Candidate",
    "Grid",
    "NameFilter",
    "SeriesLimits",
    "SeriesQuery",
    "SeriesReport",
    "SeriesTable",
    "bind",
    "compose",
    "fetch",
    "narrowed",
    "top",
    "window_params",
]

# --- grid -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grid:
    """The regular step grid of one fetch (Unix seconds)."""

    start: int
    step: int
    buckets: int

    @classmethod
    def of(cls, start: datetime, end: datetime, step_s: int, max_buckets: int) -> Grid:
        """Snap ``[start, end)`` outwards to whole steps; raises :class:`InputError` on bad input."""
        if isinstance(step_s, bool) or not isinstance(step_s, int) or step_s < 1:
            raise InputError(f"step_s must be a positive integer, got {step_s!r}", reason="invalid_step")
        for name, value in (("start", start), ("end", end)):
            if value.tzinfo is None or value.utcoffset() is None:
                raise InputError(
                    f"{name} must be timezone-aware, got {value.isoformat()}", reason="naive_time"
                )
        if end <= start:
            raise InputError(f"end {end.isoformat()} is not after start {start.isoformat()}", "invalid_range")
        first = math.floor(start.timestamp() / step_s) * step_s
        last = math.ceil(end.timestamp() / step_s) * step_s
        buckets = (last - first) // step_s
        if buckets > max_buckets:
            raise InputError(
                f"{buckets} buckets of {step_s} s exceed max_buckets={max_buckets}; use a larger step",
                reason="too_many_buckets",
            )
        return cls(first, step_s, buckets)

    @property
    def end(self) -> int:
        return self.start + self.step * self.buckets

    @property
    def timestamps(self) -> tuple[int, ...]:
        return tuple(range(self.start, self.end, self.step))

    def index(self, t: int) -> int | None:
        """Position of bucket ``t``, or ``None`` if it falls outside the grid."""
        i = (int(t) - self.start) // self.step
        return i if 0 <= i < self.buckets else None

    def floor(self, t: float) -> int:
        return math.floor(t / self.step) * self.step


# --- limits -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NameFilter:
    """Allow/deny regexes, anchored at both ends (like Prometheus relabelling): ``None`` = no rule."""

    allow: re.Pattern[str] | None
    deny: re.Pattern[str] | None

    def verdict(self, name: str) -> str | None:
        """``None`` if ``name`` passes, else the rule suffix that rejects it (``not_allowed``/``denied``)."""
        if self.allow is not None and self.allow.fullmatch(name) is None:
            return "not_allowed"
        if self.deny is not None and self.deny.fullmatch(name) is not None:
            return "denied"
        return None


def _compile(setting: str, pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(setting, f"invalid regular expression {pattern!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SeriesLimits:
    """Cardinality bounds and look-back windows, from configuration.

    Regexes must match the *whole* name. Service rules apply to every entity name: services, database
    or messaging peers (``postgres``), both ends of an edge, and the host of host-level metrics. Top-N
    rules rank by volume in the requested window (spans, log records, metric points), ties by name.
    """

    max_operations_per_service: int = 20
    max_edges: int = 200
    max_log_severities_per_service: int = 8
    max_metrics_per_service: int = 100
    max_attribute_sets_per_metric: int = 10
    service_allow: str | None = None
    service_deny: str | None = None
    metric_allow: str | None = None
    metric_deny: str | None = None
    max_buckets: int = 20_000
    """Refuse grids longer than this (a week of minutes is 10 080)."""
    presence_lookback_s: int = 3600
    """How far before the grid a service's telemetry makes its rate series start at 0.0 (not None)."""
    counter_lookback_s: int = 900
    """How far before the grid to read the previous point of a cumulative sum or histogram."""
    edge_parent_slack_s: int = 300
    """How long before a callee span its caller's span may have started (caller-side time filter)."""

    def __post_init__(self) -> None:
        for name in (
            "max_operations_per_service",
            "max_edges",
            "max_log_severities_per_service",
            "max_metrics_per_service",
            "max_attribute_sets_per_metric",
            "presence_lookback_s",
            "counter_lookback_s",
            "edge_parent_slack_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(name, f"must be a non-negative integer, got {value!r}")
        if self.max_buckets < 1:
            raise ConfigError("max_buckets", f"must be at least 1, got {self.max_buckets!r}")
        self.services()
        self.metrics()

    def services(self) -> NameFilter:
        return NameFilter(
            _compile("service_allow", self.service_allow), _compile("service_deny", self.service_deny)
        )

    def metrics(self) -> NameFilter:
        return NameFilter(
            _compile("metric_allow", self.metric_allow), _compile("metric_deny", self.metric_deny)
        )


# --- queries and the report -------------------------------------------------------------------

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^{}]+\}")
_PARAM_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):")
_MARKER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def compose(template: str, **parts: str) -> str:
    """Fill ``{name}`` markers (tables, shared SQL fragments) into a template; parameters stay bound.

    Only identifiers quoted by :meth:`ClickHouse.table` and constant fragments go in here, never a
    value: values are ``{name:Type}`` placeholders that ClickHouse binds itself.
    """
    for name, text in parts.items():
        template = template.replace("{" + name + "}", text)
    leftover = _MARKER.search(template)
    if leftover:
        raise ValueError(f"unfilled SQL marker {leftover.group(0)}")
    return template


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """The statement behind a series, with the parameters that select exactly that series.

    ``store.rows(q.sql, q.params)`` re-runs it with server-side binding; :meth:`text` is the same
    statement with the values written in as escaped literals, for citing in a summary or pasting into
    ``clickhouse-client``.
    """

    sql: str
    params: Mapping[str, Any]
    meaning: str = ""

    @classmethod
    def of(cls, sql: str, params: Mapping[str, Any], meaning: str = "") -> SeriesQuery:
        """Keep only the parameters ``sql`` uses."""
        return cls(sql, bind(sql, params), meaning)

    def text(self) -> str:
        def literal(match: re.Match[str]) -> str:
            return str(format_query_value(self.params[match.group(1)]))

        body = _PARAM.sub(literal, self.sql)
        return f"-- {self.meaning}\n{body}" if self.meaning else body


@dataclass(slots=True)
class SeriesReport:
    """What one :func:`detect.series.fetch_series` call considered, kept and dropped, and why.

    Counts are in *series* (a dropped operation drops its five series). ``dropped`` maps a rule to a
    count: ``service_not_allowed``/``service_denied`` (``service_allow``/``service_deny``),
    ``metric_not_allowed``/``metric_denied``, ``operation_limit``, ``edge_limit``, ``severity_limit``,
    ``metric_limit`` and ``attribute_set_limit`` (the top-N bounds), and ``metric_type_conflict`` (one
    metric name in two tables: the first of gauge, sum, histogram wins). ``examples`` holds up to
    :data:`EXAMPLES` dropped names per rule. ``considered == kept + sum(dropped.values())``.
    """

    grid: Grid
    considered: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    queries: dict[SeriesKey, SeriesQuery] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    EXAMPLES = 10

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def consider(self, series: int) -> None:
        self.considered += series

    def drop(self, rule: str, name: str, series: int) -> None:
        if series <= 0:
            return
        self.dropped[rule] = self.dropped.get(rule, 0) + series
        seen = self.examples.setdefault(rule, [])
        if len(seen) < self.EXAMPLES and name not in seen:
            seen.append(name)

    def query_for(self, key: SeriesKey) -> str:
        """The ClickHouse query that produced ``key``'s series, values inlined (see :class:`SeriesQuery`)."""
        return self.queries[key].text()

    @contextmanager
    def timed(self, family: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[family] = self.seconds.get(family, 0.0) + time.perf_counter() - began


# --- candidates and assembly ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A name that could become series, with its volume in the window (for top-N ranking)."""

    name: tuple[str, ...]
    volume: float


def top(candidates: Iterable[Candidate], n: int) -> tuple[list[Candidate], list[Candidate]]:
    """Split into the ``n`` largest by volume (ties by name, so the choice is stable) and the rest."""
    ranked = sorted(candidates, key=lambda c: (-c.volume, c.name))
    return ranked[:n], ranked[n:]


def to_float(value: Any) -> float | None:
    """A ClickHouse number → float; NULL, NaN and infinities (no meaningful value) → ``None``."""
    if value is None:
        return None
    x = float(value)
    return x if math.isfinite(x) else None


class SeriesTable:
    """Collects per-bucket values for many series, then fills the grid.

    ``declare(key, zero_from=t)`` marks a rate series: from bucket ``t`` on, a bucket without rows
    means "no events" (0.0), not "no data" (``None``).
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self._values: dict[SeriesKey, list[float | None]] = {}
        self._zero_from: dict[SeriesKey, int] = {}

    def declare(self, key: SeriesKey, zero_from: int | None = None) -> None:
        if key not in self._values:
            self._values[key] = [None] * self.grid.buckets
        if zero_from is not None:
            self._zero_from[key] = zero_from

    def put(self, key: SeriesKey, t: int, value: Any) -> None:
        """Set one bucket; rows of undeclared series or outside the grid are ignored."""
        i = self.grid.index(t)
        values = self._values.get(key)
        if i is not None and values is not None:
            values[i] = to_float(value)

    def series(self) -> list[Series]:
        stamps = self.grid.timestamps
        out = []
        for key, values in self._values.items():
            first = self._zero_from.get(key)
            if first is not None:
                start = max(0, (first - self.grid.start) // self.grid.step)
                values = [0.0 if v is None and i >= start else v for i, v in enumerate(values)]
            out.append(Series(key, self.grid.step, stamps, tuple(values)))
        return out


def fetch(store: ClickHouse, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` with server-side binding of the parameters it uses."""
    return store.rows(sql, bind(sql, params))


def window_params(grid: Grid) -> dict[str, Any]:
    """Parameters every query shares: the grid bounds and step."""
    return {"lo": grid.start, "hi": grid.end, "step": grid.step}


def narrowed(params: Mapping[str, Any], **only: Sequence[Any]) -> dict[str, Any]:
    """The shared parameters with the name lists cut down to one series' names."""
    return {**params, **{name: list(values) for name, values in only.items()}}


def bind(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Only the parameters ``sql`` uses: what is sent, and what a cited query shows."""
    names = set(_PARAM_NAME.findall(sql))
    return {name: value for name, value in params.items() if name in names}


# --- SQL fragments shared by the span and log families ----------------------------------------

LO = "toDateTime64({lo:Int64}, 9, 'UTC')"
HI = "toDateTime64({hi:Int64}, 9, 'UTC')"
WINDOW = f"Timestamp >= {LO} AND Timestamp < {HI}"
"""The grid's time range on a ``Timestamp`` column (partition and primary-key pruning)."""
BUCKET = "toUInt32(intDiv(toUnixTimestamp(Timestamp), {step:UInt32}) * {step:UInt32})"
"""The start of the step a ``Timestamp`` falls in (Unix seconds, aligned to the epoch)."""
