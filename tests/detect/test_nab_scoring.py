"""The NAB scorer: hand-checked rules on tiny corpora, and the published windowed-Gaussian figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from detect.nab.bench import run_detector
from detect.nab.corpus import NabFile, load_corpus, probation_length
from detect.nab.scoring import PROFILES, normalise, scaled_sigmoid, score_corpus, score_profiles


def make_file(name: str, n: int, windows: tuple[tuple[int, int], ...]) -> NabFile:
    stamps = np.arange(n).astype("datetime64[s]")
    return NabFile(name, stamps, np.zeros(n), windows)


def test_probation_length_matches_nab() -> None:
    assert probation_length(4032) == 604.0
    assert probation_length(22695) == 750.0
    assert probation_length(1127) == 169.0


def test_scaled_sigmoid_values() -> None:
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(3.5)) == -1.0


def test_earliest_detection_in_window_earns_full_tp_and_only_first_counts() -> None:
    f = make_file("cat/a.csv", 1000, ((500, 599),))
    s = np.zeros(1000)
    s[[500, 520, 590]] = 0.9
    res = score_corpus([f], {f.name: s}, "standard")
    # -(599 - 500 + 1)/100 = -1 -> exactly A_TP; the later detections in the window add nothing.
    assert res.raw == pytest.approx(1.0)
    assert res.score == pytest.approx(100.0)
    assert res.tp == 3 and res.fp == 0


def test_false_positives_before_and_after_windows() -> None:
    f = make_file("cat/a.csv", 1000, ((500, 599),))
    s = np.zeros(1000)
    s[300] = 0.9  # before any window: -A_FP
    s[650] = 0.9  # 51 rows after the window: sigma(51/99) * A_FP
    res = score_corpus([f], {f.name: s}, "standard")
    expected_fp = -0.11 + 0.11 * float(scaled_sigmoid(51 / 99))
    # With only FPs available the optimiser prefers detecting nothing (-A_FN for the missed window).
    assert res.raw == pytest.approx(-1.0)
    s[[300, 650]] = 0.99
    s[550] = 0.95
    res = score_corpus([f], {f.name: s}, "standard")
    tp = float(scaled_sigmoid(-(599 - 550 + 1) / 100) / scaled_sigmoid(-1.0))
    assert res.threshold == 0.95
    assert res.raw == pytest.approx(tp + expected_fp)
    assert (res.tp, res.fp) == (1, 2)


def test_probationary_rows_are_ignored() -> None:
    f = make_file("cat/a.csv", 1000, ((500, 599),))
    s = np.zeros(1000)
    s[:100] = 1.0  # inside the 150-row probation: never counted
    s[500] = 0.5
    res = score_corpus([f], {f.name: s}, "standard")
    assert res.fp == 0 and res.raw == pytest.approx(1.0)


def test_threshold_is_optimised_over_the_whole_corpus() -> None:
    a = make_file("x/a.csv", 1000, ((500, 599),))
    b = make_file("y/b.csv", 1000, ())
    sa, sb = np.zeros(1000), np.zeros(1000)
    sa[500] = 0.6
    sb[200:230] = 0.7  # 30 FPs at 0.7 in another file: detecting at 0.6 would cost 30 * 0.11 = 3.3
    res = score_corpus([a, b], {a.name: sa, b.name: sb}, "standard")
    assert res.threshold == 1.1 and res.raw == -1.0
    low_fn = score_corpus([a, b], {a.name: sa, b.name: sb}, "reward_low_FN_rate")
    assert low_fn.threshold == 1.1  # 1 + 2 gained < 3.3 lost


def test_normalise() -> None:
    assert normalise(-116.0, 116, PROFILES["standard"]) == 0.0
    assert normalise(116.0, 116, PROFILES["standard"]) == 100.0
    assert math.isclose(normalise(57.66, 116, PROFILES["standard"]), 74.853, abs_tol=1e-3)


def test_scores_must_be_valid() -> None:
    f = make_file("cat/a.csv", 10, ())
    from warroom.errors import InputError

    with pytest.raises(InputError):
        score_corpus([f], {f.name: np.full(10, 1.5)})
    with pytest.raises(InputError):
        score_corpus([f], {f.name: np.zeros(9)})


@pytest.mark.slow
def test_windowed_gaussian_reproduces_published_scores(nab_dir: Path) -> None:
    files = load_corpus(nab_dir)
    assert len(files) == 58 and sum(len(f) for f in files) == 365_558
    assert sum(len(f.windows) for f in files) == 116
    scores, _ = run_detector("windowed_gaussian", files)
    res = score_profiles(files, scores)
    published = json.loads((nab_dir / "results" / "final_results.json").read_text())["windowedGaussian"]
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert res[profile].score == pytest.approx(published[profile], abs=1.0)
    # In fact it is exact to the published precision.
    assert res["standard"].score == pytest.approx(39.65, abs=0.01)
    null = score_profiles(files, {f.name: np.full(len(f), 0.5) for f in files})
    assert all(r.score == 0.0 for r in null.values())
