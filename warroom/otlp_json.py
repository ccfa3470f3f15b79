"""OTLP/JSON ⇄ protobuf for the three ``Export*ServiceRequest`` messages, and length-delimited files.

OTLP/JSON is protobuf's canonical JSON mapping with the exceptions the OTLP specification makes:

* keys are lowerCamelCase (``startTimeUnixNano``), int64/uint64/fixed64 fields are decimal *strings*
  and enums are *integers* (``"kind": 2``), i.e. ``MessageToDict(msg, use_integers_for_enums=True)``;
* trace and span ids are **hex** strings (``"traceId": "5b8efff798038103d269b633813fc60c"``), not the
  base64 protobuf's mapping gives every ``bytes`` field. Only the id fields listed in :data:`HEX_IDS`
  are hex; any other bytes (an attribute's ``bytesValue``) stay base64.

So the algorithm is: protobuf's JSON mapping, except at the :data:`HEX_IDS` fields.

* :func:`to_proto` (JSON → message, what ingest needs for ``otlp_json`` records) walks the object
  along the message descriptors, rewrites hex ids to base64, then calls ``ParseDict``. As the spec
  asks of receivers, it accepts lowerCamelCase or original snake_case keys, enum names or numbers,
  hex in either case, and ignores unknown fields (forward compatibility). A malformed id or any
  value ``ParseDict`` rejects is a :class:`~warroom.errors.DecodeError`.
* :func:`from_proto` (message → JSON) gives exactly ``MessageToDict(msg, use_integers_for_enums=True)``
  with the :data:`HEX_IDS` fields re-encoded from base64 to hex — the test suite checks that on
  every generated message. It walks ``ListFields()`` with per-field converters cached per message
  type instead of calling ``MessageToDict``, because that is about six times faster and JSON encoding
  dominated generation time.

:func:`delimit`, :func:`write_delimited` and :func:`read_delimited` handle the ``--format proto``
files: each message is prefixed with its length as a protobuf varint (Java's ``writeDelimitedTo``).

This is core code because both the fixture generator (writing) and ingest (reading ``otlp_json``
topics and files) speak the format.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers  # what json_format uses to print float32 fields
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from warroom.errors import DecodeError

REQUEST_TYPES: Mapping[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
"""Signal name → its ``Export*ServiceRequest`` class (wire-identical to ``TracesData`` etc.)."""

HEX_IDS: Mapping[str, frozenset[str]] = {
    "opentelemetry.proto.trace.v1.Span": frozenset({"trace_id", "span_id", "parent_span_id"}),
    "opentelemetry.proto.trace.v1.Span.Link": frozenset({"trace_id", "span_id"}),
    "opentelemetry.proto.logs.v1.LogRecord": frozenset({"trace_id", "span_id"}),
    "opentelemetry.proto.metrics.v1.Exemplar": frozenset({"trace_id", "span_id"}),
}
"""Message type → its ``bytes`` fields that OTLP/JSON writes as hex (16-byte trace, 8-byte span ids)."""

_ID_SIZES = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
_INT64 = frozenset({FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64})  # all 64-bit ints
_Converter = Callable[[Any], Any]


def request_type(signal: str) -> type[Message]:
    """The ``Export*ServiceRequest`` class for ``"traces"``, ``"logs"`` or ``"metrics"``."""
    try:
        return REQUEST_TYPES[signal]
    except KeyError:
        raise DecodeError(
            f"unknown signal {signal!r}; expected one of {', '.join(REQUEST_TYPES)}", reason="unknown_signal"
        ) from None


def from_proto(signal: str, message: Message) -> dict[str, Any]:
    """The OTLP/JSON object for an ``Export*ServiceRequest`` (what one file-exporter line holds)."""
    if not isinstance(message, request_type(signal)):
        raise TypeError(
            f"expected {request_type(signal).__name__} for {signal}, got {type(message).__name__}"
        )
    return _message_json(message)


def to_proto(signal: str, data: Mapping[str, Any]) -> Message:
    """Parse one OTLP/JSON object into its ``Export*ServiceRequest``; ``data`` is not modified.

    Raises :class:`~warroom.errors.DecodeError` for malformed ids or anything ``ParseDict`` rejects.
    """
    cls = request_type(signal)
    if not isinstance(data, Mapping):
        raise DecodeError(
            f"an OTLP/JSON {signal} request must be an object, got {type(data).__name__}",
            reason="invalid_otlp_json",
        )
    fixed = _hex_to_base64(cls.DESCRIPTOR, data)
    try:
        return json_format.ParseDict(fixed, cls(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise DecodeError(f"invalid OTLP/JSON {signal} request: {exc}", reason="invalid_otlp_json") from exc


def delimit(payload: bytes) -> bytes:
    """``payload`` with its varint length prefix: one record of a length-delimited file."""
    return varint(len(payload)) + payload


def write_delimited(stream: IO[bytes], message: Message) -> None:
    """Append ``message`` to ``stream`` as a varint length prefix plus its deterministic encoding."""
    stream.write(delimit(message.SerializeToString(deterministic=True)))


def read_delimited(stream: IO[bytes], signal: str) -> Iterator[Message]:
    """Read the messages :func:`write_delimited` wrote; a truncated file is a DecodeError."""
    cls = request_type(signal)
    while True:
        size = _readvarint(stream)
        if size is None:
            return
        payload = stream.read(size)
        if len(payload) != size:
            raise DecodeError(
                f"truncated {signal} record: expected {size} bytes, got {len(payload)}",
                reason="invalid_protobuf",
            )
        try:
            yield cls.FromString(payload)
        except ProtobufDecodeError as exc:
            raise DecodeError(f"undecodable {signal} record: {exc}", reason="invalid_protobuf") from exc


# -- message → JSON ------------------------------------------------------------------------------

_PLANS: dict[type[Message], dict[FieldDescriptor, tuple[str, _Converter | None]]] = {}


def _message_json(message: Message) -> dict[str, Any]:
    plan = _PLANS.get(type(message)) or _plan(message)
    out: dict[str, Any] = {}
    for field, value in message.ListFields():  # set fields only, in field-number order, like MessageToDict
        name, convert = plan[field]
        out[name] = value if convert is None else convert(value)
    return out


def _plan(message: Message) -> dict[FieldDescriptor, tuple[str, _Converter | None]]:
    plan = {field: (field.json_name, _converter(field)) for field in message.DESCRIPTOR.fields}
    _PLANS[type(message)] = plan
    return plan


def _any_value(value: AnyValue) -> dict[str, Any]:
    """``AnyValue`` by hand: attributes are most of OTLP, and this is 5x cheaper than the generic walk."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind == "int_value":
        return {"intValue": str(value.int_value)}
    if kind == "double_value":
        return {"doubleValue": _double(value.double_value)}
    if kind == "bool_value":
        return {"boolValue": value.bool_value}
    if kind is None:
        return {}
    return _message_json(value)  # arrays, key-value lists and bytes: rare, take the generic path


def _key_value(pair: KeyValue) -> dict[str, Any]:
    key = pair.key
    if key and pair.HasField("value"):  # the normal case; anything else takes the generic path
        return {"key": key, "value": _any_value(pair.value)}
    return _message_json(pair)


_SPECIAL: Mapping[str, _Converter] = {
    AnyValue.DESCRIPTOR.full_name: _any_value,
    KeyValue.DESCRIPTOR.full_name: _key_value,
}


def _converter(field: FieldDescriptor) -> _Converter | None:
    """How ``MessageToDict`` renders one field (``None``: the value as is), with hex for ids."""
    single: _Converter | None
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:  # OTLP has no maps; refuse rather than guess
            raise TypeError(f"map field {field.full_name} is not supported")
        single = _SPECIAL.get(field.message_type.full_name, _message_json)
    elif field.type == FieldDescriptor.TYPE_BYTES:
        single = bytes.hex if field.name in HEX_IDS.get(field.containing_type.full_name, ()) else _base64
    elif field.cpp_type in _INT64:
        single = str
    elif field.cpp_type == FieldDescriptor.CPPTYPE_DOUBLE:
        single = _double
    elif field.cpp_type == FieldDescriptor.CPPTYPE_FLOAT:
        single = _float
    else:  # string, bool, int32/uint32, enum (as its number)
        single = None
    if not _is_repeated(field):
        return single
    if single is None:
        return list
    return lambda values: [single(v) for v in values]


def _is_repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 5.29; older versions only have ``label``
    return bool(flag) if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _double(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _float(value: float) -> float | str:
    return type_checkers.ToShortestFloat(value) if math.isfinite(value) else _double(value)


# -- JSON → message ------------------------------------------------------------------------------

_FIELDS: dict[str, dict[str, FieldDescriptor]] = {}


def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """JSON key → field, accepting both lowerCamelCase and the original snake_case names."""
    fields = _FIELDS.get(descriptor.full_name)
    if fields is None:
        fields = {f.name: f for f in descriptor.fields} | {f.json_name: f for f in descriptor.fields}
        _FIELDS[descriptor.full_name] = fields
    return fields


def _hex_to_base64(descriptor: Descriptor, data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with the hex ids of ``descriptor`` (and nested messages) as base64."""
    fields = _fields(descriptor)
    hex_ids = HEX_IDS.get(descriptor.full_name, frozenset())
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = fields.get(key)
        if field is None or value is None:
            out[key] = value
        elif field.message_type is not None:
            child = field.message_type
            if isinstance(value, list):
                out[key] = [_hex_to_base64(child, v) if isinstance(v, Mapping) else v for v in value]
            else:
                out[key] = _hex_to_base64(child, value) if isinstance(value, Mapping) else value
        elif field.name in hex_ids and value != "":
            out[key] = _hex_id(key, value, _ID_SIZES[field.name])
        else:
            out[key] = value
    return out


def _hex_id(name: str, value: Any, size: int) -> str:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise DecodeError(f"{name} must be {2 * size} hex characters, got {value!r:.60}", reason="invalid_id")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise DecodeError(f"{name} is not hex: {value!r:.60}", reason="invalid_id") from None
    return base64.b64encode(raw).decode("ascii")


# -- varints -------------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer (lengths, field keys, values)."""
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _readvarint(stream: IO[bytes]) -> int | None:
    result = shift = 0
    while True:
        byte = stream.read(1)
        if not byte:
            if shift:
                raise DecodeError("truncated length prefix")
            return None
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise DecodeError("length prefix longer than 10 bytes")


__all__ = [
    "HEX_IDS",
    "REQUEST_TYPES",
    "delimit",
    "from_proto",
    "read_delimited",
    "request_type",
    "to_proto",
    "write_delimited",
]
