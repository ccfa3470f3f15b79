"""The in-ClickHouse flattening must store exactly what the Python reference decoder says.

Every attribute value type of OTLP (string, bool, int, double incl. exponents and specials, bytes,
arrays, key-value lists, nested values, empty), ids, events, links, every metric kind and log
bodies go through both paths; the rows must be equal column by column.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from ingest.otlp_parse import Limits
from ingest.otlp_view import ANY_DEPTH
from ingest.reference_decode import Decoder, new_tables
from ingest.writer import NativeWriter, Record
from warroom import schema as s

NOW = time.time_ns()
LIMITS = Limits(max_attr_value_chars=64, max_body_chars=80, max_future_skew_ns=3600 * 10**9)


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, AnyValue):
        return value
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[kv(k, v) for k, v in value.items()]))
    return AnyValue()


ATTRS = [
    kv("s", "plain"),
    kv("unicode", 'Grüße, 世界 <&> "q" \\ /x'),
    kv("empty", ""),
    kv("i0", 0),
    kv("neg", -42),
    kv("big", 2**62),
    kv("t", True),
    kv("f", False),
    kv("d1", 1.0),
    kv("dfrac", 0.1),
    kv("dexp", 1e21),
    kv("dsmall", 1.5e-7),
    kv("dneg", -2.5e-300),
    kv("nan", math.nan),
    kv("inf", math.inf),
    kv("ninf", -math.inf),
    kv("dzero", 0.0),
    kv("bytes", b"\x00\x01\xfe"),
    kv("arr", ["a", 1, 2.5, True, b"z"]),
    kv("kv", {"z": 1, "a": "x<y", "m": [1, 2]}),
    kv("deep", [[1, [2]], {"k": {"j": 1}}]),
    kv("unset", AnyValue()),
    kv("long", "x" * 100),
    kv("longu", "é" * 70),
    kv("zz", "last"),
]


def traces_request() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
    rs.resource.attributes.extend(
        [kv("service.name", "checkout"), kv("host.name", "node-1"), kv("k8s.pod.name", "p")]
    )
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "io.test", "1.2"
    for i in range(3):
        sp = ss.spans.add(
            trace_id=bytes([i + 1]) * 16,
            span_id=bytes([i + 2]) * 8,
            name=f"op{i}",
            kind=i + 1,
            start_time_unix_nano=NOW - 10**9 + i,
            end_time_unix_nano=NOW - (i * 10**6),
            trace_state="k=v",
        )
        if i:
            sp.parent_span_id = bytes([9]) * 8
        sp.attributes.extend(ATTRS)
        sp.status.code, sp.status.message = i % 3, "boom" if i == 2 else ""
        ev = sp.events.add(time_unix_nano=NOW - 5, name="exception")
        ev.attributes.extend([kv("exception.type", "ValueError"), kv("n", 3)])
        sp.links.add(trace_id=b"\x07" * 16, span_id=b"\x08" * 8, trace_state="a=b").attributes.extend(
            [kv("l", 1)]
        )
    # end before start, zero trace id (stored as '')
    ss.spans.add(
        trace_id=b"\x00" * 16,
        span_id=b"\x05" * 8,
        name="odd",
        start_time_unix_nano=NOW - 100,
        end_time_unix_nano=NOW - 200,
    )
    rs2 = req.resource_spans.add()
    rs2.resource.attributes.extend([kv("service.name", "payment")])
    rs2.scope_spans.add().spans.add(
        trace_id=b"\x0a" * 16,
        span_id=b"\x0b" * 8,
        name="pay",
        start_time_unix_nano=NOW - 50,
        end_time_unix_nano=NOW,
    )
    return req


def logs_request() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add(schema_url="s1")
    rl.resource.attributes.extend([kv("service.name", "cart")])
    sl = rl.scope_logs.add(schema_url="s2")
    sl.scope.name = "logger"
    sl.scope.attributes.extend([kv("scope.attr", 1)])
    bodies = [
        "payment 42 authorised",
        "y" * 200,
        {"msg": "structured", "n": 1},
        3.25,
        b"\x01\x02",
        ["a", "b"],
        None,
    ]
    for i, body in enumerate(bodies):
        rec = sl.log_records.add(
            time_unix_nano=0 if i == 1 else NOW - i,
            observed_time_unix_nano=NOW - 7,
            severity_number=9 + i,
            severity_text="INFO",
            flags=1,
            trace_id=b"\x03" * 16 if i % 2 else b"",
            span_id=b"\x04" * 8 if i % 2 else b"",
            event_name="ev" if i == 3 else "",
        )
        if body is not None:
            rec.body.CopyFrom(any_value(body))
        rec.attributes.extend(ATTRS[:6])
    return req


def metrics_request() -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add(schema_url="m")
    rm.resource.attributes.extend([kv("service.name", "svc")])
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version, sm.scope.dropped_attributes_count = "meter", "0.1", 2
    t = NOW - 3 * 10**9
    g = sm.metrics.add(name="cpu", unit="1", description="cpu use")
    g.gauge.data_points.add(
        time_unix_nano=t, start_time_unix_nano=t - 10**9, as_double=0.75
    ).attributes.extend([kv("core", 1)])
    g.gauge.data_points.add(time_unix_nano=t, as_int=7)
    dp = g.gauge.data_points[0]
    dp.exemplars.add(
        time_unix_nano=t, as_double=0.9, span_id=b"\x01" * 8, trace_id=b"\x02" * 16
    ).filtered_attributes.extend([kv("e", "x")])
    m = sm.metrics.add(name="requests")
    m.sum.aggregation_temporality, m.sum.is_monotonic = 2, True
    m.sum.data_points.add(time_unix_nano=t, start_time_unix_nano=t - 60 * 10**9, as_int=1234, flags=1)
    h = sm.metrics.add(name="latency", unit="s")
    h.histogram.aggregation_temporality = 2
    h.histogram.data_points.add(
        time_unix_nano=t,
        count=6,
        sum=1.5,
        bucket_counts=[1, 2, 3],
        explicit_bounds=[0.1, 0.5],
        min=0.01,
        max=0.9,
    )
    e = sm.metrics.add(name="exp")
    e.exponential_histogram.aggregation_temporality = 1
    edp = e.exponential_histogram.data_points.add(time_unix_nano=t, count=5, sum=2.0, scale=-2, zero_count=1)
    edp.positive.offset, edp.negative.offset = -3, 2
    edp.positive.bucket_counts.extend([1, 2])
    edp.negative.bucket_counts.extend([1])
    q = sm.metrics.add(name="summary")
    q.summary.data_points.add(time_unix_nano=t, count=10, sum=5.5).quantile_values.add(
        quantile=0.99, value=2.0
    )
    return req


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if hasattr(value, "timestamp") and not isinstance(value, int | float):
        return round(value.timestamp())
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _stored(store: Any, table: str, columns: tuple[str, ...], order: str) -> list[list[Any]]:
    cols = ", ".join(f"`{c}`" for c in columns)
    # DateTime64 columns come back as datetimes; compare them as integer nanoseconds.
    exprs = []
    for c in columns:
        if c in ("Timestamp",):
            exprs.append(f"toUnixTimestamp64Nano(`{c}`)")
        elif c == "Events.Timestamp":
            exprs.append("arrayMap(x -> toUnixTimestamp64Nano(x), `Events.Timestamp`)")
        elif c in ("TimeUnix", "StartTimeUnix"):
            exprs.append(f"toUnixTimestamp(`{c}`)")
        elif c == "Exemplars.TimeUnix":
            exprs.append("arrayMap(x -> toUnixTimestamp(x), `Exemplars.TimeUnix`)")
        else:
            exprs.append(f"`{c}`")
    del cols
    rows = store.rows(f"SELECT {', '.join(exprs)} FROM {store.table(table)} ORDER BY {order}")
    return [[_normalise(v) for v in r] for r in rows]


def _reference(signal: str, request: Any, table: str, order_index: list[int]) -> list[list[Any]]:
    tables = new_tables(signal)
    Decoder(LIMITS, lambda: NOW, max_depth=ANY_DEPTH).flatten(signal, request, tables)
    cols = tables[table]
    rows = [list(r) for r in zip(*cols.data, strict=True)]
    converted = []
    for r in rows:
        out = []
        for name, v in zip(cols.names, r, strict=True):
            if name in ("TimeUnix", "StartTimeUnix") or name == "Exemplars.TimeUnix":
                out.append(v)
            elif name == "IsMonotonic":
                out.append(bool(v))
            else:
                out.append(_normalise(v))
        converted.append(out)
    return sorted(converted, key=lambda r: tuple(str(r[i]) for i in order_index))


@pytest.mark.parametrize(
    ("signal", "build", "tables"),
    [
        ("traces", traces_request, [(s.TRACES, "SpanName, SpanId", [5, 2])]),
        ("logs", logs_request, [(s.LOGS, "SeverityNumber", [5])]),
        (
            "metrics",
            metrics_request,
            [
                (s.GAUGE, "Value", [14]),
                (s.SUM, "Value", [14]),
                (s.HISTOGRAM, "Count", [14]),
                (s.EXP_HISTOGRAM, "Count", [14]),
                (s.SUMMARY, "Count", [14]),
            ],
        ),
    ],
)
def test_clickhouse_flattening_equals_python_reference(
    store: Any, signal: str, build: Any, tables: Any
) -> None:
    request = build()
    writer = NativeWriter(store, LIMITS, lambda: NOW)
    record = Record(signal, "otlp_proto", request.SerializeToString(), "test", "t", 0, 1)
    result = writer.write(signal, [writer.prepare(record)], f"differential-{signal}-{time.time_ns()}")
    assert result.dead_records == 0
    for table, order, order_index in tables:
        stored = _stored(store, table, s.COLUMNS[table], order)
        expected = _reference(signal, request, table, order_index)
        assert len(stored) == len(expected) > 0, table
        stored_sorted = sorted(stored, key=lambda r: tuple(str(r[i]) for i in order_index))
        for got, want in zip(stored_sorted, expected, strict=True):
            for name, g, w in zip(s.COLUMNS[table], got, want, strict=True):
                assert g == w, f"{table}.{name}: clickhouse={g!r} python={w!r}"


def test_values_nested_deeper_than_the_view_render_as_null(store: Any) -> None:
    """The documented limit: an array or map inside an array or map is stored as JSON null."""
    request = traces_request()
    writer = NativeWriter(store, LIMITS, lambda: NOW)
    record = Record("traces", "otlp_proto", request.SerializeToString(), "test", "t", 0, 1)
    writer.write("traces", [writer.prepare(record)], f"deep-{time.time_ns()}")
    rows = store.rows(
        f"SELECT SpanAttributes['deep'], SpanAttributes['kv'] FROM {store.table(s.TRACES)} "
        "WHERE SpanName = 'op0'"
    )
    assert rows == [("[null,null]", '{"a":"x\\u003cy","m":null,"z":1}')]
