"""``warroom bench soak``: the bench itself works end to end, and its replay keeps the data coherent.

The end-to-end test runs the real command for seconds, not minutes: it checks that the bench
starts ``warroom up`` twice (idle, then with traffic), samples it, stops it cleanly and finds every
produced item in the store — not that the product is leak-free, which takes the full soak.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.bench_soak import Sample, fifths, retime, scenario_cycle, slope_per_min
from tests.conftest import WARROOM

KEYS = {
    "duration_s",
    "rate_per_s",
    "rss_mb_start",
    "rss_mb_end",
    "rss_mb_max",
    "rss_slope_mb_per_min",
    "baseline_rss_slope_mb_per_min",
    "max_lag",
    "error_logs",
    "produced",
    "stored",
    "curve",
}


def test_slope_is_a_least_squares_fit_in_mb_per_minute() -> None:
    assert slope_per_min([(0, 100), (30, 101), (60, 102)]) == 2.0
    assert slope_per_min([(0, 100), (60, 100)]) == 0.0
    assert slope_per_min([(0, 100)]) is None


def test_fifths_are_medians_so_a_burst_does_not_move_them() -> None:
    # 600 s, one sample every 10 s: 500 MB, then 510 MB from the last fifth, with one 900 MB burst.
    samples = [Sample(t=t, rss_mb=500.0 if t < 480 else 510.0, lag=0) for t in range(0, 600, 10)]
    samples[50] = Sample(t=500, rss_mb=900.0, lag=0)
    figures = fifths(samples, 600)
    assert figures["rss_mb_median_by_fifth"] == [500.0, 500.0, 500.0, 500.0, 510.0]
    assert figures["rss_growth_last_fifth_mb_per_min"] == 5.0  # 10 MB over a 2-minute fifth
    assert fifths(samples[:3], 600)["rss_growth_last_fifth_mb_per_min"] is None


def test_retime_shifts_every_timestamp_and_renames_ids_consistently() -> None:
    cycle = scenario_cycle("bad_deploy", 1.0, 2)
    delta = 3_600 * 10**9
    by_signal = {r.signal: r.payload for r in cycle}
    traces = ExportTraceServiceRequest.FromString(by_signal["traces"])
    moved = ExportTraceServiceRequest.FromString(retime("traces", by_signal["traces"], delta, 3))
    spans = [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
    new = [s for rs in moved.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert [s.start_time_unix_nano + delta for s in spans] == [s.start_time_unix_nano for s in new]
    assert [s.end_time_unix_nano + delta for s in spans] == [s.end_time_unix_nano for s in new]
    assert all(a.trace_id != b.trace_id and a.span_id != b.span_id for a, b in zip(spans, new, strict=True))
    # one old trace is one new trace, and children still point at their (renamed) parents
    assert len({(a.trace_id, b.trace_id) for a, b in zip(spans, new, strict=True)}) == len(
        {a.trace_id for a in spans}
    )
    renamed = {a.span_id: b.span_id for a, b in zip(spans, new, strict=True)}
    linked = [(a, b) for a, b in zip(spans, new, strict=True) if a.parent_span_id in renamed]
    assert linked
    assert all(b.parent_span_id == renamed[a.parent_span_id] for a, b in linked)
    assert all(not b.parent_span_id for a, b in zip(spans, new, strict=True) if not a.parent_span_id)

    logs = ExportLogsServiceRequest.FromString(retime("logs", by_signal["logs"], delta, 0))
    old_logs = ExportLogsServiceRequest.FromString(by_signal["logs"])
    times = [r.time_unix_nano for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    old = [r.time_unix_nano for rl in old_logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    assert times == [t + delta for t in old]

    metrics = ExportMetricsServiceRequest.FromString(retime("metrics", by_signal["metrics"], delta, 1))
    old_metrics = ExportMetricsServiceRequest.FromString(by_signal["metrics"])

    def points(request: ExportMetricsServiceRequest) -> list[int]:
        return [
            p.time_unix_nano
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            for p in getattr(m, m.WhichOneof("data")).data_points
        ]

    assert points(metrics) == [t + delta for t in points(old_metrics)]


@pytest.mark.integration
@pytest.mark.slow
def test_a_short_soak_runs_end_to_end_and_stores_all_it_produced() -> None:
    started = time.monotonic()
    out = subprocess.run(
        [
            WARROOM,
            "bench",
            "soak",
            "--duration",
            "15",
            "--rate",
            "5",
            "--sample-every",
            "2",
            "--baseline",
            "3",
        ]
        + ["--json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS <= figures.keys()
    assert figures["produced"] > 0
    assert figures["stored"] == figures["produced"]
    assert figures["error_logs"] == 0
    assert len(figures["curve"]) >= 5
    assert all(len(point) == 3 and point[1] > 0 for point in figures["curve"])
    assert "RSS slope, 2nd half (MB/min)" in out.stdout
    assert time.monotonic() - started < 200
