"""Bad input never stops ingest and is never silently dropped: dead letter or a documented rule."""

from __future__ import annotations

import json
import time
from typing import Any

from ingest.otlp_parse import Limits
from ingest.writer import NativeWriter, Record
from tests.otlp_builders import sdk_logs, sdk_spans
from warroom import schema as s
from warroom.otlp_json import from_proto

NOW = time.time_ns()
LIMITS = Limits(max_attr_value_chars=100, max_body_chars=50, max_future_skew_ns=3600 * 10**9)


def _write(store: Any, records: list[Record], signal: str = "traces") -> Any:
    writer = NativeWriter(store, LIMITS, lambda: NOW)
    return writer.write(signal, [writer.prepare(r) for r in records], f"bad-{time.time_ns()}")


def _dead(store: Any) -> list[tuple[Any, ...]]:
    return store.rows(
        f"SELECT Offset, Signal, Reason, Error, Raw FROM {store.table(s.DEAD_LETTERS)} ORDER BY Offset"
    )


def _count(store: Any, table: str = s.TRACES) -> int:
    return int(store.scalar(f"SELECT count() FROM {store.table(table)}"))


def test_undecodable_records_are_dead_lettered_and_neighbours_stored(store: Any) -> None:
    good = sdk_spans("svc", traces=3).SerializeToString()  # 9 spans
    truncated = good[: len(good) // 2]
    records = [
        Record("traces", "otlp_proto", good, "kafka", "spans", 0, 10),
        Record("traces", "otlp_proto", truncated, "kafka", "spans", 0, 11),
        Record(
            "traces", "otlp_proto", b'{"resourceSpans": []}', "kafka", "spans", 0, 12
        ),  # JSON on a proto topic
        Record(
            "traces",
            "otlp_proto",
            good.replace(b"GET /checkout", b"GET \xff\xfe\xfdckout"),
            "kafka",
            "spans",
            0,
            13,
        ),
        Record(
            "traces", "otlp_json", b'{"resourceSpans": [\xff]}', "kafka", "spans", 0, 14
        ),  # bad UTF-8 in JSON
        Record("traces", "otlp_json", b"[1, 2]", "kafka", "spans", 0, 15),  # JSON, not an OTLP request
        Record(
            "traces", "otlp_proto", sdk_spans("svc2", traces=1).SerializeToString(), "kafka", "spans", 0, 16
        ),
    ]
    result = _write(store, records)
    assert _count(store) == 9 + 3
    dead = _dead(store)
    assert [(d[0], d[2]) for d in dead] == [
        (11, "invalid_protobuf"),
        (12, "invalid_protobuf"),
        (13, "invalid_protobuf"),
        (14, "invalid_utf8"),
        (15, "invalid_otlp_json"),
    ]
    raw = store.scalar(f"SELECT hex(Raw) FROM {store.table(s.DEAD_LETTERS)} WHERE Offset = 11")
    assert bytes.fromhex(raw) == truncated  # the raw record is kept byte for byte
    assert result.dead_records == 5


def test_empty_requests_are_accepted_and_store_nothing(store: Any) -> None:
    records = [
        Record("traces", "otlp_proto", b"", "kafka", "spans", 0, 1),
        Record("traces", "otlp_json", b"{}", "kafka", "spans", 0, 2),
        Record(
            "traces",
            "otlp_json",
            b'{"resourceSpans": [{"resource": {}, "scopeSpans": []}]}',
            "kafka",
            "spans",
            0,
            3,
        ),
    ]
    result = _write(store, records)
    assert result.dead_records == 0 and _count(store) == 0 and _dead(store) == []


def test_timestamps_missing_or_far_in_the_future_dead_letter_only_that_item(store: Any) -> None:
    request = sdk_spans("svc", traces=2, children=1)  # 4 spans
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].start_time_unix_nano = 0
    spans[1].start_time_unix_nano = NOW + 10 * 3600 * 10**9  # 10 h ahead, skew allows 1 h
    spans[2].start_time_unix_nano = 10**9  # 1970: far past, stored as is (documented)
    spans[2].end_time_unix_nano = 5 * 10**8  # ends before it starts: Duration 0
    _write(store, [Record("traces", "otlp_proto", request.SerializeToString(), "kafka", "spans", 3, 77)])
    assert _count(store) == 2
    assert store.rows(f"SELECT Duration FROM {store.table(s.TRACES)} WHERE toYear(Timestamp) = 1970") == [
        (0,)
    ]
    dead = store.rows(
        f"SELECT Topic, Partition, Offset, Reason, Raw FROM {store.table(s.DEAD_LETTERS)} ORDER BY Reason"
    )
    assert [(d[0], d[1], d[2], d[3]) for d in dead] == [
        ("spans", 3, 77, "timestamp_in_future"),
        ("spans", 3, 77, "timestamp_missing"),
    ]
    item = json.loads(dead[1][4])
    assert item["start_time_unix_nano"] == "0" and item["name"] == "SELECT 0" and item["service"] == "svc"
    assert len(item["trace_id"]) == 32


def test_bad_ids_dead_letter_the_item(store: Any) -> None:
    request = sdk_spans("svc", traces=1, children=1)
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x01\x02\x03"
    _write(store, [Record("traces", "otlp_proto", request.SerializeToString(), "kafka", "spans", 0, 5)])
    assert _count(store) == 1
    assert [d[2] for d in _dead(store)] == ["invalid_id"]


def test_oversized_attributes_and_bodies_are_truncated_with_a_marker(store: Any) -> None:
    spans = sdk_spans("svc", traces=1, children=0)
    spans.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="sql").value.string_value = "é" * 5000
    _write(store, [Record("traces", "otlp_proto", spans.SerializeToString(), "kafka", "spans", 0, 1)])
    value = store.scalar(f"SELECT SpanAttributes['sql'] FROM {store.table(s.TRACES)}")
    assert value == "é" * 100 + "…[truncated 9800 bytes]"

    logs = sdk_logs("svc", 1)
    logs.resource_logs[0].scope_logs[0].log_records[0].body.string_value = "x" * 70
    _write(
        store,
        [Record("logs", "otlp_json", json.dumps(from_proto("logs", logs)).encode(), "kafka", "l", 0, 1)],
        "logs",
    )
    assert store.scalar(f"SELECT Body FROM {store.table(s.LOGS)}") == "x" * 50 + "…[truncated 20 bytes]"


def test_a_retried_batch_is_not_duplicated(store: Any) -> None:
    writer = NativeWriter(store, LIMITS, lambda: NOW)
    batch = [
        writer.prepare(
            Record("traces", "otlp_proto", sdk_spans("svc", 5).SerializeToString(), "kafka", "x", 0, 1)
        )
    ]
    token = f"retry-{time.time_ns()}"
    writer.write("traces", batch, token)
    writer.write("traces", batch, token)
    assert _count(store) == 15
    assert int(store.scalar(f"SELECT count() FROM {store.table(s.TRACE_ID_TS)}")) == 5


def test_a_retried_metrics_batch_is_not_duplicated_through_the_points_view(store: Any) -> None:
    from tests.otlp_builders import sdk_metrics

    writer = NativeWriter(store, LIMITS, lambda: NOW)
    request = sdk_metrics("svc", 3)
    batch = [writer.prepare(Record("metrics", "otlp_proto", request.SerializeToString(), "kafka", "m", 0, 1))]
    token = f"retry-metrics-{time.time_ns()}"
    writer.write("metrics", batch, token)
    writer.write("metrics", batch, token)
    counts = [
        int(store.scalar(f"SELECT count() FROM {store.table(t)}")) for t in (s.GAUGE, s.SUM, s.HISTOGRAM)
    ]
    assert counts == [3, 3, 3]
