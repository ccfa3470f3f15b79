"""OTLP/JSON codec: from_proto equals the reference mapping, to_proto inverts it, ids are hex."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1.metrics_pb2 import Exemplar, Gauge, Metric, NumberDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from fixtures import iter_requests
from tests.fixtures_gen.helpers import TINY
from warroom.errors import DecodeError
from warroom.otlp_json import HEX_IDS, delimit, from_proto, read_delimited, to_proto, write_delimited

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture(scope="module")
def messages() -> list[tuple[str, Message]]:
    return list(iter_requests("memory_leak", seed=11, rate=0.5, **TINY))


def reference(message: Message) -> dict[str, Any]:
    """The specification's algorithm, spelled out: protobuf's JSON mapping, then hex ids."""
    data = json_format.MessageToDict(message, use_integers_for_enums=True)

    def fix(obj: Any, descriptor: Descriptor) -> None:
        for key, item in obj.items():
            field = descriptor.fields_by_camelcase_name[key]
            if field.message_type is not None:
                for child in item if isinstance(item, list) else [item]:
                    fix(child, field.message_type)
            elif field.name in HEX_IDS.get(descriptor.full_name, ()):
                obj[key] = base64.b64decode(item).hex()

    fix(data, message.DESCRIPTOR)
    return data


def test_from_proto_is_message_to_dict_with_hex_ids(messages: list[tuple[str, Message]]) -> None:
    for signal, message in messages:
        assert from_proto(signal, message) == reference(message)


def test_round_trip_through_json_text(messages: list[tuple[str, Message]]) -> None:
    for signal, message in messages[::3]:  # ParseDict is slow; every signal still shows up
        line = json.dumps(from_proto(signal, message), separators=(",", ":"))
        assert to_proto(signal, json.loads(line)) == message


def test_json_shape_follows_otlp_json(messages: list[tuple[str, Message]]) -> None:
    signal, message = next((s, m) for s, m in messages if s == "traces")
    span = from_proto(signal, message)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert _HEX32.match(span["traceId"]) and _HEX16.match(span["spanId"])
    assert isinstance(span["startTimeUnixNano"], str) and span["startTimeUnixNano"].isdigit()
    assert isinstance(span["kind"], int)
    logs = next(from_proto(s, m) for s, m in messages if s == "logs")
    record = logs["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert isinstance(record["severityNumber"], int) and "timeUnixNano" in record


def test_only_ids_are_hex_other_bytes_stay_base64() -> None:
    span = Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        attributes=[KeyValue(key="blob", value=AnyValue(bytes_value=b"\x00\xff"))],
        links=[Span.Link(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)],
    )
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    data = from_proto("traces", request)
    out = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert out["traceId"] == bytes(range(16)).hex()
    assert out["links"][0] == {"traceId": "01" * 16, "spanId": "02" * 8}
    assert out["attributes"][0]["value"] == {"bytesValue": "AP8="}
    assert to_proto("traces", data) == request


def test_rare_values_match_reference() -> None:
    """Arrays, key-value lists, NaN/infinity, exemplar ids and empty values take the generic path."""
    nested = AnyValue(
        array_value=ArrayValue(
            values=[AnyValue(double_value=float("nan")), AnyValue(kvlist_value=KeyValueList(values=[]))]
        )
    )
    point = NumberDataPoint(
        as_double=float("-inf"),
        attributes=[KeyValue(key="a", value=nested), KeyValue(key="", value=AnyValue()), KeyValue(key="b")],
        exemplars=[Exemplar(as_int=3, trace_id=b"\x0a" * 16, span_id=b"\x0b" * 8)],
    )
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.CopyFrom(Metric(name="m", gauge=Gauge(data_points=[point])))
    data = from_proto("metrics", request)
    assert data == reference(request)
    exemplar = data["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0][
        "exemplars"
    ][0]
    assert exemplar["traceId"] == "0a" * 16


def test_to_proto_accepts_snake_case_uppercase_hex_and_unknown_fields() -> None:
    data = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "AB" * 16,
                                "span_id": "CD" * 8,
                                "name": "x",
                                "kind": "SPAN_KIND_SERVER",
                            }
                        ]
                    }
                ],
                "futureField": {"anything": 1},
            }
        ]
    }
    before = json.dumps(data, sort_keys=True)
    request = to_proto("traces", data)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == b"\xab" * 16 and span.span_id == b"\xcd" * 8 and span.kind == 2
    assert json.dumps(data, sort_keys=True) == before  # the input is not modified


@pytest.mark.parametrize(
    "span",
    [{"traceId": "zz" * 16}, {"traceId": "ab" * 15}, {"spanId": 12345}, {"parentSpanId": "ab" * 16}],
)
def test_to_proto_rejects_malformed_ids(span: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        to_proto("traces", {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


def test_to_proto_rejects_bad_values_and_signals() -> None:
    with pytest.raises(DecodeError):
        to_proto("logs", {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]})
    with pytest.raises(DecodeError):
        to_proto("profiles", {})


def test_delimited_round_trip_and_truncation(messages: list[tuple[str, Message]]) -> None:
    traces = [m for s, m in messages if s == "traces"]
    stream = io.BytesIO()
    for message in traces:
        write_delimited(stream, message)
    assert list(read_delimited(io.BytesIO(stream.getvalue()), "traces")) == traces
    assert delimit(b"x" * 300)[:2] == b"\xac\x02"  # 300 as a varint
    with pytest.raises(DecodeError):
        list(read_delimited(io.BytesIO(stream.getvalue()[:-3]), "traces"))
