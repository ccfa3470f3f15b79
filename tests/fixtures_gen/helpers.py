"""Small readers for generated OTLP, shared by the fixture-generator tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import Message

START = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=10)
TINY: dict[str, Any] = {"start": START, "step": STEP, "duration": STEP * 48}
"""48 ten-second steps: the shortest run a single-fault scenario accepts (fault in the last 16)."""


def value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs}


def spans(messages: Iterable[tuple[str, Message]]) -> Iterator[tuple[dict[str, Any], Any]]:
    """(resource attributes, span) for every span in the trace requests."""
    for signal, message in messages:
        if signal != "traces":
            continue
        for resource_spans in message.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    yield resource, span


def log_records(messages: Iterable[tuple[str, Message]]) -> Iterator[tuple[dict[str, Any], Any]]:
    for signal, message in messages:
        if signal != "logs":
            continue
        for resource_logs in message.resource_logs:
            resource = attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    yield resource, record


def metrics(messages: Iterable[tuple[str, Message]]) -> Iterator[tuple[dict[str, Any], Any]]:
    for signal, message in messages:
        if signal != "metrics":
            continue
        for resource_metrics in message.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    yield resource, metric
