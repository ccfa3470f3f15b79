"""detect.series on the real embedded ClickHouse: a bad-deploy hour of the shop, and hand-made edge cases.

The shop data is generated once per module into its own database of this process's engine (the
engine allows one data path per process, databases are free), so the tests that rely on it are not
affected by the per-test truncation of the shared ``store``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

import detect.series
import fixtures
from app import wiring
from detect import series_spans
from detect.series import Grid, SeriesLimits, SeriesReport, fetch_series
from ingest.otlp_parse import Limits
from ingest.writer import NativeWriter, Record
from warroom import schema
from warroom.clickhouse import ClickHouse, ident
from warroom.config import load_settings
from warroom.errors import ConfigError, InputError
from warroom.model import Series, SignalKind

START = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
DURATION = timedelta(minutes=60)
STEP = 60
SERVICES = ("frontend", "cart", "catalog", "recommendation", "checkout", "payment", "inventory", "shipping")


# --- loading ----------------------------------------------------------------------------------


def _write(store: ClickHouse, requests: Sequence[tuple[str, Message]]) -> None:
    """Store OTLP requests through the real ingest path (staging table + flattening views)."""
    writer = NativeWriter(store, Limits(), lambda: int(datetime.now(UTC).timestamp() * 1e9))
    by_signal: dict[str, list[Any]] = {}
    for i, (signal, request) in enumerate(requests):
        record = Record(signal, "otlp_proto", request.SerializeToString(), "test", "t", 0, i)
        by_signal.setdefault(signal, []).append(writer.prepare(record))
    for signal, batch in by_signal.items():
        for lo in range(0, len(batch), 200):
            result = writer.write(signal, batch[lo : lo + 200], f"series-{uuid.uuid4().hex}")
            assert result.dead_records == 0, result.reasons


@dataclass(frozen=True)
class Shop:
    store: ClickHouse
    truth: fixtures.GroundTruth
    series: list[Series]
    report: SeriesReport

    def find(self, kind: SignalKind, entity: str, **labels: str) -> Series:
        return find(self.series, kind, entity, **labels)


def find(series: Sequence[Series], kind: SignalKind, entity: str, **labels: str) -> Series:
    hits = [
        s
        for s in series
        if s.key.kind is kind
        and s.key.entity == entity
        and all(s.key.label_dict.get(k) == v for k, v in labels.items())
        and (labels or not s.key.labels or kind is SignalKind.METRIC)
    ]
    assert len(hits) == 1, f"{kind.value} {entity} {labels}: {[str(s.key) for s in hits]}"
    return hits[0]


@pytest.fixture(scope="module")
def shop(chdb_path: str) -> Iterator[Shop]:
    database = "t_series_" + uuid.uuid4().hex[:8]
    settings = load_settings(env={}, clickhouse_dsn=chdb_path, clickhouse_database=database)
    db = ClickHouse(settings.clickhouse_dsn, database)
    schema.migrate(db, wiring.schema_options(settings), wiring.migrations())
    args: dict[str, Any] = {"seed": 3, "start": START, "duration": DURATION, "step": timedelta(minutes=1)}
    _write(db, list(fixtures.iter_requests("bad_deploy", rate=1.0, **args)))
    series, report = fetch_series(db, START, START + DURATION, STEP)
    yield Shop(db, fixtures.ground_truth("bad_deploy", rate=1.0, **args), series, report)
    db.command(f"DROP DATABASE IF EXISTS {ident(database)}")


# --- the bad deploy ---------------------------------------------------------------------------


def _weighted(ratio: Series, rate: Series, keep: Any) -> float:
    """Failed / total requests over the buckets ``keep(t)`` selects."""
    failed = total = 0.0
    for t, r, n in zip(ratio.timestamps, ratio.values, rate.values, strict=True):
        if keep(t) and r is not None and n:
            failed += r * n
            total += n
    return failed / total


def test_checkout_error_ratio_rises_after_the_bad_deploy(shop: Shop) -> None:
    (fault,) = shop.truth.faults
    assert fault.root_cause_service == "checkout"
    onset = int(fault.start.timestamp())
    ratio = shop.find(SignalKind.ERROR_RATIO, "checkout")
    rate = shop.find(SignalKind.REQUEST_RATE, "checkout")
    before = _weighted(ratio, rate, lambda t: t < onset)
    after = _weighted(ratio, rate, lambda t: t >= onset)
    # ratios are shrunk toward zero by ERROR_PRIOR requests per step (low volume here: ~0.1)
    assert before < 0.05
    assert after > 0.1
    assert after > 4 * before
    # frontend calls checkout without a fallback: its checkout edge fails as often
    edge = shop.find(SignalKind.ERROR_RATIO, "frontend->checkout", edge="frontend->checkout")
    edge_rate = shop.find(SignalKind.REQUEST_RATE, "frontend->checkout", edge="frontend->checkout")
    assert _weighted(edge, edge_rate, lambda t: t >= onset) > 0.1


def test_request_rates_are_positive_and_match_the_stored_spans(shop: Shop) -> None:
    stored = dict(
        shop.store.rows(
            f"SELECT ServiceName, count() FROM {shop.store.table(schema.TRACES)} "
            "WHERE SpanKind = 'Server' GROUP BY ServiceName"
        )
    )
    assert set(stored) == set(SERVICES)
    for service in SERVICES:
        rate = shop.find(SignalKind.REQUEST_RATE, service)
        assert len(rate.values) == 60 and rate.timestamps[0] == int(START.timestamp())
        assert all(v is not None and v >= 0 for v in rate.values)
        assert sum(v or 0.0 for v in rate.values) * STEP == pytest.approx(stored[service])
    frontend = shop.find(SignalKind.REQUEST_RATE, "frontend").values
    assert 0.4 < sum(v or 0.0 for v in frontend) / len(frontend) < 2.5  # rate=1.0 entry requests/s
    # the operations of a service add up to it (none were cut at the default limits)
    ops = [s for s in shop.series if s.key.kind is SignalKind.REQUEST_RATE and s.key.entity == "frontend"]
    assert len(ops) > 2
    assert sum(sum(v or 0.0 for v in s.values) for s in ops if s.key.labels) * STEP == pytest.approx(
        stored["frontend"]
    )


def test_latency_quantiles_are_ordered_and_in_milliseconds(shop: Shop) -> None:
    p50 = shop.find(SignalKind.LATENCY_P50, "payment").values
    p95 = shop.find(SignalKind.LATENCY_P95, "payment").values
    p99 = shop.find(SignalKind.LATENCY_P99, "payment").values
    pairs = [
        (a, b, c)
        for a, b, c in zip(p50, p95, p99, strict=True)
        if a is not None and b is not None and c is not None
    ]
    assert len(pairs) > 30
    assert all(a <= b + 1e-6 and b <= c + 1e-6 for a, b, c in pairs)
    assert 5 < sorted(a for a, _, _ in pairs)[len(pairs) // 2] < 500  # payment takes ~35 ms + postgres


def test_edges_cover_calls_and_database_peers(shop: Shop) -> None:
    edges = {s.key.entity for s in shop.series if "edge" in s.key.label_dict}
    for caller, callee in (("frontend", "checkout"), ("checkout", "payment"), ("cart", "redis")):
        assert f"{caller}->{callee}" in edges
    assert {"payment->postgres", "catalog->postgres"} <= edges
    # every checkout request comes from frontend: the edge rate is checkout's rate
    edge = shop.find(SignalKind.REQUEST_RATE, "frontend->checkout", edge="frontend->checkout").values
    service = shop.find(SignalKind.REQUEST_RATE, "checkout").values
    assert edge == pytest.approx(service)
    p95 = shop.find(SignalKind.LATENCY_P95, "payment->postgres", edge="payment->postgres").values
    assert any(v is not None and v > 0 for v in p95)


def test_log_rates_per_severity(shop: Shop) -> None:
    (fault,) = shop.truth.faults
    onset = int(fault.start.timestamp())
    errors = shop.find(SignalKind.LOG_RATE, "checkout", severity="ERROR")
    before = [v for t, v in zip(errors.timestamps, errors.values, strict=True) if t < onset]
    after = [v for t, v in zip(errors.timestamps, errors.values, strict=True) if t >= onset]
    assert None not in before and None not in after  # 0.0 where checkout logged no error
    assert sum(v or 0.0 for v in after) / len(after) > 3 * sum(v or 0.0 for v in before) / len(before)
    assert {s.key.label_dict["severity"] for s in shop.series if s.key.kind is SignalKind.LOG_RATE} >= {
        "INFO",
        "ERROR",
    }


def test_metric_series_cpu_gauge_and_request_counter_rate(shop: Shop) -> None:
    for service in SERVICES:
        cpu = shop.find(SignalKind.METRIC, service, metric="process.cpu.utilization")
        assert all(v is not None and 0 <= v <= 1 for v in cpu.values)
    host = shop.find(SignalKind.METRIC, "shop-node-2", metric="system.cpu.utilization", host="shop-node-2")
    assert all(v is not None for v in host.values)
    counters = [
        s
        for s in shop.series
        if s.key.entity == "inventory" and s.key.label_dict.get("metric") == "http.server.request.count"
    ]
    assert counters and all(s.key.label_dict["unit"] == "{request}/s" for s in counters)
    every = [s for s in shop.series if s.key.label_dict.get("metric") == "http.server.request.count"]
    values = [v for s in every for v in s.values if v is not None]
    assert values and min(values) >= 0  # checkout's counters restart with the deploy: no negative rate
    # the counter, bucketed by the end of the interval it covers, matches the spans step by step
    total = [sum(s.values[i] or 0.0 for s in counters) for i in range(60)]
    spans = shop.find(SignalKind.REQUEST_RATE, "inventory").values
    same = sum(1 for a, b in zip(total, spans, strict=True) if a == pytest.approx(b))
    assert same >= 55, list(zip(total, spans, strict=True))
    p95 = shop.find(
        SignalKind.METRIC,
        "payment",
        metric="http.server.request.duration",
        attributes="http.request.method=POST,http.response.status_code=200,http.route=/payments",
    )
    seconds = [v for v in p95.values if v is not None]
    assert seconds and all(0.0 < v <= 10.0 for v in seconds)


def test_every_series_has_a_query_that_reproduces_it(shop: Shop) -> None:
    report = shop.report
    assert set(report.queries) == {s.key for s in shop.series}
    assert report.kept == len(shop.series)
    assert (
        report.considered == report.kept + sum(report.dropped.values()) == report.kept + report.dropped_total
    )
    assert len({s.key for s in shop.series}) == len(shop.series)
    for kind, entity, labels in (
        (SignalKind.ERROR_RATIO, "checkout", {}),
        (SignalKind.LATENCY_P95, "frontend->checkout", {"edge": "frontend->checkout"}),
        (SignalKind.LOG_RATE, "checkout", {"severity": "ERROR"}),
        (SignalKind.METRIC, "checkout", {"metric": "process.cpu.utilization"}),
    ):
        series = shop.find(kind, entity, **labels)
        query = report.queries[series.key]
        assert not re.search(r"\{\w+:", query.text())
        for rows in (shop.store.rows(query.sql, query.params), shop.store.rows(query.text())):
            assert rows and all(row[0] == entity.split("->")[0] for row in rows)
    text = report.query_for(shop.find(SignalKind.REQUEST_RATE, "checkout").key)
    assert "GROUP BY" in text and "['checkout']" in text


# --- cardinality ------------------------------------------------------------------------------


def test_cardinality_limits_drop_what_they_should_and_the_report_says_so(shop: Shop) -> None:
    limits = SeriesLimits(
        max_operations_per_service=1,
        max_edges=3,
        max_log_severities_per_service=1,
        max_attribute_sets_per_metric=2,
        max_metrics_per_service=3,
        service_deny="shipping|redis",
        metric_allow=r"process\..*|http\..*",
    )
    series, report = fetch_series(shop.store, START, START + DURATION, STEP, limits)
    entities = {s.key.entity for s in series}
    assert not any("shipping" in e or "redis" in e for e in entities)
    assert report.dropped["service_denied"] > 0 and "shipping" in report.examples["service_denied"]
    for service in SERVICES:
        ops = {
            s.key.label_dict["operation"]
            for s in series
            if "operation" in s.key.label_dict and s.key.entity == service
        }
        assert len(ops) <= 1
    assert len({s.key.entity for s in series if "edge" in s.key.label_dict}) == 3
    assert report.dropped["edge_limit"] > 0 and report.dropped["operation_limit"] > 0
    metrics = [s for s in series if s.key.kind is SignalKind.METRIC]
    assert metrics and all(re.fullmatch(r"process\..*|http\..*", s.key.label_dict["metric"]) for s in metrics)
    assert "shop-node-1" not in entities and report.dropped["metric_not_allowed"] >= 4
    per_metric: dict[tuple[str, str], int] = {}
    for s in metrics:
        name = (s.key.entity, s.key.label_dict["metric"])
        per_metric[name] = per_metric.get(name, 0) + 1
    assert max(per_metric.values()) == 2 and report.dropped["attribute_set_limit"] > 0
    assert report.dropped["metric_limit"] > 0  # four metrics pass the regex, three are kept
    assert len({s.key.label_dict["severity"] for s in series if s.key.kind is SignalKind.LOG_RATE}) == 1
    assert report.kept == len(series)
    assert report.considered == shop.report.considered
    assert report.considered == report.kept + sum(report.dropped.values())


def test_public_surface() -> None:
    assert sorted(detect.series.__all__) == [
        "DEFAULT_LIMITS",
        "Grid",
        "SeriesLimits",
        "SeriesQuery",
        "SeriesReport",
        "fetch_series",
    ]


def test_bad_limits_and_ranges_are_rejected() -> None:
    with pytest.raises(ConfigError, match="service_deny"):
        SeriesLimits(service_deny="(unclosed")
    with pytest.raises(ConfigError, match="max_edges"):
        SeriesLimits(max_edges=-1)
    with pytest.raises(InputError):
        Grid.of(START.replace(tzinfo=None), START + DURATION, 60, 100)
    with pytest.raises(InputError):
        Grid.of(START, START, 60, 100)
    with pytest.raises(InputError):
        Grid.of(START, START + DURATION, 0, 100)
    with pytest.raises(InputError, match="max_buckets"):
        Grid.of(START, START + DURATION, 1, 100)
    grid = Grid.of(START + timedelta(seconds=30), START + timedelta(seconds=150), 60, 100)
    assert grid.start == int(START.timestamp()) and grid.buckets == 3


# --- hand-made data: counter resets, histograms, parameter binding ------------------------------

T0 = int(START.timestamp())
NS = 1_000_000_000
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def _attrs(values: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in values.items()]


def _resource(service: str | None, **extra: str) -> Resource:
    values = {"service.name": service} if service else {}
    return Resource(attributes=_attrs({**values, **extra}))


def _metrics(service: str, metrics: list[metrics_pb2.Metric]) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add(resource=_resource(service, **{"service.instance.id": "i-1"}))
    rm.scope_metrics.add().metrics.extend(metrics)
    return request


def _sum(
    name: str, points: Sequence[tuple[int, int, float]], *, monotonic: bool = True, delta: bool = False
) -> Any:
    """A Sum with points (start second, time second, value), attribute ``queue=a``."""
    temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA if delta else CUMULATIVE
    data = metrics_pb2.Sum(aggregation_temporality=temporality, is_monotonic=monotonic)
    for start, at, value in points:
        data.data_points.add(
            start_time_unix_nano=start * NS,
            time_unix_nano=at * NS,
            as_double=value,
            attributes=_attrs({"queue": "a"}),
        )
    return metrics_pb2.Metric(name=name, unit="{job}", sum=data)


def test_counter_resets_deltas_levels_and_histograms(store: ClickHouse) -> None:
    restart = T0 + 190
    jobs = _sum(
        "jobs.done",
        [
            (T0, T0 + 60, 10),
            (T0, T0 + 120, 30),
            (T0, T0 + 180, 60),
            (restart, T0 + 240, 5),
            (restart, T0 + 300, 25),
        ]
        + [(restart, T0 + 360, 3)],  # a drop without a new start time: a reset all the same
    )
    old = _sum("jobs.old", [(T0 - 86400, T0 + 60 * k, 1000 + 10 * k * k) for k in (1, 2, 3)])
    delta = _sum("jobs.delta", [(T0 + 60 * (k - 1), T0 + 60 * k, 6.0 * k) for k in (1, 2)], delta=True)
    level = _sum("queue.depth", [(T0, T0 + 60, 5), (T0, T0 + 120, 7)], monotonic=False)
    gauge = metrics_pb2.Metric(name="temp", unit="Cel", gauge=metrics_pb2.Gauge())
    gauge.gauge.data_points.add(time_unix_nano=(T0 + 30) * NS, as_double=1.0)
    gauge.gauge.data_points.add(time_unix_nano=(T0 + 60) * NS, as_double=3.0)
    histogram = metrics_pb2.Metric(
        name="latency", unit="s", histogram=metrics_pb2.Histogram(aggregation_temporality=CUMULATIVE)
    )
    for start, at, counts in (
        (T0, T0 + 60, [0, 10, 0, 0]),
        (T0, T0 + 120, [0, 10, 10, 0]),
        (restart, T0 + 240, [5, 0, 0, 0]),
        (restart, T0 + 300, [5, 0, 0, 10]),
    ):
        histogram.histogram.data_points.add(
            start_time_unix_nano=start * NS,
            time_unix_nano=at * NS,
            count=sum(counts),
            bucket_counts=counts,
            explicit_bounds=[1.0, 2.0, 5.0],
        )
    _write(store, [("metrics", _metrics("worker", [jobs, old, delta, level, gauge, histogram]))])
    end = datetime.fromtimestamp(T0 + 360, UTC)
    series, report = fetch_series(store, START, end, STEP)

    def values(metric: str) -> list[float | None]:
        return list(find(series, SignalKind.METRIC, "worker", metric=metric).values)

    assert values("jobs.done") == pytest.approx([10 / 60, 20 / 60, 30 / 60, 5 / 60, 20 / 60, 3 / 60])
    assert find(series, SignalKind.METRIC, "worker", metric="jobs.done").key.label_dict == {
        "metric": "jobs.done",
        "attributes": "queue=a",
        "unit": "{job}/s",
    }
    assert values("jobs.old") == pytest.approx([None, 30 / 60, 50 / 60, None, None, None])
    assert values("jobs.delta") == pytest.approx([0.1, 0.2, None, None, None, None])
    assert values("queue.depth") == pytest.approx([5, 7, None, None, None, None])
    depth = find(series, SignalKind.METRIC, "worker", metric="queue.depth").key
    assert depth.label_dict["unit"] == "{job}"  # a level, not a rate
    assert "average level" in report.queries[depth].meaning
    assert values("temp") == pytest.approx([2.0, None, None, None, None, None])
    assert values("latency") == pytest.approx([1.95, 4.85, None, 0.95, 5.0, None])
    # a grid that starts later reads the previous point from the look-back: no gap, no spike
    later, _ = fetch_series(store, datetime.fromtimestamp(T0 + 120, UTC), end, STEP)
    again = find(later, SignalKind.METRIC, "worker", metric="jobs.done").values
    assert again == pytest.approx([30 / 60, 5 / 60, 20 / 60, 3 / 60])
    assert (
        report.query_for(find(series, SignalKind.METRIC, "worker", metric="jobs.done").key).count(
            "lagInFrame"
        )
        >= 1
    )


def _span(
    trace: bytes,
    span: int,
    parent: int,
    name: str,
    kind: trace_pb2.Span.SpanKind.ValueType,
    at: int,
    ms: int,
    **attributes: str,
) -> trace_pb2.Span:
    error = attributes.pop("error", "")
    return trace_pb2.Span(
        trace_id=trace,
        span_id=span.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=name,
        kind=kind,
        start_time_unix_nano=at * NS,
        end_time_unix_nano=at * NS + ms * 1_000_000,
        attributes=_attrs(attributes),
        status=trace_pb2.Status(
            code=trace_pb2.Status.STATUS_CODE_ERROR if error else trace_pb2.Status.STATUS_CODE_UNSET
        ),
    )


def _traces(by_service: dict[str, list[trace_pb2.Span]]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for service, spans in by_service.items():
        request.resource_spans.add(resource=_resource(service)).scope_spans.add().spans.extend(spans)
    return request


HOSTILE = "svc'; DROP TABLE x --"


def test_hostile_service_names_are_data_and_rates_start_at_zero_only_once_seen(store: ClickHouse) -> None:
    server, client = trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT
    plain: list[trace_pb2.Span] = []
    hostile: list[trace_pb2.Span] = []
    for i in range(6):  # "plain" serves in bucket 0; each request calls HOSTILE, seen in buckets 2 and 3
        trace = uuid.uuid4().bytes
        at = T0 + 10 + i
        plain.append(_span(trace, 1, 0, "GET /x", server, at, 50))
        plain.append(_span(trace, 2, 1, "GET /y", client, at, 40))
        later = T0 + 120 + 20 * i
        hostile.append(_span(trace, 3, 2, "GET /y'--", server, later, 30, error="1" if i % 2 else ""))
        hostile.append(
            _span(
                trace,
                4,
                3,
                "SELECT",
                client,
                later,
                5,
                **{"db.system": "postgresql", "server.address": "pg-main.db.local"},
            )
        )
    _write(store, [("traces", _traces({"plain": plain, HOSTILE: hostile}))])
    logs = ExportLogsServiceRequest()
    scope = logs.resource_logs.add(resource=_resource(HOSTILE)).scope_logs.add()
    scope.log_records.add(
        time_unix_nano=(T0 + 130) * NS, severity_text="warn", body=AnyValue(string_value="x")
    )
    scope.log_records.add(time_unix_nano=(T0 + 135) * NS, severity_number=17, body=AnyValue(string_value="y"))
    _write(store, [("logs", logs)])
    traces_before = store.scalar(f"SELECT count() FROM {store.table(schema.TRACES)}")

    series, report = fetch_series(store, START, START + timedelta(minutes=5), STEP)
    assert store.scalar(f"SELECT count() FROM {store.table(schema.TRACES)}") == traces_before == 24
    assert find(series, SignalKind.REQUEST_RATE, "plain").values == pytest.approx([0.1, 0.0, 0.0, 0.0, 0.0])
    rate = find(series, SignalKind.REQUEST_RATE, HOSTILE)
    assert rate.values == pytest.approx([None, None, 3 / 60, 3 / 60, 0.0])
    prior = float(series_spans.ERROR_PRIOR)  # errors / (requests + prior)
    assert find(series, SignalKind.ERROR_RATIO, HOSTILE).values == pytest.approx(
        [None, None, 1 / (3 + prior), 2 / (3 + prior), None]
    )
    op = find(series, SignalKind.REQUEST_RATE, HOSTILE, operation="GET /y'--")
    assert op.values == rate.values
    edge = f"plain->{HOSTILE}"
    assert find(series, SignalKind.REQUEST_RATE, edge, edge=edge).values == pytest.approx(
        [0.0, 0.0, 0.05, 0.05, 0.0]
    )
    peer = f"{HOSTILE}->pg-main"
    assert find(series, SignalKind.REQUEST_RATE, peer, edge=peer).values == pytest.approx(
        [None, None, 0.05, 0.05, 0.0]
    )
    assert find(series, SignalKind.LOG_RATE, HOSTILE, severity="WARN").values == pytest.approx(
        [None, None, 1 / 60, 0.0, 0.0]
    )
    assert find(series, SignalKind.LOG_RATE, HOSTILE, severity="ERROR").values[2] == pytest.approx(1 / 60)

    query = report.queries[rate.key]
    assert HOSTILE not in query.sql and query.params["services"] == [HOSTILE]
    assert "'svc\\'; DROP TABLE x --'" in query.text()
    assert store.rows(query.text()) == store.rows(query.sql, query.params)

    denied, denied_report = fetch_series(
        store, START, START + timedelta(minutes=5), STEP, SeriesLimits(service_deny=re.escape(HOSTILE))
    )
    assert all(HOSTILE not in s.key.entity for s in denied)
    assert HOSTILE in denied_report.examples["service_denied"]
    assert denied_report.considered == report.considered
