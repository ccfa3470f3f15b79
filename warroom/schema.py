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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from warroom.clickhouse import ClickHouse, ident

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


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    ddl: str
    ttl_column: str | None  # expression the retention TTL applies to; None: no telemetry TTL
    engine: str = "MergeTree"
    dedup: bool = True


TABLE_SPECS: tuple[TableSpec, ...] = (
    TableSpec(TRACES, _TRACES_DDL, "toDateTime(Timestamp)"),
    TableSpec(TRACE_ID_TS, _TRACE_ID_TS_DDL, "toDateTime(Start)"),
    TableSpec(LOGS, _LOGS_DDL, "toDateTime(Timestamp)"),
    TableSpec(GAUGE, _GAUGE_DDL, "TimeUnix"),
    TableSpec(SUM, _SUM_DDL, "TimeUnix"),
    TableSpec(HISTOGRAM, _HISTOGRAM_DDL, "TimeUnix"),
    TableSpec(EXP_HISTOGRAM, _EXP_HISTOGRAM_DDL, "TimeUnix"),
    TableSpec(SUMMARY, _SUMMARY_DDL, "TimeUnix"),
)


@dataclass(frozen=True, slots=True)
class SchemaOptions:
    ttl_days: int = 0
    dedup_window: int = 10000
    cluster: str = ""


def _render(template: str, store: ClickHouse, table: str, opts: SchemaOptions, **extra: str) -> str:
    ttl = ""
    spec = next((s for s in TABLE_SPECS if s.name == table), None)
    if spec and spec.ttl_column and opts.ttl_days > 0:
        ttl = f"TTL {spec.ttl_column} + toIntervalDay({int(opts.ttl_days)})"
    dedup = f", non_replicated_deduplication_window = {int(opts.dedup_window)}"
    values = {
        "db": ident(store.database),
        "table": ident(table),
        "on_cluster": f"ON CLUSTER {ident(opts.cluster)}" if opts.cluster else "",
        "engine": "MergeTree",
        "ttl": ttl,
        "dedup": dedup,
    }
    values.update(extra)
    return template.format(**values)


def _create_telemetry(store: ClickHouse, opts: SchemaOptions) -> None:
    for spec in TABLE_SPECS:
        store.command(_render(spec.ddl, store, spec.name, opts))
    store.command(
        _render(
            _TRACE_ID_TS_MV_DDL,
            store,
            TRACE_ID_TS,
            opts,
            mv=ident(TRACE_ID_TS + "_mv"),
            source=ident(TRACES),
        )
    )


def _create_ingest_tables(store: ClickHouse, opts: SchemaOptions) -> None:
    store.command(_render(_DEAD_LETTERS_DDL, store, DEAD_LETTERS, opts))
    store.command(_render(_LEDGER_DDL, store, LEDGER, opts))


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


def migrate(
    store: ClickHouse, opts: SchemaOptions, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply the pending migrations (idempotent) and reconcile the retention TTL; returns those applied.

    ``migrations`` is the full ordered list — the core's :data:`MIGRATIONS_LIST` plus each stage's
    own, assembled by the composition root. Versions must be unique.

    Retention is reconciled on every run (``ALTER … MODIFY TTL`` / ``REMOVE TTL``) because the
    exporter's pitfall is that a TTL set only at CREATE time never follows a configuration change.
    """
    on_cluster = f" ON CLUSTER {ident(opts.cluster)}" if opts.cluster else ""
    store.command(f"CREATE DATABASE IF NOT EXISTS {ident(store.database)}{on_cluster}")
    store.command(_render(_MIGRATIONS_DDL, store, MIGRATIONS, opts))
    migrations = MIGRATIONS_LIST if migrations is None else migrations
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {versions}")
    done = applied_versions(store)
    applied: list[Migration] = []
    for migration in sorted(migrations, key=lambda m: m.version):
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


def _reconcile_ttl(store: ClickHouse, opts: SchemaOptions) -> None:
    on_cluster = f" ON CLUSTER {ident(opts.cluster)}" if opts.cluster else ""
    for spec in TABLE_SPECS:
        if not spec.ttl_column:
            continue
        create = store.scalar(
            "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            {"db": store.database, "t": spec.name},
        )
        has_ttl = " TTL " in (create or "")
        if opts.ttl_days > 0:
            wanted = f"toIntervalDay({int(opts.ttl_days)})"
            if wanted not in (create or ""):
                store.command(
                    f"ALTER TABLE {store.table(spec.name)}{on_cluster} MODIFY TTL "
                    f"{spec.ttl_column} + {wanted}",
                )
        elif has_ttl:
            store.command(f"ALTER TABLE {store.table(spec.name)}{on_cluster} REMOVE TTL")
