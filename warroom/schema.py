"""Telemetry schema: the OpenTelemetry Collector ClickHouse exporter's tables, created by migrations.

The DDL below is the exporter's current layout (contrib ``exporter/clickhouseexporter``
``internal/sqltemplates``; see ``shared/reference/otel-kafka-clickhouse.md`` §2) with three
deliberate additions that do not change any column, so Grafana's ClickHouse data source and any
tool written for the exporter read these tables unchanged:

* ``non_replicated_deduplication_window`` on every MergeTree, so an insert retried with the same
  ``insert_deduplication_token`` is dropped instead of duplicated (Kafka is at-least-once);
* the skip indexes are the exporter's ``bloom_filter``/``tokenbf_v1`` variant, which every
  ClickHouse version supports (the exporter picks ``text`` indexes only on servers ≥ 26.2);
* the exponential histogram table is named ``otel_metrics_exponential_histogram`` (ClickStack's
  name; the exporter's default is ``otel_metrics_exp_histogram``).

warroom's own tables (dead letters, the ingest ledger, the schema version) live beside them with a
``warroom_`` prefix. Migrations are append-only and idempotent: each is recorded in
``warroom_schema_migrations`` and ``CREATE … IF NOT EXISTS`` makes a re-run harmless.

On a cluster (:attr:`SchemaOptions.cluster`) every table is created through :func:`table_ddl`: a
Replicated ``<table>_local`` on every node behind a Distributed table with the original name, all
``ON CLUSTER``, so no reader or writer changes (README "ClickHouse cluster"). Stages create their
tables the same way, with a :class:`TableSpec`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from warroom.clickhouse import ClickHouse, ident
from warroom.errors import ConfigError

TRACES = "otel_traces"
TRACE_ID_TS = "otel_traces_trace_id_ts"
LOGS = "otel_logs"
GAUGE = "otel_metrics_gauge"
SUM = "otel_metrics_sum"
HISTOGRAM = "otel_metrics_histogram"
EXP_HISTOGRAM = "otel_metrics_exponential_histogram"
SUMMARY = "otel_metrics_summary"
DEAD_LETTERS = "warroom_dead_letters"
LEDGER = "warroom_ingest_ledger"
MIGRATIONS = "warroom_schema_migrations"

TELEMETRY_TABLES = (TRACES, LOGS, GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM, SUMMARY)
METRIC_TABLES = (GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM, SUMMARY)

#: Insert column lists, exactly the exporter's ``internal/sqltemplates/*_insert.sql`` order.
TRACE_COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)
LOG_COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "TraceFlags",
    "SeverityText",
    "SeverityNumber",
    "ServiceName",
    "Body",
    "ResourceSchemaUrl",
    "ResourceAttributes",
    "ScopeSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "LogAttributes",
    "EventName",
)
_METRIC_HEAD = (
    "ResourceAttributes",
    "ResourceSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "ScopeDroppedAttrCount",
    "ScopeSchemaUrl",
    "ServiceName",
    "MetricName",
    "MetricDescription",
    "MetricUnit",
    "Attributes",
    "StartTimeUnix",
    "TimeUnix",
)
_EXEMPLARS = (
    "Exemplars.FilteredAttributes",
    "Exemplars.TimeUnix",
    "Exemplars.Value",
    "Exemplars.SpanId",
    "Exemplars.TraceId",
)
GAUGE_COLUMNS = _METRIC_HEAD + ("Value", "Flags") + _EXEMPLARS
SUM_COLUMNS = _METRIC_HEAD + ("Value", "Flags") + _EXEMPLARS + ("AggregationTemporality", "IsMonotonic")
HISTOGRAM_COLUMNS = (
    _METRIC_HEAD
    + ("Count", "Sum", "BucketCounts", "ExplicitBounds")
    + _EXEMPLARS
    + ("Flags", "Min", "Max", "AggregationTemporality")
)
EXP_HISTOGRAM_COLUMNS = (
    _METRIC_HEAD
    + ("Count", "Sum", "Scale", "ZeroCount", "PositiveOffset", "PositiveBucketCounts")
    + ("NegativeOffset", "NegativeBucketCounts")
    + _EXEMPLARS
    + ("Flags", "Min", "Max", "AggregationTemporality")
)
SUMMARY_COLUMNS = _METRIC_HEAD + (
    "Count",
    "Sum",
    "ValueAtQuantiles.Quantile",
    "ValueAtQuantiles.Value",
    "Flags",
)
DEAD_LETTER_COLUMNS = ("Time", "Source", "Topic", "Partition", "Offset", "Signal", "Reason", "Error", "Raw")

COLUMNS: dict[str, tuple[str, ...]] = {
    TRACES: TRACE_COLUMNS,
    LOGS: LOG_COLUMNS,
    GAUGE: GAUGE_COLUMNS,
    SUM: SUM_COLUMNS,
    HISTOGRAM: HISTOGRAM_COLUMNS,
    EXP_HISTOGRAM: EXP_HISTOGRAM_COLUMNS,
    SUMMARY: SUMMARY_COLUMNS,
    DEAD_LETTERS: DEAD_LETTER_COLUMNS,
}

_MAP = "Map(LowCardinality(String), String)"

_TRACES_DDL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.{{table}} {{on_cluster}} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_MAP} CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {_MAP} CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes {_MAP}
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes {_MAP}
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = {{engine}}
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
{{ttl}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{{dedup}}
"""

_TRACE_ID_TS_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} {on_cluster} (
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {engine}
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start)
{ttl}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{dedup}
"""

_TRACE_ID_TS_MV_DDL = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{mv} {on_cluster}
TO {db}.{table}
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {db}.{source}
WHERE TraceId != ''
GROUP BY TraceId
"""

_LOGS_DDL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.{{table}} {{on_cluster}} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_MAP} CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes {_MAP} CODEC(ZSTD(1)),
    LogAttributes {_MAP} CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    `__otel_materialized_k8s.cluster.name` LowCardinality(String)
        MATERIALIZED ResourceAttributes['k8s.cluster.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.container.name` LowCardinality(String)
        MATERIALIZED ResourceAttributes['k8s.container.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.deployment.name` LowCardinality(String)
        MATERIALIZED ResourceAttributes['k8s.deployment.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.namespace.name` LowCardinality(String)
        MATERIALIZED ResourceAttributes['k8s.namespace.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.node.name` LowCardinality(String)
        MATERIALIZED ResourceAttributes['k8s.node.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.pod.name` LowCardinality(String)
        MATERIALIZED ResourceAttributes['k8s.pod.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.pod.uid` LowCardinality(String)
        MATERIALIZED ResourceAttributes['k8s.pod.uid'] CODEC(ZSTD(1)),
    `__otel_materialized_deployment.environment.name` LowCardinality(String)
        MATERIALIZED ResourceAttributes['deployment.environment.name'] CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_lower_body lower(Body) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {{engine}}
PARTITION BY toDate(Timestamp)
ORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)
{{ttl}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{{dedup}}
"""

_METRIC_HEAD_DDL = f"""
    ResourceAttributes {_MAP} CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes {_MAP} CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName LowCardinality(String) CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes {_MAP} CODEC(ZSTD(1)),
    StartTimeUnix DateTime CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime CODEC(Delta, ZSTD(1)),"""

_EXEMPLARS_DDL = f"""
    Exemplars Nested (
        FilteredAttributes {_MAP},
        TimeUnix DateTime,
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),"""

_METRIC_TAIL_DDL = """
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_time_minmax TimeUnix TYPE minmax GRANULARITY 1
) ENGINE = {engine}
{ttl}
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{dedup}
"""


def _metric_ddl(body: str) -> str:
    head = "\nCREATE TABLE IF NOT EXISTS {db}.{table} {on_cluster} (" + _METRIC_HEAD_DDL
    return head + body + _METRIC_TAIL_DDL


_GAUGE_DDL = _metric_ddl(
    """
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),"""
    + _EXEMPLARS_DDL
)
_SUM_DDL = _metric_ddl(
    """
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),"""
    + _EXEMPLARS_DDL
    + """
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),"""
)
_HISTOGRAM_DDL = _metric_ddl(
    """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),"""
    + _EXEMPLARS_DDL
    + """
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),"""
)
_EXP_HISTOGRAM_DDL = _metric_ddl(
    """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),"""
    + _EXEMPLARS_DDL
    + """
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),"""
)
_SUMMARY_DDL = _metric_ddl(
    """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    ValueAtQuantiles Nested(
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),"""
)

_DEAD_LETTERS_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} {on_cluster} (
    Time DateTime64(3) CODEC(Delta, ZSTD(1)),
    Source LowCardinality(String),
    Topic LowCardinality(String),
    Partition Int32,
    Offset Int64,
    Signal LowCardinality(String),
    Reason LowCardinality(String),
    Error String CODEC(ZSTD(1)),
    Raw String CODEC(ZSTD(3))
) ENGINE = {engine}
PARTITION BY toYYYYMM(Time)
ORDER BY (Topic, Partition, Offset, Time)
SETTINGS index_granularity = 8192{dedup}
"""

#: One row per planned insert of a partition's offset range, written *before* the data insert.
#: After a crash the worker replays exactly these ranges with the same dedup tokens, so rows that
#: reached ClickHouse but whose offsets were never committed are dropped by deduplication.
_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} {on_cluster} (
    Topic String,
    Partition Int32,
    FirstOffset Int64,
    LastOffset Int64,
    Records UInt32,
    Worker String,
    Time DateTime64(3)
) ENGINE = {engine}
ORDER BY (Topic, Partition, FirstOffset)
TTL toDateTime(Time) + INTERVAL 30 DAY
SETTINGS index_granularity = 8192
"""

_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} {on_cluster} (
    Version UInt32,
    Name String,
    AppliedAt DateTime64(3)
) ENGINE = {engine}
ORDER BY Version
"""


# --- layout: single node, or Replicated local tables behind Distributed tables on a cluster ----------

#: On a cluster, table ``T`` is a Distributed table over the Replicated table ``T`` + this suffix on
#: every node, so every reader and writer keeps using ``T``.
LOCAL_SUFFIX = "_local"

#: Keeper path of a local table's replicas, ``{shard}``/``{database}`` being the server's macros (the
#: ClickHouse convention); the local table's name is appended.
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/"
REPLICA_NAME = "{replica}"

#: A constant sharding key sends every row to the first shard: for small state tables that are read
#: whole or with ``FINAL`` (migrations, ledger, alerts, topology), where spreading buys nothing and one
#: shard keeps every version of a row together.
ONE_SHARD = "0"
#: Spans of one trace on one shard: trace lookups and the parent/child joins stay shard-local, and
#: ``otel_traces_trace_id_ts`` (filled by a view on each shard) sees every span of its traces.
TRACE_SHARD_KEY = "cityHash64(TraceId)"
#: Logs spread evenly even when one service is loud (a key of the service alone would pin it to one
#: shard); both columns come from the record, so a replayed batch lands on the same shards.
LOG_SHARD_KEY = "cityHash64(ServiceName, Timestamp)"
#: One metric series (service, name, attributes — the sort key's identity) on one shard, so a series'
#: points are read and merged together.
METRIC_SHARD_KEY = "cityHash64(ServiceName, MetricName, Attributes)"
#: Dead letters of one topic-partition together, like the ledger's view of it.
DEAD_LETTER_SHARD_KEY = "cityHash64(Topic, Partition)"

#: On a cluster, how long Keeper remembers an insert's deduplication token (ClickHouse's default is
#: one hour). A batch is replayed after a crash or an outage, which can last longer; a week matches
#: the single-node window, which has no time limit, for any realistic outage.
REPLICATED_DEDUP_SECONDS = 7 * 24 * 3600

_MERGE_TREE = re.compile(r"^(\w*)MergeTree(?:\((.*)\))?$", re.S)


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table: its DDL template and how it is laid out on a cluster.

    The template names the table ``{db}.{table} {on_cluster}``, its engine ``{engine}`` and may
    place ``{ttl}`` and ``{dedup}`` (the deduplication window setting, after other SETTINGS).
    ``engine`` is the single-node engine, any ``*MergeTree``; on a cluster it becomes the Replicated
    variant with the same parameters. ``shard_key`` is the Distributed table's sharding key: it must
    be computed from the row alone (a replayed batch must reach the same shards to be deduplicated)
    and, for Replacing/Aggregating engines, from the sort key (versions of a row must meet).
    """

    name: str
    ddl: str
    ttl_column: str | None = None  # expression the retention TTL applies to; None: no telemetry TTL
    engine: str = "MergeTree"
    shard_key: str = ONE_SHARD


TABLE_SPECS: tuple[TableSpec, ...] = (
    TableSpec(TRACES, _TRACES_DDL, "toDateTime(Timestamp)", shard_key=TRACE_SHARD_KEY),
    TableSpec(TRACE_ID_TS, _TRACE_ID_TS_DDL, "toDateTime(Start)", shard_key=TRACE_SHARD_KEY),
    TableSpec(LOGS, _LOGS_DDL, "toDateTime(Timestamp)", shard_key=LOG_SHARD_KEY),
    TableSpec(GAUGE, _GAUGE_DDL, "TimeUnix", shard_key=METRIC_SHARD_KEY),
    TableSpec(SUM, _SUM_DDL, "TimeUnix", shard_key=METRIC_SHARD_KEY),
    TableSpec(HISTOGRAM, _HISTOGRAM_DDL, "TimeUnix", shard_key=METRIC_SHARD_KEY),
    TableSpec(EXP_HISTOGRAM, _EXP_HISTOGRAM_DDL, "TimeUnix", shard_key=METRIC_SHARD_KEY),
    TableSpec(SUMMARY, _SUMMARY_DDL, "TimeUnix", shard_key=METRIC_SHARD_KEY),
)
_DEAD_LETTERS_SPEC = TableSpec(DEAD_LETTERS, _DEAD_LETTERS_DDL, shard_key=DEAD_LETTER_SHARD_KEY)
_LEDGER_SPEC = TableSpec(LEDGER, _LEDGER_DDL)
_MIGRATIONS_SPEC = TableSpec(MIGRATIONS, _MIGRATIONS_DDL)


@dataclass(frozen=True, slots=True)
class SchemaOptions:
    ttl_days: int = 0
    dedup_window: int = 10000
    cluster: str = ""


def sql_string(text: str) -> str:
    """A SQL string literal (type names, engine parameters: text with quotes or backslashes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def on_cluster(opts: SchemaOptions) -> str:
    """`` ON CLUSTER `name` `` on a cluster, '' on a single node."""
    return f" ON CLUSTER {ident(opts.cluster)}" if opts.cluster else ""


def local_name(table: str, opts: SchemaOptions) -> str:
    """The table holding ``table``'s rows on this node: itself, or its Replicated local table."""
    return table + LOCAL_SUFFIX if opts.cluster else table


def replicated_engine(engine: str, local: str) -> str:
    """``ReplacingMergeTree(v)`` → ``ReplicatedReplacingMergeTree('<path>/<local>', '{replica}', v)``."""
    match = _MERGE_TREE.match(engine.strip())
    if not match:
        raise ValueError(f"only MergeTree engines can be replicated, not {engine!r}")
    variant, params = match.group(1), (match.group(2) or "").strip()
    args = [sql_string(REPLICA_PATH + local), sql_string(REPLICA_NAME)] + ([params] if params else [])
    return f"Replicated{variant}MergeTree({', '.join(args)})"


def table_ddl(database: str, opts: SchemaOptions, spec: TableSpec) -> list[str]:
    """The statements creating ``spec``: one on a single node; on a cluster, the Replicated local
    table then the Distributed table over it, both ``ON CLUSTER``."""
    ttl = ""
    if spec.ttl_column and opts.ttl_days > 0:
        ttl = f"TTL {spec.ttl_column} + toIntervalDay({int(opts.ttl_days)})"
    db, cluster = ident(database), opts.cluster
    if not cluster:
        dedup = f", non_replicated_deduplication_window = {int(opts.dedup_window)}"
        return [
            spec.ddl.format(
                db=db, table=ident(spec.name), on_cluster="", engine=spec.engine, ttl=ttl, dedup=dedup
            )
        ]
    local = local_name(spec.name, opts)
    dedup = (
        f", replicated_deduplication_window = {int(opts.dedup_window)}"
        f", replicated_deduplication_window_seconds = {REPLICATED_DEDUP_SECONDS}"
    )
    engine = replicated_engine(spec.engine, local)
    create_local = spec.ddl.format(
        db=db, table=ident(local), on_cluster=on_cluster(opts).strip(), engine=engine, ttl=ttl, dedup=dedup
    )
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {db}.{ident(spec.name)}{on_cluster(opts)} AS {db}.{ident(local)}\n"
        f"ENGINE = Distributed({sql_string(cluster)}, {sql_string(database)}, {sql_string(local)}, "
        f"{spec.shard_key})"
    )
    return [create_local, distributed]


def create_table(store: ClickHouse, opts: SchemaOptions, spec: TableSpec) -> None:
    """Migration step: create ``spec`` (see :func:`table_ddl`)."""
    for statement in table_ddl(store.database, opts, spec):
        store.command(statement)


def alter_table(store: ClickHouse, opts: SchemaOptions, table: str, change: str) -> None:
    """``ALTER TABLE … <change>``: on a cluster, on the local table and then the Distributed one.

    Column changes must reach both (the Distributed table has its own column list); data and TTL
    changes only make sense on the local table — use :func:`alter_local` for those.
    """
    alter_local(store, opts, table, change)
    if opts.cluster:
        store.command(f"ALTER TABLE {store.table(table)}{on_cluster(opts)} {change}")


def alter_local(store: ClickHouse, opts: SchemaOptions, table: str, change: str) -> None:
    """``ALTER TABLE … <change>`` on the table storing the rows (TTL, settings, mutations)."""
    store.command(f"ALTER TABLE {store.table(local_name(table, opts))}{on_cluster(opts)} {change}")


def declared_types(table: str) -> dict[str, str]:
    """Column → type as the telemetry table's DDL declares it, ``Nested`` columns flattened like
    ``system.columns`` (``Exemplars.TimeUnix Array(DateTime)``).

    Lets a migration derive one table's columns from another's without reading the server, so the
    whole DDL can be printed before anything exists (``warroom db migrate --print-sql``). Reads plain
    ``name Type [CODEC(…)]`` lines and ``Nested`` blocks, what the metric templates use; indexes
    and quoted (materialized) columns are skipped.
    """
    spec = next(s for s in TABLE_SPECS if s.name == table)
    types: dict[str, str] = {}
    nested = ""
    for line in spec.ddl.split("(", 1)[1].splitlines():
        text = re.sub(r"\s+CODEC\(.*\)$", "", line.strip().rstrip(","))
        if text.startswith(")"):
            if not nested:
                break  # the column list ends
            nested = ""
            continue
        if not text or text.startswith(("INDEX ", "`", "MATERIALIZED ")):
            continue
        name, _, ch_type = text.partition(" ")
        if re.fullmatch(r"Nested\s*\(", ch_type):
            nested = name
            continue
        ch_type = "Bool" if ch_type == "Boolean" else ch_type
        types[f"{nested}.{name}" if nested else name] = f"Array({ch_type})" if nested else ch_type
    return types


def _create_telemetry(store: ClickHouse, opts: SchemaOptions) -> None:
    for spec in TABLE_SPECS:
        create_table(store, opts, spec)
    # On a cluster the view runs on every node, from and to the local tables: traces and their
    # trace-id index share the sharding key, so each shard indexes exactly its own spans.
    store.command(
        _TRACE_ID_TS_MV_DDL.format(
            db=ident(store.database),
            mv=ident(TRACE_ID_TS + "_mv"),
            on_cluster=on_cluster(opts).strip(),
            table=ident(local_name(TRACE_ID_TS, opts)),
            source=ident(local_name(TRACES, opts)),
        )
    )


def _create_ingest_tables(store: ClickHouse, opts: SchemaOptions) -> None:
    create_table(store, opts, _DEAD_LETTERS_SPEC)
    create_table(store, opts, _LEDGER_SPEC)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    apply: Callable[[ClickHouse, SchemaOptions], None]


#: Append-only: never edit an applied migration, add a new one. Stages own versions ≥ 100.
MIGRATIONS_LIST: list[Migration] = [
    Migration(1, "otel collector exporter tables", _create_telemetry),
    Migration(2, "dead letters and ingest ledger", _create_ingest_tables),
]


def applied_versions(store: ClickHouse) -> set[int]:
    exists = store.scalar(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": store.database, "t": MIGRATIONS},
    )
    if not exists:
        return set()
    return {int(r[0]) for r in store.rows(f"SELECT DISTINCT Version FROM {store.table(MIGRATIONS)}")}


def schema_version(store: ClickHouse) -> int:
    versions = applied_versions(store)
    return max(versions) if versions else 0


def _ordered(migrations: list[Migration] | None) -> list[Migration]:
    migrations = MIGRATIONS_LIST if migrations is None else migrations
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {versions}")
    return sorted(migrations, key=lambda m: m.version)


def _bootstrap(store: ClickHouse, opts: SchemaOptions) -> None:
    store.command(f"CREATE DATABASE IF NOT EXISTS {ident(store.database)}{on_cluster(opts)}")
    create_table(store, opts, _MIGRATIONS_SPEC)


def migrate(
    store: ClickHouse, opts: SchemaOptions, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply the pending migrations (idempotent) and reconcile the retention TTL; returns those applied.

    ``migrations`` is the full ordered list — the core's :data:`MIGRATIONS_LIST` plus each stage's
    own, assembled by the composition root. Versions must be unique.

    Retention is reconciled on every run (``ALTER … MODIFY TTL`` / ``REMOVE TTL``) because the
    exporter's pitfall is that a TTL set only at CREATE time never follows a configuration change.

    ``store.cluster`` must equal ``opts.cluster``: the bookkeeping rows are written through the
    Distributed table and need the store's synchronous insert settings.
    """
    if store.cluster != opts.cluster:
        raise ValueError(f"store cluster {store.cluster!r} differs from schema cluster {opts.cluster!r}")
    _check_layout(store, opts)
    _bootstrap(store, opts)
    done = applied_versions(store)
    applied: list[Migration] = []
    for migration in _ordered(migrations):
        if migration.version in done:
            continue
        migration.apply(store, opts)
        store.insert(
            MIGRATIONS,
            ("Version", "Name", "AppliedAt"),
            [[migration.version], [migration.name], [int(time.time() * 1000)]],
        )
        applied.append(migration)
    _reconcile_ttl(store, opts)
    return applied


def _check_layout(store: ClickHouse, opts: SchemaOptions) -> None:
    """Refuse to migrate a database laid out for the other mode.

    ``CREATE … IF NOT EXISTS`` would silently keep the old tables (and the bookkeeping would say
    nothing is pending), leaving single-node tables on a cluster or the reverse.
    """
    engine = store.scalar(
        "SELECT engine FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": store.database, "t": MIGRATIONS},
    )
    if engine and (engine == "Distributed") != bool(opts.cluster):
        was = "a cluster (Distributed tables)" if engine == "Distributed" else "a single node"
        raise ConfigError(
            "clickhouse_cluster",
            f"database {store.database} was migrated for {was}; cluster {opts.cluster or '(none)'} does not "
            "match (copy the data into a new database to change the layout)",
        )


class _Recorder(ClickHouse):
    """A store that records statements instead of running them, and refuses reads."""

    def __init__(self, database: str, cluster: str) -> None:
        super().__init__("", database, cluster)
        self.statements: list[str] = []

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        self.statements.append(sql.strip())

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise RuntimeError("a migration that reads the server cannot be printed")


def ddl(database: str, opts: SchemaOptions, migrations: list[Migration] | None = None) -> list[str]:
    """Every statement :func:`migrate` runs on an empty server, in order, without connecting.

    For review before ``warroom db migrate`` (``--print-sql``). Bookkeeping inserts and the TTL
    reconciliation (a no-op on fresh tables, whose CREATE already carries the TTL) are left out.
    """
    recorder = _Recorder(database, opts.cluster)
    _bootstrap(recorder, opts)
    for migration in _ordered(migrations):
        migration.apply(recorder, opts)
    return recorder.statements


def _reconcile_ttl(store: ClickHouse, opts: SchemaOptions) -> None:
    for spec in TABLE_SPECS:
        if not spec.ttl_column:
            continue
        create = store.scalar(
            "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            {"db": store.database, "t": local_name(spec.name, opts)},
        )
        has_ttl = " TTL " in (create or "")
        if opts.ttl_days > 0:
            wanted = f"toIntervalDay({int(opts.ttl_days)})"
            if wanted not in (create or ""):
                alter_local(store, opts, spec.name, f"MODIFY TTL {spec.ttl_column} + {wanted}")
        elif has_ttl:
            alter_local(store, opts, spec.name, "REMOVE TTL")
