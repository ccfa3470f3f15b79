"""A wire-compatible *view* of the OTLP request messages, for ClickHouse's ``Protobuf`` input format.

ClickHouse decodes OTLP itself (C++, far faster than Python field access), given a ``.proto``
schema and a column structure with matching names. Both are generated here from the official
``opentelemetry-proto`` descriptors, so field numbers and wire types are right by construction:

* only the fields warroom stores are kept (unknown fields are skipped on the wire);
* enums become ``int32`` (same varint encoding);
* the recursive ``AnyValue`` is unrolled to :data:`ANY_DEPTH` levels (``AnyValue0`` holds
  ``ArrayValue0`` of ``AnyValue1`` …); at the last level arrays and key-value lists are read as raw
  bytes — values nested that deep are stored as ``null`` inside their JSON rendering (documented);
* every ``oneof`` gets a presence column (``input_format_protobuf_oneof_presence``), so an
  ``int_value`` of 0 is told apart from an unset value;
* four extra fields (numbers ≥ 1000, never used by OTLP) carry the record's source coordinates and
  per-record limits; the worker appends them to each payload (protobuf concatenation merges).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from warroom.otlp_json import REQUEST_TYPES, varint

ANY_DEPTH = 2

#: message name → fields kept (names as in opentelemetry-proto).
_KEEP: dict[str, tuple[str, ...]] = {
    "ExportTraceServiceRequest": ("resource_spans",),
    "ExportLogsServiceRequest": ("resource_logs",),
    "ExportMetricsServiceRequest": ("resource_metrics",),
    "ResourceSpans": ("resource", "scope_spans", "schema_url"),
    "ResourceLogs": ("resource", "scope_logs", "schema_url"),
    "ResourceMetrics": ("resource", "scope_metrics", "schema_url"),
    "Resource": ("attributes",),
    "ScopeSpans": ("scope", "spans", "schema_url"),
    "ScopeLogs": ("scope", "log_records", "schema_url"),
    "ScopeMetrics": ("scope", "metrics", "schema_url"),
    "InstrumentationScope": ("name", "version", "attributes", "dropped_attributes_count"),
    "Span": (
        "trace_id",
        "span_id",
        "trace_state",
        "parent_span_id",
        "name",
        "kind",
        "start_time_unix_nano",
        "end_time_unix_nano",
        "attributes",
        "events",
        "links",
        "status",
    ),
    "Event": ("time_unix_nano", "name", "attributes"),
    "Link": ("trace_id", "span_id", "trace_state", "attributes"),
    "Status": ("message", "code"),
    "LogRecord": (
        "time_unix_nano",
        "observed_time_unix_nano",
        "severity_number",
        "severity_text",
        "body",
        "attributes",
        "flags",
        "trace_id",
        "span_id",
        "event_name",
    ),
    "Metric": (
        "name",
        "description",
        "unit",
        "gauge",
        "sum",
        "histogram",
        "exponential_histogram",
        "summary",
    ),
    "Gauge": ("data_points",),
    "Sum": ("data_points", "aggregation_temporality", "is_monotonic"),
    "Histogram": ("data_points", "aggregation_temporality"),
    "ExponentialHistogram": ("data_points", "aggregation_temporality"),
    "Summary": ("data_points",),
    "NumberDataPoint": (
        "attributes",
        "start_time_unix_nano",
        "time_unix_nano",
        "as_double",
        "as_int",
        "exemplars",
        "flags",
    ),
    "HistogramDataPoint": (
        "attributes",
        "start_time_unix_nano",
        "time_unix_nano",
        "count",
        "sum",
        "bucket_counts",
        "explicit_bounds",
        "exemplars",
        "flags",
        "min",
        "max",
    ),
    "ExponentialHistogramDataPoint": (
        "attributes",
        "start_time_unix_nano",
        "time_unix_nano",
        "count",
        "sum",
        "scale",
        "zero_count",
        "positive",
        "negative",
        "flags",
        "exemplars",
        "min",
        "max",
    ),
    "Buckets": ("offset", "bucket_counts"),
    "SummaryDataPoint": (
        "attributes",
        "start_time_unix_nano",
        "time_unix_nano",
        "count",
        "sum",
        "quantile_values",
        "flags",
    ),
    "ValueAtQuantile": ("quantile", "value"),
    "Exemplar": ("filtered_attributes", "time_unix_nano", "as_double", "as_int", "span_id", "trace_id"),
    "KeyValue": ("key", "value"),
    "AnyValue": (
        "string_value",
        "bool_value",
        "int_value",
        "double_value",
        "array_value",
        "kvlist_value",
        "bytes_value",
    ),
    "ArrayValue": ("values",),
    "KeyValueList": ("values",),
}

#: Source coordinates and per-record limits appended to every payload by the worker.
EXTRA_FIELDS: tuple[tuple[str, int, str, str], ...] = (
    ("wr_source", 1000, "string", "String"),
    ("wr_topic", 1001, "string", "String"),
    ("wr_partition", 1002, "int32", "Int32"),
    ("wr_offset", 1003, "int64", "Int64"),
    ("wr_max_time", 1004, "uint64", "UInt64"),
    ("wr_attr_limit", 1005, "uint32", "UInt32"),
    ("wr_body_limit", 1006, "uint32", "UInt32"),
)

_PROTO_TYPES = {
    FieldDescriptor.TYPE_DOUBLE: ("double", "Float64"),
    FieldDescriptor.TYPE_FLOAT: ("float", "Float32"),
    FieldDescriptor.TYPE_INT64: ("int64", "Int64"),
    FieldDescriptor.TYPE_UINT64: ("uint64", "UInt64"),
    FieldDescriptor.TYPE_INT32: ("int32", "Int32"),
    FieldDescriptor.TYPE_FIXED64: ("fixed64", "UInt64"),
    FieldDescriptor.TYPE_FIXED32: ("fixed32", "UInt32"),
    FieldDescriptor.TYPE_BOOL: ("bool", "Bool"),
    FieldDescriptor.TYPE_STRING: ("string", "String"),
    FieldDescriptor.TYPE_BYTES: ("bytes", "String"),
    FieldDescriptor.TYPE_UINT32: ("uint32", "UInt32"),
    FieldDescriptor.TYPE_ENUM: ("int32", "Int32"),
    FieldDescriptor.TYPE_SFIXED32: ("sfixed32", "Int32"),
    FieldDescriptor.TYPE_SFIXED64: ("sfixed64", "Int64"),
    FieldDescriptor.TYPE_SINT32: ("sint32", "Int32"),
    FieldDescriptor.TYPE_SINT64: ("sint64", "Int64"),
}

_ANY_FAMILY = {"AnyValue", "ArrayValue", "KeyValueList", "KeyValue"}


@dataclass(frozen=True)
class View:
    """The generated schema for one signal: proto text, top message, staging table columns."""

    proto: str
    message: str
    columns: tuple[tuple[str, str], ...]
    types: dict[str, str]  # view message name → its ClickHouse type (e.g. "Exemplar", "KeyValue0")


class _Builder:
    def __init__(self) -> None:
        self.messages: dict[str, str] = {}
        self.types: dict[str, str] = {}

    def message(self, desc: Descriptor, depth: int) -> tuple[str, str]:
        """Emit ``desc`` (at AnyValue depth ``depth``); return (proto name, ClickHouse type)."""
        name = desc.name + (str(depth) if desc.name in _ANY_FAMILY else "")
        keep = _KEEP[desc.name]
        plain: list[str] = []
        columns: list[str] = []
        oneofs: dict[str, list[tuple[str, str, int]]] = {}
        for field in desc.fields:
            if field.name not in keep:
                continue
            proto_type, ch_type = self.field_type(desc, field, depth)
            if field.is_repeated:
                ch_type = f"Array({ch_type})"
            decl = f"{proto_type} {field.name} = {field.number};"
            columns.append(f"{field.name} {ch_type}")
            oneof = field.containing_oneof
            # Synthetic oneofs ("_sum") mark proto3 `optional`; a plain field reads them the same.
            if oneof is not None and not oneof.name.startswith("_"):
                oneofs.setdefault(oneof.name, []).append((decl, field.name, field.number))
            else:
                plain.append(("repeated " if field.is_repeated else "") + decl)
        body = list(plain)
        for oneof_name, members in oneofs.items():
            body.append(f"oneof {oneof_name} {{ " + " ".join(d for d, _, _ in members) + " }")
            enum = ",".join(["'none'=0"] + [f"'{n}'={num}" for _, n, num in members])
            columns.append(f"{oneof_name} Enum8({enum})")
        self.messages.setdefault(name, f"message {name} {{ " + " ".join(body) + " }")
        ch_type = "Tuple(" + ", ".join(columns) + ")"
        self.types.setdefault(name, ch_type)
        return name, ch_type

    def field_type(self, parent: Descriptor, field: FieldDescriptor, depth: int) -> tuple[str, str]:
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            return _PROTO_TYPES[field.type]
        child = field.message_type
        if (
            parent.name == "AnyValue"
            and child.name in ("ArrayValue", "KeyValueList")
            and depth >= ANY_DEPTH - 1
        ):
            return "bytes", "String"
        child_depth = depth + 1 if parent.name in ("ArrayValue", "KeyValueList") else depth
        return self.message(child, child_depth)


@cache
def view(signal: str) -> View:
    builder = _Builder()
    request = REQUEST_TYPES[signal].DESCRIPTOR
    top_field = request.fields_by_name[_KEEP[request.name][0]]
    _, ch_type = builder.field_type(request, top_field, 0)
    columns = [(top_field.name, f"Array({ch_type})")]
    decls = [
        f"repeated {builder.message(top_field.message_type, 0)[0]} {top_field.name} = {top_field.number};"
    ]
    for name, number, proto_type, ch in EXTRA_FIELDS:
        decls.append(f"{proto_type} {name} = {number};")
        columns.append((name, ch))
    message = "WarroomIn" + signal.capitalize()
    body = "\n".join(builder.messages.values())
    proto = f'syntax = "proto3";\n{body}\nmessage {message} {{ ' + " ".join(decls) + " }\n"
    return View(proto=proto, message=message, columns=tuple(columns), types=dict(builder.types))


def _key(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


_KEYS = {name: _key(number, 2 if proto == "string" else 0) for name, number, proto, _ in EXTRA_FIELDS}


def trailer(
    source: str, topic: str, partition: int, offset: int, max_time: int, attr_limit: int, body_limit: int
) -> bytes:
    """The extra fields for one record, to append to its payload."""
    source_b = source.encode()
    topic_b = topic.encode()
    return b"".join(
        (
            _KEYS["wr_source"],
            varint(len(source_b)),
            source_b,
            _KEYS["wr_topic"],
            varint(len(topic_b)),
            topic_b,
            _KEYS["wr_partition"],
            varint(partition & 0xFFFFFFFFFFFFFFFF),
            _KEYS["wr_offset"],
            varint(offset & 0xFFFFFFFFFFFFFFFF),
            _KEYS["wr_max_time"],
            varint(max_time),
            _KEYS["wr_attr_limit"],
            varint(attr_limit),
            _KEYS["wr_body_limit"],
            varint(body_limit),
        )
    )
