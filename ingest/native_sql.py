"""SQL that flattens the staged OTLP requests into the exporter tables, inside ClickHouse.

For each signal there is a ``Null``-engine staging table whose columns mirror the request
(:mod:`ingest.otlp_view`). Materialized views on it ``ARRAY JOIN`` resources → scopes → items and
write rows to the exporter tables; a sibling view per item kind writes the items that fail
validation to ``warroom_dead_letters`` with the reason, so a bad item never blocks its neighbours
and is never silently dropped. Because the views hang off one insert, a retried insert with the
same ``insert_deduplication_token`` is dropped in every target table
(``deduplicate_blocks_in_dependent_materialized_views``).

Value rendering follows the exporter (see :mod:`ingest.otlp_values`, the Python reference that a
differential test compares against): attribute maps with sorted keys, values via ``AsString``,
ids as lowercase hex ('' when empty or all zero), doubles in the ES6 form.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.otlp_view import ANY_DEPTH, view
from warroom import schema as s
from warroom.clickhouse import ClickHouse, ident

TRUNCATION_SQL = "'…[truncated '"


def _float(x: str) -> str:
    return (
        f"multiIf(isNaN({x}), 'NaN', isInfinite({x}), if({x} > 0, '+Inf', '-Inf'), "
        f"replaceRegexpOne(toString({x}), 'e(\\\\d)', 'e+\\\\1'))"
    )


def _go_json_string(x: str) -> str:
    out = f"toJSONString({x})"
    for char, escaped in (("<", "\\\\u003c"), (">", "\\\\u003e"), ("&", "\\\\u0026")):
        out = f"replaceAll({out}, '{char}', '{escaped}')"
    return out


def _json_value(v: str, depth: int) -> str:
    """JSON text of an AnyValue at ``depth`` (inside an array or key-value list)."""
    nested = "'null'"
    array, kvlist = nested, nested
    if depth < ANY_DEPTH - 1:
        array = _json_array(f"{v}.array_value.values", depth + 1)
        kvlist = _json_object(f"{v}.kvlist_value.values", depth + 1)
    return (
        f"multiIf({v}.value = 'string_value', {_go_json_string(f'{v}.string_value')}, "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'double_value', if(isFinite({v}.double_value), {_float(f'{v}.double_value')}, 'null'), "
        f"{v}.value = 'bytes_value', concat('\"', base64Encode({v}.bytes_value), '\"'), "
        f"{v}.value = 'array_value', {array}, "
        f"{v}.value = 'kvlist_value', {kvlist}, 'null')"
    )


def _json_array(arr: str, depth: int) -> str:
    e = f"e{depth}"
    return f"concat('[', arrayStringConcat(arrayMap({e} -> {_json_value(e, depth)}, {arr}), ','), ']')"


def _json_object(kvs: str, depth: int) -> str:
    k = f"k{depth}"
    member = f"concat({_go_json_string(f'{k}.key')}, ':', {_json_value(f'{k}.value', depth)})"
    return (
        f"concat('{{', arrayStringConcat(arrayMap({k} -> {member}, "
        f"arraySort(x{depth} -> x{depth}.key, {kvs})), ','), '}}')"
    )


def any_string(v: str) -> str:
    """AnyValue → the exporter's ``AsString`` (top level)."""
    return (
        f"multiIf({v}.value = 'string_value', {v}.string_value, "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'double_value', {_float(f'{v}.double_value')}, "
        f"{v}.value = 'bytes_value', base64Encode({v}.bytes_value), "
        f"{v}.value = 'array_value', {_json_array(f'{v}.array_value.values', 1)}, "
        f"{v}.value = 'kvlist_value', {_json_object(f'{v}.kvlist_value.values', 1)}, '')"
    )


def truncated(text: str, limit: str) -> str:
    """Cut to ``limit`` characters with a marker saying how many bytes were removed."""
    head = f"substringUTF8({text}, 1, {limit})"
    return (
        f"if(length({text}) > {limit} AND lengthUTF8({text}) > {limit}, "
        f"concat({head}, {TRUNCATION_SQL}, toString(length({text}) - length({head})), ' bytes]'), {text})"
    )


def attributes(arr: str, limit: str = "wr_attr_limit") -> str:
    """Repeated KeyValue → Map with sorted keys and truncated values."""
    return (
        f"mapSort(mapFromArrays(arrayMap(a -> a.key, {arr}), "
        f"arrayMap(t -> {truncated('t', limit)}, arrayMap(a -> {any_string('a.value')}, {arr}))))"
    )


def hex_id(x: str) -> str:
    return f"if(replaceAll({x}, '\\0', '') = '', '', lower(hex({x})))"


def _time_reason(ts: str) -> str:
    return f"multiIf({ts} = 0, 'timestamp_missing', {ts} > wr_max_time, 'timestamp_in_future', '')"


def _ids_bad(*checks: tuple[str, int]) -> str:
    return " OR ".join(f"length({x}) NOT IN (0, {n})" for x, n in checks)


#: Placeholder for the staging table in FROM clauses (SQL text is full of braces, so no str.format).
_STAGING = "@STAGING@"
_WR = "wr_source, wr_topic, wr_partition, wr_offset, wr_max_time, wr_attr_limit, wr_body_limit"


@dataclass(frozen=True, slots=True)
class Flattening:
    """One item kind: how to reach it, validate it, and map it onto a target table."""

    name: str
    signal: str
    source: str  # FROM … ARRAY JOIN … (with the _STAGING and _RES placeholders)
    reason: str  # SQL expression: '' when the item is valid
    columns: tuple[tuple[str, str], ...]  # (target column, expression)
    item: str = ""  # SQL expression: the item as a JSON string, for dead letters
    target: str | None = None
    main: bool = True  # has a view into the target table
    dead: bool = True  # has a dead-letter view


def _item_json(fields: tuple[tuple[str, str], ...]) -> str:
    """A dead-lettered item as a JSON object of strings (ids in hex, numbers as text)."""
    pairs = ", ".join(f"'{name}', toString({expr})" for name, expr in fields)
    return f"toJSONString(map({pairs}))"


def _staging(signal: str) -> str:
    return f"warroom_in_{signal}"


def _traces() -> list[Flattening]:
    sp = "sp"
    source = (
        "FROM (SELECT ss.scope.name AS scope_name, ss.scope.version AS scope_version, ss.spans AS items, "
        f"res, {_WR} "
        f"FROM (SELECT rs.scope_spans AS scopes, {_res('rs')} AS res, {_WR} "
        f"FROM {_STAGING} ARRAY JOIN resource_spans AS rs) ARRAY JOIN scopes AS ss) ARRAY JOIN items AS sp"
    )
    time_reason = _time_reason(f"{sp}.start_time_unix_nano")
    ids = _ids_bad((f"{sp}.trace_id", 16), (f"{sp}.span_id", 8), (f"{sp}.parent_span_id", 8))
    reason = f"if({time_reason} != '', {time_reason}, if({ids}, 'invalid_id', ''))"
    columns = (
        ("Timestamp", f"fromUnixTimestamp64Nano(toInt64({sp}.start_time_unix_nano))"),
        ("TraceId", hex_id(f"{sp}.trace_id")),
        ("SpanId", hex_id(f"{sp}.span_id")),
        ("ParentSpanId", hex_id(f"{sp}.parent_span_id")),
        ("TraceState", f"{sp}.trace_state"),
        ("SpanName", f"{sp}.name"),
        ("SpanKind", f"['Unspecified','Internal','Server','Client','Producer','Consumer'][{sp}.kind + 1]"),
        ("ServiceName", "res['service.name']"),
        ("ResourceAttributes", "res"),
        ("ScopeName", "scope_name"),
        ("ScopeVersion", "scope_version"),
        ("SpanAttributes", attributes(f"{sp}.attributes")),
        (
            "Duration",
            f"if({sp}.end_time_unix_nano > {sp}.start_time_unix_nano, "
            f"{sp}.end_time_unix_nano - {sp}.start_time_unix_nano, 0)",
        ),
        ("StatusCode", f"['Unset','Ok','Error'][{sp}.status.code + 1]"),
        ("StatusMessage", f"{sp}.status.message"),
        (
            "Events.Timestamp",
            f"arrayMap(ev -> fromUnixTimestamp64Nano(toInt64(ev.time_unix_nano)), {sp}.events)",
        ),
        ("Events.Name", f"arrayMap(ev -> ev.name, {sp}.events)"),
        ("Events.Attributes", f"arrayMap(ev -> {attributes('ev.attributes')}, {sp}.events)"),
        ("Links.TraceId", f"arrayMap(ln -> {hex_id('ln.trace_id')}, {sp}.links)"),
        ("Links.SpanId", f"arrayMap(ln -> {hex_id('ln.span_id')}, {sp}.links)"),
        ("Links.TraceState", f"arrayMap(ln -> ln.trace_state, {sp}.links)"),
        ("Links.Attributes", f"arrayMap(ln -> {attributes('ln.attributes')}, {sp}.links)"),
    )
    item = _item_json(
        (
            ("service", "res['service.name']"),
            ("trace_id", f"lower(hex({sp}.trace_id))"),
            ("span_id", f"lower(hex({sp}.span_id))"),
            ("parent_span_id", f"lower(hex({sp}.parent_span_id))"),
            ("name", f"{sp}.name"),
            ("start_time_unix_nano", f"{sp}.start_time_unix_nano"),
            ("end_time_unix_nano", f"{sp}.end_time_unix_nano"),
        )
    )
    return [Flattening("spans", "traces", source, reason, columns, item, target=s.TRACES)]


def _logs() -> list[Flattening]:
    lr = "lr"
    source = (
        f"FROM (SELECT rl.scope_logs AS scopes, rl.schema_url AS res_schema, "
        f"{_res('rl')} AS res, {_WR} "
        f"FROM {_STAGING} ARRAY JOIN resource_logs AS rl) "
        "ARRAY JOIN scopes AS sl ARRAY JOIN sl.log_records AS lr"
    )
    ts = f"if({lr}.time_unix_nano > 0, {lr}.time_unix_nano, {lr}.observed_time_unix_nano)"
    time_reason = _time_reason(ts)
    ids = _ids_bad((f"{lr}.trace_id", 16), (f"{lr}.span_id", 8))
    reason = f"if({time_reason} != '', {time_reason}, if({ids}, 'invalid_id', ''))"
    columns = (
        ("Timestamp", f"fromUnixTimestamp64Nano(toInt64({ts}))"),
        ("TraceId", hex_id(f"{lr}.trace_id")),
        ("SpanId", hex_id(f"{lr}.span_id")),
        ("TraceFlags", f"toUInt8(bitAnd({lr}.flags, 255))"),
        ("SeverityText", f"{lr}.severity_text"),
        ("SeverityNumber", f"toUInt8(if({lr}.severity_number BETWEEN 0 AND 255, {lr}.severity_number, 0))"),
        ("ServiceName", "res['service.name']"),
        ("Body", truncated(any_string(f"{lr}.body"), "wr_body_limit")),
        ("ResourceSchemaUrl", "res_schema"),
        ("ResourceAttributes", "res"),
        ("ScopeSchemaUrl", "sl.schema_url"),
        ("ScopeName", "sl.scope.name"),
        ("ScopeVersion", "sl.scope.version"),
        ("ScopeAttributes", attributes("sl.scope.attributes")),
        ("LogAttributes", attributes(f"{lr}.attributes")),
        ("EventName", f"{lr}.event_name"),
    )
    item = _item_json(
        (
            ("service", "res['service.name']"),
            ("time_unix_nano", f"{lr}.time_unix_nano"),
            ("observed_time_unix_nano", f"{lr}.observed_time_unix_nano"),
            ("severity_text", f"{lr}.severity_text"),
            ("body", f"left({lr}.body.string_value, 1000)"),
            ("trace_id", f"lower(hex({lr}.trace_id))"),
            ("span_id", f"lower(hex({lr}.span_id))"),
        )
    )
    return [Flattening("log_records", "logs", source, reason, columns, item, target=s.LOGS)]


def _seconds(ns: str) -> str:
    return f"toDateTime(intDiv({ns}, 1000000000))"


def _number(x: str) -> str:
    return f"if({x}.value = 'as_int', toFloat64({x}.as_int), {x}.as_double)"


def _exemplars(dp: str) -> tuple[tuple[str, str], ...]:
    return (
        (
            "Exemplars.FilteredAttributes",
            f"arrayMap(ex -> {attributes('ex.filtered_attributes')}, {dp}.exemplars)",
        ),
        ("Exemplars.TimeUnix", f"arrayMap(ex -> {_seconds('ex.time_unix_nano')}, {dp}.exemplars)"),
        ("Exemplars.Value", f"arrayMap(ex -> {_number('ex')}, {dp}.exemplars)"),
        ("Exemplars.SpanId", f"arrayMap(ex -> {hex_id('ex.span_id')}, {dp}.exemplars)"),
        ("Exemplars.TraceId", f"arrayMap(ex -> {hex_id('ex.trace_id')}, {dp}.exemplars)"),
    )


#: The common shape every metric point is cast to, so one view flattens all five kinds.
def _point_elements() -> tuple[tuple[str, str], ...]:
    types = view("metrics").types
    return (
        ("kind", "String"),
        ("attributes", f"Array({types['KeyValue0']})"),
        ("start", "UInt64"),
        ("time", "UInt64"),
        ("value", "Float64"),
        ("flags", "UInt32"),
        ("exemplars", f"Array({types['Exemplar']})"),
        ("count", "UInt64"),
        ("sum", "Float64"),
        ("bucket_counts", "Array(UInt64)"),
        ("explicit_bounds", "Array(Float64)"),
        ("min", "Float64"),
        ("max", "Float64"),
        ("scale", "Int32"),
        ("zero_count", "UInt64"),
        ("positive_offset", "Int32"),
        ("positive_counts", "Array(UInt64)"),
        ("negative_offset", "Int32"),
        ("negative_counts", "Array(UInt64)"),
        ("quantiles", "Array(Float64)"),
        ("quantile_values", "Array(Float64)"),
        ("temporality", "Int32"),
        ("monotonic", "Bool"),
    )


def _points(kind: str) -> str:
    """``m.<kind>.data_points`` mapped onto the common point tuple (absent fields get defaults)."""
    p = "p"
    common = {
        "kind": f"'{kind}'",
        "attributes": f"{p}.attributes",
        "start": f"{p}.start_time_unix_nano",
        "time": f"{p}.time_unix_nano",
        "flags": f"{p}.flags",
    }
    per_kind = {
        "gauge": {"value": _number(p), "exemplars": f"{p}.exemplars"},
        "sum": {
            "value": _number(p),
            "exemplars": f"{p}.exemplars",
            "temporality": "m.sum.aggregation_temporality",
            "monotonic": "m.sum.is_monotonic",
        },
        "histogram": {
            "exemplars": f"{p}.exemplars",
            "count": f"{p}.count",
            "sum": f"{p}.sum",
            "bucket_counts": f"{p}.bucket_counts",
            "explicit_bounds": f"{p}.explicit_bounds",
            "min": f"{p}.min",
            "max": f"{p}.max",
            "temporality": "m.histogram.aggregation_temporality",
        },
        "exponential_histogram": {
            "exemplars": f"{p}.exemplars",
            "count": f"{p}.count",
            "sum": f"{p}.sum",
            "min": f"{p}.min",
            "max": f"{p}.max",
            "scale": f"{p}.scale",
            "zero_count": f"{p}.zero_count",
            "positive_offset": f"{p}.positive.offset",
            "positive_counts": f"{p}.positive.bucket_counts",
            "negative_offset": f"{p}.negative.offset",
            "negative_counts": f"{p}.negative.bucket_counts",
            "temporality": "m.exponential_histogram.aggregation_temporality",
        },
        "summary": {
            "count": f"{p}.count",
            "sum": f"{p}.sum",
            "quantiles": f"arrayMap(q -> q.quantile, {p}.quantile_values)",
            "quantile_values": f"arrayMap(q -> q.value, {p}.quantile_values)",
        },
    }[kind]
    fields = {**common, **per_kind}
    elements = _point_elements()
    values = ", ".join(
        fields.get(name, f"defaultValueOfTypeName({s.sql_string(ch)})") for name, ch in elements
    )
    tuple_type = "Tuple(" + ", ".join(f"{name} {ch}" for name, ch in elements) + ")"
    return f"arrayMap(p -> CAST(tuple({values}), {s.sql_string(tuple_type)}), m.{kind}.data_points)"


_METRIC_KINDS = (
    ("gauge", s.GAUGE),
    ("sum", s.SUM),
    ("histogram", s.HISTOGRAM),
    ("exponential_histogram", s.EXP_HISTOGRAM),
    ("summary", s.SUMMARY),
)

#: Null-engine table between the metrics staging view and the five metric tables: one heavy view
#: flattens every point kind into it, five trivial views route rows by ``Kind``.
POINTS = "warroom_points"

_POINT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Kind", "kind"),
    ("Value", "value"),
    ("Flags", "flags"),
    ("Count", "count"),
    ("Sum", "sum"),
    ("BucketCounts", "bucket_counts"),
    ("ExplicitBounds", "explicit_bounds"),
    ("Min", "min"),
    ("Max", "max"),
    ("Scale", "scale"),
    ("ZeroCount", "zero_count"),
    ("PositiveOffset", "positive_offset"),
    ("PositiveBucketCounts", "positive_counts"),
    ("NegativeOffset", "negative_offset"),
    ("NegativeBucketCounts", "negative_counts"),
    ("ValueAtQuantiles.Quantile", "quantiles"),
    ("ValueAtQuantiles.Value", "quantile_values"),
    ("AggregationTemporality", "temporality"),
    ("IsMonotonic", "monotonic"),
)


def _metrics() -> list[Flattening]:
    dp = "dp"
    head = (
        ("ResourceAttributes", "res"),
        ("ResourceSchemaUrl", "res_schema"),
        ("ScopeName", "sm.scope.name"),
        ("ScopeVersion", "sm.scope.version"),
        ("ScopeAttributes", attributes("sm.scope.attributes")),
        ("ScopeDroppedAttrCount", "sm.scope.dropped_attributes_count"),
        ("ScopeSchemaUrl", "sm.schema_url"),
        ("ServiceName", "res['service.name']"),
        ("MetricName", "m.name"),
        ("MetricDescription", "m.description"),
        ("MetricUnit", "m.unit"),
        ("Attributes", attributes(f"{dp}.attributes")),
        ("StartTimeUnix", _seconds(f"{dp}.start")),
        ("TimeUnix", _seconds(f"{dp}.time")),
    )
    columns = head + tuple((col, f"{dp}.{el}") for col, el in _POINT_COLUMNS) + _exemplars(dp)
    all_points = ", ".join(_points(kind) for kind, _ in _METRIC_KINDS)
    source = (
        "FROM (SELECT rm.scope_metrics AS scopes, rm.schema_url AS res_schema, "
        f"{_res('rm')} AS res, {_WR} FROM {_STAGING} ARRAY JOIN resource_metrics AS rm) "
        f"ARRAY JOIN scopes AS sm ARRAY JOIN sm.metrics AS m ARRAY JOIN arrayConcat({all_points}) AS {dp}"
    )
    item = _item_json(
        (
            ("service", "res['service.name']"),
            ("metric", "m.name"),
            ("kind", f"{dp}.kind"),
            ("time_unix_nano", f"{dp}.time"),
        )
    )
    reason = _time_reason(f"{dp}.time")
    return [Flattening("points", "metrics", source, reason, columns, item, target=POINTS)]


def _points_table(store: ClickHouse, opts: s.SchemaOptions) -> str:
    """The intermediate table's DDL: every metric table's columns plus ``Kind``.

    Types come from the metric tables' declared DDL (not the server), so the statement can be
    printed before the tables exist.
    """
    types: dict[str, str] = {"Kind": "LowCardinality(String)"}
    for _, table in _METRIC_KINDS:
        for name, ch_type in s.declared_types(table).items():
            if name in s.COLUMNS[table]:
                types.setdefault(name, ch_type)
    columns = ", ".join(f"{ident(name)} {ch_type}" for name, ch_type in types.items())
    return f"CREATE TABLE IF NOT EXISTS {store.table(POINTS)}{s.on_cluster(opts)} ({columns}) ENGINE = Null"


def _route_points(store: ClickHouse, opts: s.SchemaOptions) -> None:
    for kind, table in _METRIC_KINDS:
        columns = ", ".join(ident(c) for c in s.COLUMNS[table])
        route = store.table("warroom_route_" + kind)
        store.command(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {route}{s.on_cluster(opts)} TO {store.table(table)} "
            f"AS SELECT {columns} FROM {store.table(POINTS)} WHERE Kind = '{kind}'"
        )


def flattenings() -> list[Flattening]:
    return _traces() + _logs() + _metrics()


def _res(prefix: str) -> str:
    return f"@RES:{prefix}@"


def _mv_sql(store: ClickHouse, opts: s.SchemaOptions, f: Flattening, dead: bool) -> str:
    source = f.source.replace(_STAGING, store.table(_staging(f.signal)))
    for prefix in ("rs", "rl", "rm"):
        # Dead-letter views only need the service name; the full map is costly to plan.
        res = (
            f"map('service.name', arrayFirst(a -> a.key = 'service.name', {prefix}.resource.attributes)"
            ".value.string_value)"
            if dead
            else attributes(f"{prefix}.resource.attributes")
        )
        source = source.replace(_res(prefix), res)
    if dead:
        select = (
            f"now64(3) AS Time, wr_source AS Source, wr_topic AS Topic, wr_partition AS Partition, "
            f"wr_offset AS Offset, '{f.signal}' AS Signal, ({f.reason}) AS Reason, "
            f"concat('{f.name} item rejected: ', Reason) AS Error, {f.item} AS Raw"
        )
        where = f"({f.reason}) != ''"
        target = s.DEAD_LETTERS
        name = f"warroom_in_{f.name}_dead"
    else:
        select = ", ".join(f"{expr} AS {ident(col)}" for col, expr in f.columns)
        where = f"({f.reason}) = ''"
        assert f.target is not None
        target = f.target
        name = f"warroom_in_{f.name}"
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {store.table(name)}{s.on_cluster(opts)} "
        f"TO {store.table(target)} AS SELECT {select} {source} WHERE {where}"
    )


def create_staging(store: ClickHouse, opts: s.SchemaOptions) -> None:
    """Migration: the staging tables and their flattening views.

    On a cluster they exist on every node (any node may take an insert) and the views write to the
    Distributed tables, which route each row to its shard by the table's sharding key.
    """
    for signal in ("traces", "logs", "metrics"):
        columns = ", ".join(f"{ident(name)} {ch_type}" for name, ch_type in view(signal).columns)
        store.command(
            f"CREATE TABLE IF NOT EXISTS {store.table(_staging(signal))}{s.on_cluster(opts)} ({columns}) "
            "ENGINE = Null"
        )
    store.command(_points_table(store, opts))
    _route_points(store, opts)
    for f in flattenings():
        if f.main:
            store.command(_mv_sql(store, opts, f, dead=False))
        if f.dead:
            store.command(_mv_sql(store, opts, f, dead=True))


MIGRATION = s.Migration(100, "ingest staging tables and flattening views", create_staging)


def staging_table(signal: str) -> str:
    return _staging(signal)
