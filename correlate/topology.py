"""The service topology learned from traces: who calls whom, how often, how well, and since when.

An :class:`Edge` ``caller -> callee`` comes from one of two sources in ``otel_traces``:

* **rpc / messaging between instrumented services**: a span whose parent span (same ``TraceId``,
  ``ParentSpanId = SpanId``) belongs to another service. Both sides are time-filtered: the child
  in ``[start, end)``, the parent from ``parent_slack`` before ``start`` (a parent starts before its
  child). The call is measured on the parent when it is the caller's Client/Producer span (what
  the caller waited for, timeouts included), else on the child. The edge is ``messaging`` when the
  child is a Consumer span or the parent a Producer span or carries ``messaging.system``.
* **uninstrumented peers** (databases, brokers): Client/Producer spans with ``db.system`` /
  ``db.system.name`` (kind ``db``) or ``messaging.system`` (kind ``messaging``). The peer is named by
  ``peer.service``, else the leading label of ``server.address`` / ``net.peer.name`` unless it is an
  IP address (``postgres.shop.svc`` → ``postgres``), else ``system/namespace``, else the system.

When both sources give the same ``(caller, callee)``, the parent/child edge is kept. A call failed
when its status is Error or its HTTP status code is 5xx. ``p95_ms`` is a t-digest estimate.

Topologies are versioned: :func:`save_snapshot` appends one to ``warroom_topology`` (migration
300) keyed by its window end, and :func:`load_latest` returns the one in effect at a time — the
latest window ending at or before it (the last save wins when a window was saved twice).
Service names are data everywhere: bound as query parameters, never spliced into SQL.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from warroom import schema
from warroom.clickhouse import ClickHouse
from warroom.errors import InputError
from warroom.schema import Migration, SchemaOptions

__all__ = [
    "FORMAT",
    "MIGRATION",
    "TOPOLOGY_TABLE",
    "Edge",
    "EdgeKind",
    "Topology",
    "TopologyDiff",
    "build_topology",
    "diff",
    "load_latest",
    "make_topology",
    "save_snapshot",
]

FORMAT = 1
"""Version of the JSON form of a :class:`Topology` (``{"format": 1, ...}``)."""

TOPOLOGY_TABLE = "warroom_topology"

EdgeKind = Literal["rpc", "db", "messaging"]
_KINDS: tuple[str, ...] = ("rpc", "db", "messaging")


@dataclass(frozen=True, slots=True)
class Edge:
    """Calls from ``caller`` to ``callee`` over a topology's window."""

    caller: str
    callee: str
    kind: EdgeKind
    calls: int
    rate_per_s: float
    error_ratio: float
    p95_ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "caller": self.caller,
            "callee": self.callee,
            "kind": self.kind,
            "calls": self.calls,
            "rate_per_s": self.rate_per_s,
            "error_ratio": self.error_ratio,
            "p95_ms": self.p95_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Edge:
        return cls(
            caller=str(data["caller"]),
            callee=str(data["callee"]),
            kind=_kind(data["kind"]),
            calls=int(data["calls"]),
            rate_per_s=float(data["rate_per_s"]),
            error_ratio=float(data["error_ratio"]),
            p95_ms=float(data["p95_ms"]),
        )


def _kind(value: object) -> EdgeKind:
    if value not in _KINDS:
        raise InputError(f"unknown topology edge kind {value!r}", "invalid_topology")
    return cast(EdgeKind, value)


@dataclass(frozen=True, slots=True)
class Topology:
    """The call graph over ``[start, end)``: edges sorted by (caller, callee), every node in ``services``.

    ``services`` holds every service that emitted a span in the window and every peer an edge
    points to, sorted. Graph helpers treat it as a directed graph caller → callee.
    """

    start: datetime
    end: datetime
    edges: tuple[Edge, ...]
    services: tuple[str, ...]
    _out: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False, hash=False)
    _in: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        out: dict[str, set[str]] = {}
        into: dict[str, set[str]] = {}
        for e in self.edges:
            out.setdefault(e.caller, set()).add(e.callee)
            into.setdefault(e.callee, set()).add(e.caller)
        object.__setattr__(self, "_out", {k: tuple(sorted(v)) for k, v in out.items()})
        object.__setattr__(self, "_in", {k: tuple(sorted(v)) for k, v in into.items()})

    def edge(self, caller: str, callee: str) -> Edge | None:
        return next((e for e in self.edges if e.caller == caller and e.callee == callee), None)

    def callees(self, service: str) -> tuple[str, ...]:
        """Direct callees of ``service``, sorted."""
        return self._out.get(service, ())

    def callers(self, service: str) -> tuple[str, ...]:
        """Direct callers of ``service``, sorted."""
        return self._in.get(service, ())

    def downstream(self, service: str) -> frozenset[str]:
        """Everything ``service`` depends on, transitively (itself excluded, even in a cycle)."""
        return self._reach(service, self._out)

    def upstream(self, service: str) -> frozenset[str]:
        """Everything that depends on ``service``, transitively (itself excluded)."""
        return self._reach(service, self._in)

    @staticmethod
    def _reach(service: str, graph: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
        seen: set[str] = set()
        todo = [service]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        seen.discard(service)
        return frozenset(seen)

    def hops(self, a: str, b: str, directed: bool = True) -> int | None:
        """Fewest edges from ``a`` to ``b`` (following call direction unless ``directed=False``).

        0 when ``a == b``; ``None`` when ``b`` cannot be reached.
        """
        if a == b:
            return 0
        dist = {a: 0}
        queue = deque([a])
        while queue:
            node = queue.popleft()
            nexts = self._out.get(node, ())
            if not directed:
                nexts = (*nexts, *self._in.get(node, ()))
            for nxt in nexts:
                if nxt in dist:
                    continue
                if nxt == b:
                    return dist[node] + 1
                dist[nxt] = dist[node] + 1
                queue.append(nxt)
        return None

    def to_json(self) -> str:
        """Versioned JSON text: ``{"format": 1, "start", "end", "services": [...], "edges": [...]}``."""
        return json.dumps(
            {
                "format": FORMAT,
                "start": self.start.isoformat(),
                "end": self.end.isoformat(),
                "services": list(self.services),
                "edges": [e.to_json() for e in self.edges],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Topology:
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise InputError(f"topology is not JSON: {exc}", "invalid_topology") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise InputError(f"unsupported topology format {found!r} (expected {FORMAT})", "invalid_topology")
        try:
            return make_topology(
                _utc(datetime.fromisoformat(data["start"])),
                _utc(datetime.fromisoformat(data["end"])),
                [Edge.from_json(e) for e in data["edges"]],
                [str(s) for s in data["services"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed topology: {exc!r}", "invalid_topology") from exc


@dataclass(frozen=True, slots=True)
class TopologyDiff:
    """Edges (by caller, callee, kind) present only in the new topology, or only in the old one."""

    added: tuple[Edge, ...]
    removed: tuple[Edge, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def make_topology(
    start: datetime, end: datetime, edges: Iterable[Edge], services: Iterable[str] = ()
) -> Topology:
    """A :class:`Topology` in canonical form: edges sorted, ``services`` including every edge end."""
    ordered = tuple(sorted(edges, key=lambda e: (e.caller, e.callee, e.kind)))
    nodes = set(services)
    for e in ordered:
        nodes.update((e.caller, e.callee))
    return Topology(_utc(start), _utc(end), ordered, tuple(sorted(nodes)))


def diff(old: Topology | None, new: Topology) -> TopologyDiff:
    """Edges added and removed from ``old`` to ``new`` (``old=None``: every edge is new)."""
    before = {(e.caller, e.callee, e.kind): e for e in (old.edges if old else ())}
    after = {(e.caller, e.callee, e.kind): e for e in new.edges}
    return TopologyDiff(
        added=tuple(e for k, e in after.items() if k not in before),
        removed=tuple(e for k, e in before.items() if k not in after),
    )


# --- learning from otel_traces ------------------------------------------------------------------

_CLIENTISH = "SpanKind IN ('Client', 'Producer', 'SPAN_KIND_CLIENT', 'SPAN_KIND_PRODUCER')"
_IS_ERROR = (
    "(StatusCode IN ('Error', 'STATUS_CODE_ERROR')"
    " OR toUInt16OrZero(SpanAttributes['http.response.status_code']) >= 500"
    " OR toUInt16OrZero(SpanAttributes['http.status_code']) >= 500)"
)
_CHILD_LO = "fromUnixTimestamp64Micro({lo:Int64}, 'UTC')"
_PARENT_LO = "fromUnixTimestamp64Micro({parent_lo:Int64}, 'UTC')"
_HI = "fromUnixTimestamp64Micro({hi:Int64}, 'UTC')"

# Calls between instrumented services: child span joined to its parent span in another service.
_CALL_EDGES = f"""
SELECT
    parent.svc AS caller,
    child.svc AS callee,
    if(child.consumer OR parent.producer OR parent.messaging, 'messaging', 'rpc') AS kind,
    count() AS calls,
    countIf(if(parent.clientish, parent.err, child.err)) / count() AS error_ratio,
    quantileTDigest(0.95)(if(parent.clientish, parent.dur, child.dur)) / 1e6 AS p95_ms
FROM (
    SELECT TraceId AS trace, ParentSpanId AS parent_id, ServiceName AS svc, Duration AS dur,
        {_IS_ERROR} AS err,
        SpanKind IN ('Consumer', 'SPAN_KIND_CONSUMER') AS consumer
    FROM {{traces}}
    WHERE Timestamp >= {_CHILD_LO} AND Timestamp < {_HI} AND ParentSpanId != ''
) AS child
INNER JOIN (
    SELECT TraceId AS trace, SpanId AS span_id, ServiceName AS svc, Duration AS dur,
        {_IS_ERROR} AS err,
        {_CLIENTISH} AS clientish,
        SpanKind IN ('Producer', 'SPAN_KIND_PRODUCER') AS producer,
        SpanAttributes['messaging.system'] != '' AS messaging
    FROM {{traces}}
    WHERE Timestamp >= {_PARENT_LO} AND Timestamp < {_HI}
) AS parent ON child.trace = parent.trace AND child.parent_id = parent.span_id
WHERE caller != callee
GROUP BY caller, callee, kind
"""

# Uninstrumented peers, named from the caller's Client/Producer span attributes.
_PEER_EDGES = f"""
SELECT caller, callee, kind, count() AS calls, countIf(err) / count() AS error_ratio,
    quantileTDigest(0.95)(Duration) / 1e6 AS p95_ms
FROM (
    SELECT ServiceName AS caller, Duration, {_IS_ERROR} AS err,
        coalesce(nullIf(SpanAttributes['db.system.name'], ''), nullIf(SpanAttributes['db.system'], '')) AS db,
        nullIf(SpanAttributes['messaging.system'], '') AS mq,
        coalesce(nullIf(SpanAttributes['server.address'], ''), nullIf(SpanAttributes['net.peer.name'], ''))
            AS host,
        coalesce(nullIf(SpanAttributes['db.namespace'], ''), nullIf(SpanAttributes['db.name'], '')) AS dbname,
        multiIf(
            SpanAttributes['peer.service'] != '', SpanAttributes['peer.service'],
            host IS NOT NULL AND NOT isIPv4String(assumeNotNull(host))
                AND NOT isIPv6String(assumeNotNull(host)), splitByChar('.', assumeNotNull(host))[1],
            dbname IS NOT NULL, concat(coalesce(db, mq, ''), '/', assumeNotNull(dbname)),
            coalesce(db, mq, '')
        ) AS callee,
        if(db IS NULL, 'messaging', 'db') AS kind
    FROM {{traces}}
    WHERE Timestamp >= {_CHILD_LO} AND Timestamp < {_HI} AND {_CLIENTISH}
        AND (SpanAttributes['db.system'] != '' OR SpanAttributes['db.system.name'] != ''
            OR SpanAttributes['messaging.system'] != '')
)
WHERE callee != '' AND callee != caller
GROUP BY caller, callee, kind
"""

_SERVICES = f"""
SELECT DISTINCT ServiceName FROM {{traces}}
WHERE Timestamp >= {_CHILD_LO} AND Timestamp < {_HI} AND ServiceName != ''
"""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _micros(value: datetime) -> int:
    return (_utc(value) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _from_micros(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))


def build_topology(
    store: ClickHouse,
    start: datetime,
    end: datetime,
    parent_slack: timedelta = timedelta(minutes=5),
) -> Topology:
    """Learn the topology over ``[start, end)`` from ``otel_traces`` (naive datetimes are UTC)."""
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise InputError(
            f"topology window is empty: {start.isoformat()} .. {end.isoformat()}", "invalid_window"
        )
    params = {"lo": _micros(start), "hi": _micros(end), "parent_lo": _micros(start - parent_slack)}
    traces = store.table(schema.TRACES)
    seconds = (end - start).total_seconds()
    edges: dict[tuple[str, str], Edge] = {}
    # Parent/child edges first: they win over a peer edge for the same pair.
    for sql in (_CALL_EDGES, _PEER_EDGES):
        for caller, callee, kind, calls, errors, p95 in store.rows(sql.replace("{traces}", traces), params):
            key = (str(caller), str(callee))
            if key in edges:
                continue
            edges[key] = Edge(
                caller=key[0],
                callee=key[1],
                kind=_kind(kind),
                calls=int(calls),
                rate_per_s=int(calls) / seconds,
                error_ratio=float(errors),
                p95_ms=float(p95),
            )
    services = [str(r[0]) for r in store.rows(_SERVICES.replace("{traces}", traces), params)]
    return make_topology(start, end, edges.values(), services)


# --- snapshots ------------------------------------------------------------------------------------

# One row per edge, one per node (Kind 'service'), and one marker row (Kind 'snapshot') so that
# an empty topology is a snapshot too. A snapshot is (SnapshotAt = window end, SavedAt).
_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} {on_cluster} (
    SnapshotAt DateTime64(6, 'UTC'),
    SavedAt DateTime64(6, 'UTC'),
    WindowStart DateTime64(6, 'UTC'),
    Caller String,
    Callee String,
    Kind LowCardinality(String),
    Calls UInt64,
    RatePerS Float64,
    ErrorRatio Float64,
    P95Ms Float64
) ENGINE = {engine}
PARTITION BY toYYYYMM(SnapshotAt)
ORDER BY (SnapshotAt, SavedAt, Caller, Callee, Kind)
"""

_COLUMNS = (
    "SnapshotAt",
    "SavedAt",
    "WindowStart",
    "Caller",
    "Callee",
    "Kind",
    "Calls",
    "RatePerS",
    "ErrorRatio",
    "P95Ms",
)
_SNAPSHOT, _SERVICE = "snapshot", "service"


#: Small and read whole per snapshot: one shard on a cluster (see :data:`warroom.schema.ONE_SHARD`).
_SPEC = schema.TableSpec(TOPOLOGY_TABLE, _DDL)


def _create(store: ClickHouse, opts: SchemaOptions) -> None:
    schema.create_table(store, opts, _SPEC)


MIGRATION = Migration(300, "correlate topology snapshots", _create)


def save_snapshot(store: ClickHouse, topology: Topology, saved_at: datetime | None = None) -> int:
    """Append ``topology`` as the snapshot for its window end; returns the rows written."""
    at, start = _micros(topology.end), _micros(topology.start)
    saved = _micros(saved_at or datetime.now(UTC))
    rows: list[tuple[Any, ...]] = [("", "", _SNAPSHOT, 0, 0.0, 0.0, 0.0)]
    rows += [("", s, _SERVICE, 0, 0.0, 0.0, 0.0) for s in topology.services]
    rows += [
        (e.caller, e.callee, e.kind, e.calls, e.rate_per_s, e.error_ratio, e.p95_ms) for e in topology.edges
    ]
    columns: list[list[Any]] = [[at] * len(rows), [saved] * len(rows), [start] * len(rows)]
    columns += [list(c) for c in zip(*rows, strict=True)]
    return store.insert(TOPOLOGY_TABLE, _COLUMNS, columns)


def load_latest(store: ClickHouse, at: datetime) -> Topology | None:
    """The snapshot in effect at ``at``: the latest window ending at or before it; ``None`` if none."""
    table = store.table(TOPOLOGY_TABLE)
    found = store.rows(
        "SELECT toUnixTimestamp64Micro(SnapshotAt), toUnixTimestamp64Micro(SavedAt), "
        f"toUnixTimestamp64Micro(WindowStart) FROM {table} "
        "WHERE Kind = {marker:String} AND SnapshotAt <= fromUnixTimestamp64Micro({at:Int64}, 'UTC') "
        "ORDER BY SnapshotAt DESC, SavedAt DESC LIMIT 1",
        {"marker": _SNAPSHOT, "at": _micros(at)},
    )
    if not found:
        return None
    snapshot, saved, window_start = (int(v) for v in found[0])
    rows = store.rows(
        f"SELECT Caller, Callee, Kind, Calls, RatePerS, ErrorRatio, P95Ms FROM {table} "
        "WHERE SnapshotAt = fromUnixTimestamp64Micro({snapshot:Int64}, 'UTC') "
        "AND SavedAt = fromUnixTimestamp64Micro({saved:Int64}, 'UTC')",
        {"snapshot": snapshot, "saved": saved},
    )
    services = [str(r[1]) for r in rows if r[2] == _SERVICE]
    edges = [
        Edge(str(r[0]), str(r[1]), _kind(r[2]), int(r[3]), float(r[4]), float(r[5]), float(r[6]))
        for r in rows
        if r[2] in _KINDS
    ]
    return make_topology(_from_micros(window_start), _from_micros(snapshot), edges, services)
