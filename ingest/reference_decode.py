"""The Python reference decoder: OTLP requests → column-wise rows of the exporter tables.

Production ingest decodes inside ClickHouse (:mod:`ingest.native_sql`); this module states the same
mapping in plain Python. A differential test feeds both the same requests and compares the rows, and
``warroom bench ingest`` reports it as the "python columnar" figure. Items are appended straight into
per-table column lists — no per-row dicts.

Normalisation rules (documented in README, "Ingest rules"):

* **Undecodable record** (truncated protobuf, invalid UTF-8, malformed JSON, not an OTLP request):
  the whole record is dead-lettered with its raw bytes; nothing of it is stored.
* **Invalid item** (a span/log/point with a missing timestamp, a timestamp beyond
  ``max_future_skew_s`` in the future, or ids of the wrong length): that item alone is
  dead-lettered, re-encoded as a one-item request with its resource and scope, so replaying the
  dead letter reproduces it exactly; the record's other items are stored.
* **Empty request** (no resources, or resources without items): accepted, stores nothing.
* A log record without ``time_unix_nano`` takes ``observed_time_unix_nano`` (OTel data model).
* A span whose end precedes its start gets ``Duration`` 0.
* Attribute values and log bodies over the configured byte limits are truncated with a marker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogsData, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, TracesData

from ingest.otlp_parse import Limits, parse
from ingest.otlp_values import any_value_str, attributes
from warroom import schema as s
from warroom.errors import DecodeError

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class Reject:
    """An item (or a whole record, ``item`` False) that goes to the dead-letter table."""

    signal: str
    reason: str
    error: str
    raw: bytes
    item: bool


class Columns:
    """Column lists for one table, appended to by the decoder and handed to the insert as is."""

    __slots__ = ("names", "data")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.data: list[list[Any]] = [[] for _ in names]

    def __len__(self) -> int:
        return len(self.data[0])

    def extend(self, other: Columns) -> None:
        for mine, theirs in zip(self.data, other.data, strict=True):
            mine.extend(theirs)


def new_tables(signal: str) -> dict[str, Columns]:
    tables = TABLES_BY_SIGNAL[signal]
    return {t: Columns(s.COLUMNS[t]) for t in tables}


TABLES_BY_SIGNAL: dict[str, tuple[str, ...]] = {
    "traces": (s.TRACES,),
    "logs": (s.LOGS,),
    "metrics": s.METRIC_TABLES,
}


def _hex_id(raw: bytes, size: int) -> str | None:
    """Lowercase hex, '' for empty/all-zero ids; None when the length is wrong."""
    n = len(raw)
    if n == size:
        text = raw.hex()
        return "" if text == (_ZERO_TRACE if size == 16 else _ZERO_SPAN) else text
    return "" if n == 0 else None


class Decoder:
    """Turns requests into rows. One instance per worker; cheap to call per record."""

    def __init__(self, limits: Limits, now_ns: Callable[[], int], max_depth: int | None = None) -> None:
        self.limits = limits
        self.now_ns = now_ns
        self.max_depth = max_depth

    def decode(
        self, signal: str, encoding: str, payload: bytes, tables: dict[str, Columns]
    ) -> tuple[int, list[Reject]]:
        """Append the record's rows to ``tables``; return (items stored, rejects)."""
        try:
            request = parse(signal, encoding, payload)
        except DecodeError as exc:
            return 0, [Reject(signal, exc.reason, str(exc), payload, item=False)]
        return self.flatten(signal, request, tables)

    def flatten(self, signal: str, request: Any, tables: dict[str, Columns]) -> tuple[int, list[Reject]]:
        rejects: list[Reject] = []
        if signal == "traces":
            n = self._spans(request, tables[s.TRACES], rejects)
        elif signal == "logs":
            n = self._logs(request, tables[s.LOGS], rejects)
        else:
            n = self._metrics(request, tables, rejects)
        return n, rejects

    def _time_problem(self, ts: int) -> str | None:
        if ts <= 0:
            return "timestamp_missing"
        if ts > self.now_ns() + self.limits.max_future_skew_ns:
            return "timestamp_in_future"
        return None

    # -- traces ---------------------------------------------------------------------------------

    def _spans(self, request: Any, cols: Columns, rejects: list[Reject]) -> int:
        lim = self.limits.max_attr_value_chars
        (
            ts_c,
            tid_c,
            sid_c,
            psid_c,
            tstate_c,
            name_c,
            kind_c,
            svc_c,
            rattr_c,
            sname_c,
            sver_c,
            attr_c,
            dur_c,
            status_c,
            smsg_c,
            ev_ts_c,
            ev_name_c,
            ev_attr_c,
            ln_tid_c,
            ln_sid_c,
            ln_state_c,
            ln_attr_c,
        ) = cols.data
        horizon = self.now_ns() + self.limits.max_future_skew_ns
        stored = 0
        for rs in request.resource_spans:
            res = attributes(rs.resource.attributes, lim, self.max_depth)
            service = res.get("service.name", "")
            for ss in rs.scope_spans:
                scope = ss.scope
                scope_name, scope_version = scope.name, scope.version
                for span in ss.spans:
                    start = span.start_time_unix_nano
                    trace_id = _hex_id(span.trace_id, 16)
                    span_id = _hex_id(span.span_id, 8)
                    parent_id = _hex_id(span.parent_span_id, 8)
                    problem = None
                    if start <= 0 or start > horizon:
                        problem = self._time_problem(start)
                    elif trace_id is None or span_id is None or parent_id is None:
                        problem = "invalid_id"
                    if problem:
                        rejects.append(_reject_span(rs, ss, span, problem))
                        continue
                    end = span.end_time_unix_nano
                    ts_c.append(start)
                    tid_c.append(trace_id)
                    sid_c.append(span_id)
                    psid_c.append(parent_id)
                    tstate_c.append(span.trace_state)
                    name_c.append(span.name)
                    kind = span.kind
                    kind_c.append(SPAN_KINDS[kind] if 0 <= kind < 6 else "Unspecified")
                    svc_c.append(service)
                    rattr_c.append(res)
                    sname_c.append(scope_name)
                    sver_c.append(scope_version)
                    attr_c.append(attributes(span.attributes, lim, self.max_depth))
                    dur_c.append(end - start if end > start else 0)
                    status = span.status
                    code = status.code
                    status_c.append(STATUS_CODES[code] if 0 <= code < 3 else "Unset")
                    smsg_c.append(status.message)
                    events = span.events
                    if events:
                        ev_ts_c.append([e.time_unix_nano for e in events])
                        ev_name_c.append([e.name for e in events])
                        ev_attr_c.append([attributes(e.attributes, lim, self.max_depth) for e in events])
                    else:
                        ev_ts_c.append([])
                        ev_name_c.append([])
                        ev_attr_c.append([])
                    links = span.links
                    if links:
                        ln_tid_c.append([_hex_id(link.trace_id, 16) or "" for link in links])
                        ln_sid_c.append([_hex_id(link.span_id, 8) or "" for link in links])
                        ln_state_c.append([link.trace_state for link in links])
                        ln_attr_c.append([attributes(link.attributes, lim, self.max_depth) for link in links])
                    else:
                        ln_tid_c.append([])
                        ln_sid_c.append([])
                        ln_state_c.append([])
                        ln_attr_c.append([])
                    stored += 1
        return stored

    # -- logs -----------------------------------------------------------------------------------

    def _logs(self, request: Any, cols: Columns, rejects: list[Reject]) -> int:
        lim = self.limits.max_attr_value_chars
        body_lim = self.limits.max_body_chars
        (
            ts_c,
            tid_c,
            sid_c,
            flags_c,
            stext_c,
            snum_c,
            svc_c,
            body_c,
            rschema_c,
            rattr_c,
            sschema_c,
            sname_c,
            sver_c,
            sattr_c,
            attr_c,
            event_c,
        ) = cols.data
        horizon = self.now_ns() + self.limits.max_future_skew_ns
        stored = 0
        for rl in request.resource_logs:
            res = attributes(rl.resource.attributes, lim, self.max_depth)
            service = res.get("service.name", "")
            res_schema = rl.schema_url
            for sl in rl.scope_logs:
                scope = sl.scope
                scope_attrs = attributes(scope.attributes, lim, self.max_depth)
                scope_name, scope_version, scope_schema = scope.name, scope.version, sl.schema_url
                for record in sl.log_records:
                    ts = record.time_unix_nano or record.observed_time_unix_nano
                    trace_id = _hex_id(record.trace_id, 16)
                    span_id = _hex_id(record.span_id, 8)
                    problem = None
                    if ts <= 0 or ts > horizon:
                        problem = self._time_problem(ts)
                    elif trace_id is None or span_id is None:
                        problem = "invalid_id"
                    if problem:
                        rejects.append(_reject_log(rl, sl, record, problem))
                        continue
                    ts_c.append(ts)
                    tid_c.append(trace_id)
                    sid_c.append(span_id)
                    flags_c.append(record.flags & 0xFF)
                    stext_c.append(record.severity_text)
                    number = record.severity_number
                    snum_c.append(number if 0 <= number <= 255 else 0)
                    svc_c.append(service)
                    body_c.append(any_value_str(record.body, body_lim, self.max_depth))
                    rschema_c.append(res_schema)
                    rattr_c.append(res)
                    sschema_c.append(scope_schema)
                    sname_c.append(scope_name)
                    sver_c.append(scope_version)
                    sattr_c.append(scope_attrs)
                    attr_c.append(attributes(record.attributes, lim, self.max_depth))
                    event_c.append(record.event_name)
                    stored += 1
        return stored

    # -- metrics --------------------------------------------------------------------------------

    def _metrics(self, request: Any, tables: dict[str, Columns], rejects: list[Reject]) -> int:
        lim = self.limits.max_attr_value_chars
        horizon = self.now_ns() + self.limits.max_future_skew_ns
        stored = 0
        for rm in request.resource_metrics:
            res = attributes(rm.resource.attributes, lim, self.max_depth)
            service = res.get("service.name", "")
            res_schema = rm.schema_url
            for sm in rm.scope_metrics:
                scope = sm.scope
                scope_attrs = attributes(scope.attributes, lim, self.max_depth)
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    body = getattr(metric, kind)
                    table = _METRIC_TABLE[kind]
                    cols = tables[table].data
                    head = (
                        res,
                        res_schema,
                        scope.name,
                        scope.version,
                        scope_attrs,
                        scope.dropped_attributes_count,
                        sm.schema_url,
                        service,
                        metric.name,
                        metric.description,
                        metric.unit,
                    )
                    temporality = getattr(body, "aggregation_temporality", 0)
                    for dp in body.data_points:
                        ts = dp.time_unix_nano
                        if ts <= 0 or ts > horizon:
                            problem = self._time_problem(ts)
                            rejects.append(_reject_point(rm, sm, metric, kind, dp, problem or "timestamp"))
                            continue
                        for column, value in zip(cols, head, strict=False):
                            column.append(value)
                        cols[11].append(attributes(dp.attributes, lim, self.max_depth))
                        cols[12].append(dp.start_time_unix_nano // 1_000_000_000)
                        cols[13].append(ts // 1_000_000_000)
                        _POINT_WRITERS[kind](cols, dp, body, temporality, lim, self.max_depth)
                        stored += 1
        return stored


def _exemplars(cols: list[list[Any]], at: int, dp: Any, lim: int, max_depth: int | None) -> None:
    exemplars = dp.exemplars
    if not exemplars:
        for i in range(at, at + 5):
            cols[i].append([])
        return
    cols[at].append([attributes(e.filtered_attributes, lim, max_depth) for e in exemplars])
    cols[at + 1].append([e.time_unix_nano // 1_000_000_000 for e in exemplars])
    cols[at + 2].append(
        [e.as_double if e.WhichOneof("value") == "as_double" else float(e.as_int) for e in exemplars]
    )
    cols[at + 3].append([_hex_id(e.span_id, 8) or "" for e in exemplars])
    cols[at + 4].append([_hex_id(e.trace_id, 16) or "" for e in exemplars])


def _number(dp: Any) -> float:
    return float(dp.as_int) if dp.WhichOneof("value") == "as_int" else dp.as_double


def _write_gauge(
    cols: list[list[Any]], dp: Any, body: Any, temporality: int, lim: int, depth: int | None
) -> None:
    cols[14].append(_number(dp))
    cols[15].append(dp.flags)
    _exemplars(cols, 16, dp, lim, depth)


def _write_sum(
    cols: list[list[Any]], dp: Any, body: Any, temporality: int, lim: int, depth: int | None
) -> None:
    _write_gauge(cols, dp, body, temporality, lim, depth)
    cols[21].append(temporality)
    cols[22].append(bool(body.is_monotonic))


def _write_histogram(
    cols: list[list[Any]], dp: Any, body: Any, temporality: int, lim: int, depth: int | None
) -> None:
    cols[14].append(dp.count)
    cols[15].append(dp.sum)
    cols[16].append(list(dp.bucket_counts))
    cols[17].append(list(dp.explicit_bounds))
    _exemplars(cols, 18, dp, lim, depth)
    cols[23].append(dp.flags)
    cols[24].append(dp.min)
    cols[25].append(dp.max)
    cols[26].append(temporality)


def _write_exp_histogram(
    cols: list[list[Any]], dp: Any, body: Any, temporality: int, lim: int, depth: int | None
) -> None:
    cols[14].append(dp.count)
    cols[15].append(dp.sum)
    cols[16].append(dp.scale)
    cols[17].append(dp.zero_count)
    cols[18].append(dp.positive.offset)
    cols[19].append(list(dp.positive.bucket_counts))
    cols[20].append(dp.negative.offset)
    cols[21].append(list(dp.negative.bucket_counts))
    _exemplars(cols, 22, dp, lim, depth)
    cols[27].append(dp.flags)
    cols[28].append(dp.min)
    cols[29].append(dp.max)
    cols[30].append(temporality)


def _write_summary(
    cols: list[list[Any]], dp: Any, body: Any, temporality: int, lim: int, depth: int | None
) -> None:
    cols[14].append(dp.count)
    cols[15].append(dp.sum)
    quantiles = dp.quantile_values
    cols[16].append([q.quantile for q in quantiles])
    cols[17].append([q.value for q in quantiles])
    cols[18].append(dp.flags)


_METRIC_TABLE = {
    "gauge": s.GAUGE,
    "sum": s.SUM,
    "histogram": s.HISTOGRAM,
    "exponential_histogram": s.EXP_HISTOGRAM,
    "summary": s.SUMMARY,
}
_POINT_WRITERS: dict[str, Callable[[list[list[Any]], Any, Any, int, int, int | None], None]] = {
    "gauge": _write_gauge,
    "sum": _write_sum,
    "histogram": _write_histogram,
    "exponential_histogram": _write_exp_histogram,
    "summary": _write_summary,
}


# -- one-item requests for dead letters ----------------------------------------------------------


def _reject_span(rs: Any, ss: Any, span: Any, reason: str) -> Reject:
    one = TracesData(
        resource_spans=[
            ResourceSpans(
                resource=rs.resource,
                schema_url=rs.schema_url,
                scope_spans=[ScopeSpans(scope=ss.scope, schema_url=ss.schema_url, spans=[span])],
            )
        ]
    )
    return Reject(
        "traces", reason, _explain(reason, span.start_time_unix_nano), one.SerializeToString(), True
    )


def _reject_log(rl: Any, sl: Any, record: Any, reason: str) -> Reject:
    one = LogsData(
        resource_logs=[
            ResourceLogs(
                resource=rl.resource,
                schema_url=rl.schema_url,
                scope_logs=[ScopeLogs(scope=sl.scope, schema_url=sl.schema_url, log_records=[record])],
            )
        ]
    )
    ts = record.time_unix_nano or record.observed_time_unix_nano
    return Reject("logs", reason, _explain(reason, ts), one.SerializeToString(), True)


def _reject_point(rm: Any, sm: Any, metric: Any, kind: str, dp: Any, reason: str) -> Reject:
    single = type(metric)()
    single.CopyFrom(metric)
    points = getattr(single, kind).data_points
    del points[:]
    points.add().CopyFrom(dp)
    one = MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=rm.resource,
                schema_url=rm.schema_url,
                scope_metrics=[ScopeMetrics(scope=sm.scope, schema_url=sm.schema_url, metrics=[single])],
            )
        ]
    )
    return Reject("metrics", reason, _explain(reason, dp.time_unix_nano), one.SerializeToString(), True)


def _explain(reason: str, ts: int) -> str:
    if reason == "timestamp_missing":
        return "item has no timestamp (0)"
    if reason == "timestamp_in_future":
        return f"item timestamp {ts} ns is beyond the allowed future skew"
    if reason == "invalid_id":
        return "trace id must be 16 bytes and span ids 8 bytes"
    return reason


__all__ = ["Columns", "Decoder", "Reject", "TABLES_BY_SIGNAL", "new_tables"]
