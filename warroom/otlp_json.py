"""OTLP/JSON ⇄ protobuf, as the OpenTelemetry specification defines OTLP/JSON.

OTLP/JSON is the protobuf JSON mapping with two differences that ``google.protobuf.json_format``
does not know: trace and span ids are lowercase **hex** strings (not base64), and enums are integers.
Here the id fields are converted between hex and base64 on the way in and out; everything else
(lowerCamelCase keys, 64-bit integers as decimal strings, snake_case accepted on input) is the
standard mapping. This is the format of the Collector's file exporter and its ``otlp_json`` Kafka
encoding, shared by ingest (decoding) and the fixture generator (encoding).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from warroom.errors import DecodeError

REQUEST_TYPES: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_METRIC_KINDS = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary")


def _pick(node: dict[str, Any], camel: str, snake: str) -> list[Any]:
    value = node.get(camel, node.get(snake))
    return value if isinstance(value, list) else []


def _convert_ids(node: Any, convert: Callable[[str], str]) -> None:
    if isinstance(node, dict):
        for key in _ID_KEYS:
            value = node.get(key)
            if isinstance(value, str) and value:
                node[key] = convert(value)


def _walk_items(signal: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every dict that can carry trace/span ids in an OTLP/JSON request."""
    items: list[dict[str, Any]] = []
    if signal == "traces":
        for rs in _pick(data, "resourceSpans", "resource_spans"):
            for ss in _pick(rs, "scopeSpans", "scope_spans"):
                for span in _pick(ss, "spans", "spans"):
                    items.append(span)
                    items.extend(_pick(span, "links", "links"))
    elif signal == "logs":
        for rl in _pick(data, "resourceLogs", "resource_logs"):
            for sl in _pick(rl, "scopeLogs", "scope_logs"):
                items.extend(_pick(sl, "logRecords", "log_records"))
    else:
        for rm in _pick(data, "resourceMetrics", "resource_metrics"):
            for sm in _pick(rm, "scopeMetrics", "scope_metrics"):
                for metric in _pick(sm, "metrics", "metrics"):
                    for kind in _METRIC_KINDS:
                        body = metric.get(kind)
                        if isinstance(body, dict):
                            for dp in _pick(body, "dataPoints", "data_points"):
                                items.extend(_pick(dp, "exemplars", "exemplars"))
    return items


def _hex_to_b64(value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    except ValueError as exc:
        raise DecodeError(f"id {value[:40]!r} is not hex", reason="invalid_id") from exc


def _b64_to_hex(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"id {value[:40]!r} is not base64", reason="invalid_id") from exc


def to_proto(signal: str, data: Any) -> Message:
    """Parse an OTLP/JSON request (already ``json.loads``-ed) into its Export*ServiceRequest."""
    if not isinstance(data, dict):
        raise DecodeError(f"OTLP/JSON {signal} request must be a JSON object", reason="invalid_otlp_json")
    for item in _walk_items(signal, data):
        _convert_ids(item, _hex_to_b64)
    message = REQUEST_TYPES[signal]()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise DecodeError(f"not an OTLP/JSON {signal} request: {exc}", reason="invalid_otlp_json") from exc
    return message


def from_proto(signal: str, message: Message) -> dict[str, Any]:
    """Render a request as OTLP/JSON (a dict ready for ``json.dumps``), ids in hex."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=False, use_integers_for_enums=True)
    for item in _walk_items(signal, data):
        _convert_ids(item, _b64_to_hex)
    return data
