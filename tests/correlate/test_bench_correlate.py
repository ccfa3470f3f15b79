"""``warroom bench correlate``: its metrics on hand-made examples, and the CLI's JSON contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.bench_correlate import (
    PairScores,
    accuracy_at,
    compression,
    main_incident,
    pairwise,
    run_baseline,
    score,
)
from app.cli import cli
from fixtures.alert_stream import AlertStream, TrueGroup
from warroom.model import Alert, Severity

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_pairwise_on_a_known_example() -> None:
    # truth: {a, b, c} and {d, e}; predicted: {a, b} and {c, d, e}
    truth = {"a": "F1", "b": "F1", "c": "F1", "d": "F2", "e": "F2"}
    predicted = {"a": "i1", "b": "i1", "c": "i2", "d": "i2", "e": "i2"}
    scores = pairwise(predicted, truth)
    # predicted pairs: ab, cd, ce, de (4); true pairs: ab, ac, bc, de (4); shared: ab, de (2)
    assert scores.precision == pytest.approx(0.5)
    assert scores.recall == pytest.approx(0.5)
    assert scores.f1 == pytest.approx(0.5)


def test_pairwise_edges() -> None:
    singletons = {"a": "n1", "b": "n2"}
    assert pairwise({"a": "i1", "b": "i2"}, singletons) == PairScores(1.0, 1.0, 1.0)
    merged = pairwise({"a": "i1", "b": "i1"}, singletons)
    assert merged.precision == 0.0 and merged.recall == 1.0 and merged.f1 == 0.0
    perfect = pairwise({"a": "x", "b": "x", "c": "y"}, {"a": "F", "b": "F", "c": "G"})
    assert perfect.f1 == pytest.approx(1.0)


def test_compression_and_accuracy_at_k() -> None:
    assert compression(120, 12) == pytest.approx(10.0)
    assert compression(5, 0) == 0.0
    ranked = {"F1": ["db", "api"], "F2": ["api", "web", "db"], "F3": ["web"]}
    roots = {"F1": "db", "F2": "db", "F3": "cache"}
    assert accuracy_at(1, ranked, roots) == pytest.approx(1 / 3)
    assert accuracy_at(3, ranked, roots) == pytest.approx(2 / 3)
    assert accuracy_at(1, ranked, {}) == 0.0
    assert main_incident({"a": "i1", "b": "i2", "c": "i2"}, ["a", "b", "c"]) == "i2"
    assert main_incident({"a": "i1", "b": "i2"}, ["a", "b"]) == "i1"  # tie: the first one seen


def _alert(fp: str, service: str, minutes: float) -> Alert:
    return Alert(
        fp,
        f"{service} error ratio high",
        Severity.WARNING,
        T0 + timedelta(minutes=minutes),
        labels={"service": service},
    )


def test_baseline_groups_by_service_within_five_minutes() -> None:
    alerts = (
        _alert("a", "db", 0),
        _alert("b", "api", 1),
        _alert("c", "db", 4),
        _alert("d", "db", 10),  # 6 minutes after c: a new group
    )
    truth = {(a.fingerprint, a.starts_at): "F1" for a in alerts}
    groups = {"F1": TrueGroup("F1", "latency", "db", T0)}
    stream = AlertStream(alerts, truth, groups)
    run = run_baseline(stream)
    ids = [run.predicted[(a.fingerprint, a.starts_at)] for a in alerts]
    assert ids[0] == ids[2] and len(set(ids)) == 3
    figures = score(run, stream)
    assert figures["compression"] == pytest.approx(4 / 3)
    assert figures["ac1"] == 1.0  # the main group (a, c) is db's: root db
    assert figures["recall"] == pytest.approx(1 / 6)


def test_cli_json_last_line_has_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "stream"
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "correlate",
            "--rounds",
            "1",
            "--load-rate",
            "200",
            "--load-minutes",
            "2",
            "--write-stream",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    for key in (
        "f1",
        "precision",
        "recall",
        "compression",
        "ac1",
        "ac3",
        "baseline_f1",
        "baseline_compression",
        "baseline_ac1",
        "baseline_ac3",
        "p99_decision_ms",
        "decisions_per_s",
        "alerts",
        "incidents",
        "faults",
    ):
        assert key in figures, key
    assert figures["faults"] == 12
    # The written stream scores the same when read back.
    again = CliRunner().invoke(
        cli,
        [
            "bench",
            "correlate",
            "--alerts",
            str(out / "alerts.jsonl"),
            "--truth",
            str(out / "truth.json"),
            "--load-minutes",
            "0",
            "--json",
        ],
    )
    assert again.exit_code == 0, again.output
    replayed = json.loads(again.output.strip().splitlines()[-1])
    for key in ("f1", "compression", "ac1", "ac3", "baseline_f1", "alerts", "faults"):
        assert replayed[key] == figures[key], key
