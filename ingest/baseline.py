"""A deliberately naive ingest path, kept only as the benchmark's baseline.

It is what a first implementation usually looks like: convert each request to Python dicts
(``MessageToDict``), build one dict per span / log record / point, and insert row-oriented data
once per Kafka record. ``warroom bench ingest`` runs it in the same invocation as the real path
so the speed-up is measured, not claimed. Not used by the product.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.json_format import MessageToDict

from ingest.otlp_parse import parse
from warroom import schema as s
from warroom.clickhouse import ClickHouse


def _attrs(kvs: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for kv in kvs or []:
        value = kv.get("value", {})
        text = next(iter(value.values()), "") if value else ""
        out[kv["key"]] = text if isinstance(text, str) else json.dumps(text)
    return dict(sorted(out.items()))


def _hex(b64: str | None) -> str:
    return base64.b64decode(b64).hex() if b64 else ""


def span_rows(request: Any) -> list[dict[str, Any]]:
    data = MessageToDict(request, preserving_proto_field_name=True)
    rows = []
    for rs in data.get("resource_spans", []):
        res = _attrs(rs.get("resource", {}).get("attributes", []))
        for ss in rs.get("scope_spans", []):
            scope = ss.get("scope", {})
            for sp in ss.get("spans", []):
                start, end = int(sp.get("start_time_unix_nano", 0)), int(sp.get("end_time_unix_nano", 0))
                rows.append(
                    {
                        "Timestamp": start,
                        "TraceId": _hex(sp.get("trace_id")),
                        "SpanId": _hex(sp.get("span_id")),
                        "ParentSpanId": _hex(sp.get("parent_span_id")),
                        "TraceState": sp.get("trace_state", ""),
                        "SpanName": sp.get("name", ""),
                        "SpanKind": str(sp.get("kind", "")),
                        "ServiceName": res.get("service.name", ""),
                        "ResourceAttributes": res,
                        "ScopeName": scope.get("name", ""),
                        "ScopeVersion": scope.get("version", ""),
                        "SpanAttributes": _attrs(sp.get("attributes", [])),
                        "Duration": max(0, end - start),
                        "StatusCode": str(sp.get("status", {}).get("code", "")),
                        "StatusMessage": sp.get("status", {}).get("message", ""),
                    }
                )
    return rows


def log_rows(request: Any) -> list[dict[str, Any]]:
    data = MessageToDict(request, preserving_proto_field_name=True)
    rows = []
    for rl in data.get("resource_logs", []):
        res = _attrs(rl.get("resource", {}).get("attributes", []))
        for sl in rl.get("scope_logs", []):
            for lr in sl.get("log_records", []):
                body = lr.get("body", {})
                rows.append(
                    {
                        "Timestamp": int(lr.get("time_unix_nano", 0) or lr.get("observed_time_unix_nano", 0)),
                        "TraceId": _hex(lr.get("trace_id")),
                        "SpanId": _hex(lr.get("span_id")),
                        "SeverityText": lr.get("severity_text", ""),
                        "SeverityNumber": 0,
                        "ServiceName": res.get("service.name", ""),
                        "Body": str(next(iter(body.values()), "")) if body else "",
                        "ResourceAttributes": res,
                        "LogAttributes": _attrs(lr.get("attributes", [])),
                    }
                )
    return rows


def gauge_rows(request: Any) -> list[dict[str, Any]]:
    data = MessageToDict(request, preserving_proto_field_name=True)
    rows = []
    for rm in data.get("resource_metrics", []):
        res = _attrs(rm.get("resource", {}).get("attributes", []))
        for sm in rm.get("scope_metrics", []):
            for metric in sm.get("metrics", []):
                body = metric.get("gauge") or metric.get("sum") or {}
                for dp in body.get("data_points", []):
                    rows.append(
                        {
                            "ResourceAttributes": res,
                            "ServiceName": res.get("service.name", ""),
                            "MetricName": metric.get("name", ""),
                            "Attributes": _attrs(dp.get("attributes", [])),
                            "TimeUnix": int(dp.get("time_unix_nano", 0)) // 10**9,
                            "Value": float(dp.get("as_double", dp.get("as_int", 0))),
                        }
                    )
    return rows


ROWS = {"traces": (s.TRACES, span_rows), "logs": (s.LOGS, log_rows), "metrics": (s.GAUGE, gauge_rows)}


def insert_record(store: ClickHouse, signal: str, encoding: str, payload: bytes) -> int:
    """Decode one record into dict rows and insert them row-oriented; returns rows inserted."""
    table, to_rows = ROWS[signal]
    rows = to_rows(parse(signal, encoding, payload))
    if not rows:
        return 0
    names = list(rows[0])
    store.client.insert(
        table, [[row[n] for n in names] for row in rows], column_names=names, database=store.database
    )
    return len(rows)


def decode_record(signal: str, encoding: str, payload: bytes) -> int:
    return len(ROWS[signal][1](parse(signal, encoding, payload)))
