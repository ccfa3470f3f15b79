"""The topology learned from a simulated shop, its graph helpers, JSON form and snapshots."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from app.eval_detect import START, load
from correlate.topology import (
    MIGRATION,
    TOPOLOGY_TABLE,
    Edge,
    Topology,
    build_topology,
    diff,
    load_latest,
    make_topology,
    save_snapshot,
)
from ingest.otlp_parse import Limits
from ingest.writer import NativeWriter, Record
from warroom.errors import InputError
from warroom.schema import SchemaOptions

DURATION = timedelta(minutes=45)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def topo_store(store: Any) -> Any:
    MIGRATION.apply(store, SchemaOptions())
    MIGRATION.apply(store, SchemaOptions())  # idempotent
    store.command(f"TRUNCATE TABLE {store.table(TOPOLOGY_TABLE)}")
    return store


@pytest.fixture(scope="module")
def shop(_migrated: Any) -> Topology:
    """The baseline shop, loaded once for the module (the ``store`` fixture empties it per test)."""
    for table in ("otel_traces", "otel_logs"):
        _migrated.command(f"TRUNCATE TABLE {_migrated.table(table)}")
    load(_migrated, "baseline", seed=5, duration=DURATION, rate=1.0)
    return build_topology(_migrated, START, START + DURATION)


def _edge(caller: str, callee: str, kind: str = "rpc") -> Edge:
    return Edge(caller, callee, kind, 10, 0.5, 0.1, 12.5)  # type: ignore[arg-type]


def test_shop_edges_are_learned(shop: Topology) -> None:
    for caller, callee in [
        ("frontend", "checkout"),
        ("checkout", "payment"),
        ("frontend", "cart"),
        ("checkout", "cart"),
        ("frontend", "catalog"),
    ]:
        edge = shop.edge(caller, callee)
        assert edge is not None and edge.kind == "rpc", (caller, callee)
        assert edge.calls > 0 and edge.rate_per_s > 0 and 0 <= edge.error_ratio <= 1 and edge.p95_ms > 0
    postgres = shop.edge("payment", "postgres")
    redis = shop.edge("cart", "redis")
    assert postgres is not None and postgres.kind == "db"
    assert redis is not None and redis.kind == "db"
    assert "postgres" in shop.callees("catalog")
    assert shop.edge("checkout", "frontend") is None  # direction is caller -> callee
    assert {"frontend", "checkout", "payment", "cart", "postgres", "redis"} <= set(shop.services)
    edge = shop.edge("frontend", "checkout")
    assert edge is not None
    assert edge.rate_per_s == pytest.approx(edge.calls / DURATION.total_seconds())


def test_graph_helpers(shop: Topology) -> None:
    assert "checkout" in shop.callees("frontend") and "frontend" in shop.callers("checkout")
    assert shop.callers("frontend") == ()
    assert {"checkout", "payment", "postgres", "cart", "redis"} <= shop.downstream("frontend")
    assert shop.downstream("payment") == frozenset({"postgres"})
    assert shop.downstream("postgres") == frozenset()
    assert "frontend" in shop.upstream("postgres")
    assert shop.hops("frontend", "frontend") == 0
    assert shop.hops("frontend", "checkout") == 1
    assert shop.hops("frontend", "payment") == 2
    assert shop.hops("frontend", "redis") == 2
    assert shop.hops("payment", "frontend") is None
    assert shop.hops("payment", "frontend", directed=False) == 2
    assert shop.hops("redis", "postgres", directed=False) == 4  # redis-cart-checkout-payment-postgres
    assert shop.hops("frontend", "nowhere") is None


def test_json_round_trip(shop: Topology) -> None:
    text = shop.to_json()
    assert '"format": 1' in text
    assert Topology.from_json(text) == shop
    assert Topology.from_json(text.encode()) == shop
    with pytest.raises(InputError):
        Topology.from_json(text.replace('"format": 1', '"format": 99'))
    with pytest.raises(InputError):
        Topology.from_json("not json")


def test_snapshot_round_trip_and_versions(topo_store: Any, shop: Topology) -> None:
    assert load_latest(topo_store, shop.end) is None
    older = make_topology(shop.start - timedelta(hours=1), shop.start, [_edge("a", "b")], ["lonely"])
    save_snapshot(topo_store, older)
    save_snapshot(topo_store, shop)
    assert load_latest(topo_store, shop.end) == shop
    assert load_latest(topo_store, shop.end + timedelta(days=1)) == shop
    assert load_latest(topo_store, shop.end - timedelta(microseconds=1)) == older
    assert load_latest(topo_store, older.end - timedelta(seconds=1)) is None
    # Saving the same window again: the last save is the one in effect.
    empty = make_topology(shop.start, shop.end, [])
    save_snapshot(topo_store, empty, saved_at=datetime.now(UTC) + timedelta(seconds=1))
    assert load_latest(topo_store, shop.end) == empty


def test_diff() -> None:
    old = make_topology(
        T0, T0 + timedelta(minutes=5), [_edge("a", "b"), _edge("b", "c"), _edge("b", "pg", "db")]
    )
    new = make_topology(
        T0 + timedelta(minutes=5), T0 + timedelta(minutes=10), [_edge("a", "b"), _edge("b", "d")]
    )
    change = diff(old, new)
    assert [(e.caller, e.callee) for e in change.added] == [("b", "d")]
    assert sorted((e.caller, e.callee) for e in change.removed) == [("b", "c"), ("b", "pg")]
    assert change.changed and not diff(new, new).changed
    assert len(diff(None, new).added) == 2


def test_cycles_and_empty_graph() -> None:
    loop = make_topology(T0, T0 + timedelta(minutes=1), [_edge("a", "b"), _edge("b", "a"), _edge("b", "c")])
    assert loop.downstream("a") == frozenset({"b", "c"})
    assert loop.hops("c", "a") is None and loop.hops("c", "a", directed=False) == 2
    empty = make_topology(T0, T0 + timedelta(minutes=1), [])
    assert empty.services == () and empty.downstream("x") == frozenset() and empty.hops("x", "y") is None
    assert Topology.from_json(empty.to_json()) == empty


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _pair(caller: str, callee: str, start_ns: int) -> bytes:
    """A caller Client span and the callee's Server span under it, one resource each."""
    request = ExportTraceServiceRequest()
    trace_id, client_id, server_id = bytes(range(1, 17)), b"\x0a" * 8, b"\x0b" * 8
    for service, span in (
        (caller, Span(trace_id=trace_id, span_id=client_id, kind=Span.SPAN_KIND_CLIENT, name="call")),
        (
            callee,
            Span(
                trace_id=trace_id,
                span_id=server_id,
                parent_span_id=client_id,
                kind=Span.SPAN_KIND_SERVER,
                name="serve",
                status=Status(code=Status.STATUS_CODE_ERROR),
            ),
        ),
    ):
        span.start_time_unix_nano = start_ns
        span.end_time_unix_nano = start_ns + 3_000_000
        resource = request.resource_spans.add()
        resource.resource.attributes.append(_kv("service.name", service))
        resource.scope_spans.add().spans.append(span)
    db = Span(
        trace_id=trace_id,
        span_id=b"\x0c" * 8,
        parent_span_id=server_id,
        kind=Span.SPAN_KIND_CLIENT,
        name="SELECT",
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 1_000_000,
        attributes=[
            _kv("db.system", "postgresql"),
            _kv("server.address", "10.0.0.1"),
            _kv("db.namespace", "x'y"),
        ],
    )
    request.resource_spans[1].scope_spans[0].spans.append(db)
    return request.SerializeToString()


def test_hostile_service_names_stay_data(topo_store: Any) -> None:
    caller, callee = 'o\'brien "`x`"', "'; DROP TABLE x --"
    now = time.time_ns()
    writer = NativeWriter(topo_store, Limits(), lambda: now)
    record = Record("traces", "otlp_proto", _pair(caller, callee, now - 60 * 10**9), "test", "hostile", 0, 0)
    writer.write("traces", [writer.prepare(record)], f"hostile-{now}")
    end = datetime.now(UTC) + timedelta(minutes=1)
    topology = build_topology(topo_store, end - timedelta(minutes=10), end)
    edge = topology.edge(caller, callee)
    assert edge is not None and edge.calls == 1 and edge.error_ratio == 0.0  # measured on the client span
    peer = topology.edge(callee, "postgresql/x'y")  # an IP address does not name a peer
    assert peer is not None and peer.kind == "db"
    save_snapshot(topo_store, topology)
    assert load_latest(topo_store, end) == topology
    assert topo_store.scalar(f"SELECT count() FROM {topo_store.table('otel_traces')}") == 3
