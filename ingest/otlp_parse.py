"""Parse one encoded OTLP request (a Kafka record value or a file line) into its protobuf message."""

from __future__ import annotations

import json
from dataclasses import dataclass

from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from warroom import otlp_json
from warroom.errors import DecodeError

SIGNALS = ("traces", "logs", "metrics")


@dataclass(frozen=True, slots=True)
class Limits:
    """Normalisation limits, from settings (see README, "Ingest rules")."""

    max_attr_value_chars: int = 16384
    max_body_chars: int = 1 << 20
    max_future_skew_ns: int = 86400 * 10**9


def parse(signal: str, encoding: str, payload: bytes) -> Message:
    """Bytes → Export*ServiceRequest, or :class:`DecodeError` with a reason code.

    The upb runtime validates the wire format and UTF-8 in string fields, so anything that passes
    here is also accepted by ClickHouse's Protobuf reader.
    """
    request_type = otlp_json.REQUEST_TYPES[signal]
    if encoding == "otlp_proto":
        try:
            return request_type.FromString(payload)
        except (ProtobufDecodeError, ValueError, RuntimeError) as exc:
            raise DecodeError(
                f"invalid OTLP protobuf {signal} request: {exc}", reason="invalid_protobuf"
            ) from exc
    if encoding == "otlp_json":
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"OTLP/JSON payload is not valid UTF-8: {exc}", reason="invalid_utf8") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DecodeError(f"malformed JSON: {exc}", reason="invalid_json") from exc
        return otlp_json.to_proto(signal, data)
    raise DecodeError(f"unknown encoding {encoding!r}", reason="unknown_encoding")
