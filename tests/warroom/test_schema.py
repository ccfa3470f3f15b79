"""The tables match the Collector ClickHouse exporter's columns and types; migrate is idempotent."""

from __future__ import annotations

from typing import Any

from app import wiring
from warroom import schema as s

# (column, type) as the exporter's current templates declare them (shared/reference §2).
EXPECTED_TYPES = {
    s.TRACES: {
        "Timestamp": "DateTime64(9)",
        "TraceId": "String",
        "SpanId": "String",
        "ParentSpanId": "String",
        "TraceState": "String",
        "SpanName": "LowCardinality(String)",
        "SpanKind": "LowCardinality(String)",
        "ServiceName": "LowCardinality(String)",
        "ResourceAttributes": "Map(LowCardinality(String), String)",
        "ScopeName": "String",
        "ScopeVersion": "String",
        "SpanAttributes": "Map(LowCardinality(String), String)",
        "Duration": "UInt64",
        "StatusCode": "LowCardinality(String)",
        "StatusMessage": "String",
        "Events.Timestamp": "Array(DateTime64(9))",
        "Events.Name": "Array(LowCardinality(String))",
        "Events.Attributes": "Array(Map(LowCardinality(String), String))",
        "Links.TraceId": "Array(String)",
        "Links.SpanId": "Array(String)",
        "Links.TraceState": "Array(String)",
        "Links.Attributes": "Array(Map(LowCardinality(String), String))",
    },
    s.LOGS: {
        "Timestamp": "DateTime64(9)",
        "TraceId": "String",
        "SpanId": "String",
        "TraceFlags": "UInt8",
        "SeverityText": "LowCardinality(String)",
        "SeverityNumber": "UInt8",
        "ServiceName": "LowCardinality(String)",
        "Body": "String",
        "ResourceSchemaUrl": "LowCardinality(String)",
        "ScopeName": "String",
        "ScopeVersion": "LowCardinality(String)",
        "LogAttributes": "Map(LowCardinality(String), String)",
        "EventName": "String",
        "__otel_materialized_k8s.pod.name": "LowCardinality(String)",
    },
    s.SUM: {
        "MetricName": "LowCardinality(String)",
        "TimeUnix": "DateTime",
        "StartTimeUnix": "DateTime",
        "Value": "Float64",
        "Flags": "UInt32",
        "AggregationTemporality": "Int32",
        "IsMonotonic": "Bool",
        "Exemplars.TimeUnix": "Array(DateTime)",
        "ScopeDroppedAttrCount": "UInt32",
    },
    s.HISTOGRAM: {
        "Count": "UInt64",
        "BucketCounts": "Array(UInt64)",
        "ExplicitBounds": "Array(Float64)",
        "Min": "Float64",
        "Max": "Float64",
    },
    s.EXP_HISTOGRAM: {
        "Scale": "Int32",
        "ZeroCount": "UInt64",
        "PositiveOffset": "Int32",
        "NegativeBucketCounts": "Array(UInt64)",
    },
    s.SUMMARY: {"ValueAtQuantiles.Quantile": "Array(Float64)", "ValueAtQuantiles.Value": "Array(Float64)"},
    s.TRACE_ID_TS: {"TraceId": "String", "Start": "DateTime", "End": "DateTime"},
}


def _columns(store: Any, table: str) -> dict[str, str]:
    rows = store.rows(
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String}",
        {"d": store.database, "t": table},
    )
    return dict(rows)


def test_exporter_columns_and_types(store: Any) -> None:
    for table, expected in EXPECTED_TYPES.items():
        actual = _columns(store, table)
        for column, type_ in expected.items():
            assert actual.get(column) == type_, f"{table}.{column}: {actual.get(column)} != {type_}"
    for table, insert_columns in s.COLUMNS.items():
        actual = _columns(store, table)
        missing = [c for c in insert_columns if c not in actual]
        assert not missing, f"{table} lacks {missing}"


def test_sorting_keys_and_dedup_window(store: Any) -> None:
    keys = dict(
        store.rows(
            "SELECT name, sorting_key FROM system.tables WHERE database = {d:String}", {"d": store.database}
        )
    )
    assert keys[s.TRACES] == "ServiceName, SpanName, toDateTime(Timestamp)"
    assert keys[s.LOGS] == "toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp"
    assert (
        keys[s.GAUGE] == "ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix"
    )
    create = store.scalar(
        "SELECT create_table_query FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        {"d": store.database, "t": s.TRACES},
    )
    assert "non_replicated_deduplication_window" in create


def test_migrate_is_idempotent_and_versioned(store: Any) -> None:
    opts = s.SchemaOptions()
    assert s.migrate(store, opts, wiring.migrations()) == []
    assert s.schema_version(store) == max(m.version for m in wiring.migrations())
    assert s.applied_versions(store) == {m.version for m in wiring.migrations()}


def test_ttl_follows_the_setting(store: Any) -> None:
    def create_query() -> str:
        return str(
            store.scalar(
                "SELECT create_table_query FROM system.tables "
                "WHERE database = {d:String} AND name = {t:String}",
                {"d": store.database, "t": s.LOGS},
            )
        )

    s.migrate(store, s.SchemaOptions(ttl_days=7), wiring.migrations())
    assert "toIntervalDay(7)" in create_query()
    s.migrate(store, s.SchemaOptions(ttl_days=3), wiring.migrations())
    assert "toIntervalDay(3)" in create_query()
    s.migrate(store, s.SchemaOptions(ttl_days=0), wiring.migrations())
    assert " TTL " not in create_query()
