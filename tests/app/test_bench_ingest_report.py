"""``warroom bench ingest --workers 1,2`` reports: the scaling keys beside the existing ones.

The figures come from a real run (minutes); this checks only how a run's results are reported, so
the JSON keys the README documents stay stable without running the benchmark in the suite.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.bench_ingest import _print
from app.cli import cli


def _e2e(per_s: float) -> dict[str, float]:
    return {"items": 1000, "stored": 1000, "per_s": per_s, "per_cpu_s": per_s / 2, "peak_rss_mb": 100.0}


def test_json_has_the_old_keys_and_per_worker_figures(capsys: pytest.CaptureFixture[str]) -> None:
    by_workers = {1: _e2e(1000.0), 2: _e2e(1800.0)}
    traces = {
        "e2e": by_workers[2],
        "e2e_by_workers": by_workers,
        "decode": {"per_s": 5000.0, "per_cpu_s": 5000.0},
        "baseline_e2e": {"items": 10, "per_s": 100.0, "per_cpu_s": 100.0},
        "baseline_decode": {"per_s": 400.0},
    }
    _print({"workers": [1, 2], "items_per_record": 1000, "traces": traces}, as_json=True)
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["spans_per_s"] == 1800.0  # the largest worker count, as before
    assert summary["workers"] == 2
    assert summary["spans_per_s_by_workers"] == {"1": 1000.0, "2": 1800.0}
    assert summary["spans_per_cpu_s_by_workers"] == {"1": 500.0, "2": 900.0}
    assert summary["scaling_2_vs_1"] == 1.8
    assert summary["cpu_efficiency_2_vs_1"] == 1.8
    assert summary["logs_per_s"] is None and summary["logs_per_s_by_workers"] is None
    for key in ("baseline_spans_per_s", "decode_spans_per_s", "spans_per_cpu_s", "peak_rss_mb"):
        assert key in summary
    assert "speed-up" in out and "1.80x" in out


def test_workers_must_be_a_list_of_integers() -> None:
    result = CliRunner().invoke(cli, ["bench", "ingest", "--workers", "1,two"])
    assert result.exit_code == 2
    assert "not a comma list of integers" in result.output
