"""Layer 2: PyOD models per service — scores in [0, 1], no look-ahead, JSON state round-trip."""

from __future__ import annotations

import json
import random

import pytest

from detect.ml import MlConfig, ServiceModel, feature_name
from warroom.errors import InputError
from warroom.model import SeriesKey, SignalKind


def _rows(n: int, seed: int = 3) -> list[dict[str, float | None]]:
    rng = random.Random(seed)
    return [
        {
            "request_rate": 50 + rng.gauss(0, 3),
            "error_ratio": 0.01 + rng.gauss(0, 0.002),
            "latency_p95": 120 + rng.gauss(0, 8),
            "metric{metric=process.cpu.utilization}": 0.3 + rng.gauss(0, 0.03),
        }
        for _ in range(n)
    ]


def _feed(model: ServiceModel, rows: list[dict[str, float | None]]) -> list[float | None]:
    out = []
    for r in rows:
        out.append(model.score(r))
        model.observe(r)
    return out


@pytest.mark.parametrize("models", [("ecod",), ("copod",), ("iforest",), ("ecod", "copod")])
def test_round_trip_gives_identical_scores(models: tuple[str, ...]) -> None:
    cfg = MlConfig(models=models, train_window=80, min_train=20, retrain_every=25, iforest_trees=25, seed=7)
    rows = _rows(140)
    a = ServiceModel(cfg)
    _feed(a, rows[:70])
    b = ServiceModel.from_json(a.to_json())
    assert b.to_json() == a.to_json()
    # the round-trip holds across later retrains too
    assert _feed(a, rows[70:]) == _feed(b, rows[70:])
    assert json.loads(a.to_json())["format"] == 1


def test_scores_in_unit_interval_and_outlier_high() -> None:
    cfg = MlConfig(models=("ecod", "copod"), min_train=30, train_window=120)
    m = ServiceModel(cfg)
    scores = _feed(m, _rows(120))
    assert scores[:29] == [None] * 29  # no model before min_train rows
    live = [s for s in scores if s is not None]
    assert all(0.0 <= s <= 1.0 for s in live)
    assert 0.2 < sum(live) / len(live) < 0.8  # normal rows: roughly uniform
    bad = dict(_rows(1, seed=99)[0], error_ratio=0.25, latency_p95=900.0)
    s = m.score(bad)
    assert s is not None and s > 0.95


def test_no_look_ahead() -> None:
    cfg = MlConfig(min_train=20, train_window=60, retrain_every=10)
    rows = _rows(100)
    other = rows[:60] + _rows(40, seed=11)
    other[70]["error_ratio"] = 0.9
    a = _feed(ServiceModel(cfg), rows)
    b = _feed(ServiceModel(cfg), other)
    assert a[:60] == b[:60]  # a prefix's scores do not depend on what comes later


def test_missing_features_are_imputed() -> None:
    m = ServiceModel(MlConfig(min_train=20))
    rows = _rows(40)
    for i, r in enumerate(rows):
        if i % 4 == 0:
            r["latency_p95"] = None
        if i % 5 == 0:
            r["request_rate"] = float("nan")
    _feed(m, rows)
    assert m.fitted and "latency_p95" in m.columns
    s = m.score({"error_ratio": 0.01})  # everything else missing: imputed with the training median
    assert s is not None and 0.0 <= s <= 1.0
    # a feature present in fewer than half the training rows is left out
    m2 = ServiceModel(MlConfig(min_train=20))
    _feed(m2, [dict(r, rare=1.0) if i < 5 else r for i, r in enumerate(_rows(30))])
    assert "rare" not in m2.columns


def test_constant_features_and_flagged_rows() -> None:
    m = ServiceModel(MlConfig(min_train=10, retrain_every=5))
    for _ in range(12):
        m.observe({"error_ratio": 0.0, "request_rate": 10.0})
    assert m.score({"error_ratio": 0.0, "request_rate": 10.0}) is not None
    steps = m.steps
    m.observe({"error_ratio": 0.5, "request_rate": 10.0}, learn=False)  # flagged: not learnt
    assert m.steps == steps + 1
    assert all(r["error_ratio"] == 0.0 for r in json.loads(m.to_json())["buffer"])


def test_bad_config_and_state() -> None:
    with pytest.raises(InputError, match="unknown L2 model"):
        MlConfig(models=("lof",))
    with pytest.raises(InputError):
        MlConfig(min_train=2)
    with pytest.raises(InputError, match="not JSON"):
        ServiceModel.from_json("{")
    with pytest.raises(InputError, match="format"):
        ServiceModel.from_json('{"format": 99}')


def test_feature_name() -> None:
    assert feature_name(SeriesKey(SignalKind.ERROR_RATIO, "checkout")) == "error_ratio"
    key = SeriesKey(SignalKind.METRIC, "checkout", (("metric", "process.cpu.utilization"),))
    assert feature_name(key) == "metric{metric=process.cpu.utilization}"
