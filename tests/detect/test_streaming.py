"""Layer-1 detectors find the three classic anomaly shapes on synthetic series."""

from __future__ import annotations

import math
import random
import time

import pytest

from detect.registry import BUILTINS, create
from detect.streaming.ensemble import SlidingMax
from detect.streaming.window import SortedWindow
from tests.detect.conftest import noisy_series


def run(name: str, xs: list[float], **params: object) -> list[float]:
    det = create(name, **params)
    return [det.update(i * 300.0, x) for i, x in enumerate(xs)]


def assert_detected(scores: list[float], at: int, warmup: int, lag: int = 10) -> None:
    before = max(scores[warmup:at])
    after = max(scores[at : at + lag])
    assert after > 0.5, f"anomaly at {at} scored only {after:.3f}"
    assert after > before + 0.1, f"no separation: {after:.3f} vs earlier max {before:.3f}"


def test_ensemble_finds_a_spike() -> None:
    xs = noisy_series(1500)
    xs[1200] += 6.0
    assert_detected(run("default", xs, warmup=200), 1200, 200, lag=1)


def test_ensemble_finds_a_level_shift() -> None:
    xs = noisy_series(1500)
    xs = xs[:1100] + [x + 2.5 for x in xs[1100:]]
    assert_detected(run("default", xs, warmup=200), 1100, 200, lag=30)


def test_ensemble_finds_a_variance_change() -> None:
    rng = random.Random(11)
    xs = [rng.gauss(0.0, 1.0) for _ in range(1500)]
    xs += [rng.gauss(0.0, 6.0) for _ in range(200)]
    assert_detected(run("default", xs, warmup=200), 1500, 200, lag=40)


@pytest.mark.parametrize(("name", "params"), [("robust_z", {}), ("ewma", {}), ("cusum", {"window": 200})])
def test_components_flag_a_level_shift(name: str, params: dict[str, object]) -> None:
    xs = noisy_series(1200, amp=0.0)
    xs = xs[:900] + [x + 3.0 for x in xs[900:]]
    scores = run(name, xs, **params)
    assert max(scores[900:960]) > max(scores[50:900]) + 0.1


def test_seasonal_flags_value_unusual_for_time_of_day() -> None:
    # 5-minute data with a daily square wave; at day 5 the "night" value appears during the day.
    xs = [10.0 + (5.0 if (i % 288) < 144 else 0.0) + 0.1 * math.sin(i) for i in range(288 * 6)]
    at = 288 * 5 + 60
    xs[at] = 10.0
    scores = run("seasonal", xs, period=86400.0, buckets=48)
    assert scores[at] > 0.9 and max(scores[288 * 3 : at]) < 0.5


def test_ensemble_cooldown_pages_once_per_incident() -> None:
    xs = noisy_series(2000)
    xs = xs[:1500] + [x + 8.0 for x in xs[1500:]]
    scores = run("default", xs, warmup=200)
    assert sum(s > 0.5 for s in scores[1500:1700]) <= 2


def test_sorted_window_and_sliding_max_match_brute_force() -> None:
    rng = random.Random(5)
    w, m = SortedWindow(50), SlidingMax(64, blocks=8)
    seen: list[float] = []
    for _ in range(500):
        v = rng.choice([abs(rng.gauss(0, 1)), 0.0, 1.0])
        w.add(v)
        m.add(v)
        seen.append(v)
        recent = sorted(seen[-50:])
        assert w.median() == pytest.approx((recent[len(recent) // 2] + recent[(len(recent) - 1) // 2]) / 2)
        # Block maxima cover between 64 and 64 + 8 of the latest points.
        assert max(seen[-64:]) <= m.max() <= max(seen[-72:])


def test_l1_throughput() -> None:
    """The default ensemble is meant for >= 50k points/s on one core; this guards against regressions."""
    xs = noisy_series(20000)
    det = BUILTINS["ensemble"](warmup=500)
    start = time.perf_counter()
    for i, x in enumerate(xs):
        det.update(i * 60.0, x)
    rate = len(xs) / (time.perf_counter() - start)
    assert rate > 20000, f"{rate:.0f} points/s"


def test_context_flags_a_new_rhythm_inside_the_normal_range() -> None:
    # A square wave of period 20 between 0 and 10; from point 1500 it is 4. Every value
    # stays inside the warm-up range, so only the sequence of levels is new.
    xs = [10.0 if (i // 10) % 2 else 0.0 for i in range(1500)]
    xs += [10.0 if (i // 2) % 2 else 0.0 for i in range(300)]
    scores = run("context", xs, warmup=300)
    assert max(scores[300:1500]) == 0.0
    assert max(scores[1500:1510]) >= 0.4  # two of its five contexts are new


def test_context_memory_is_bounded_and_round_trips() -> None:
    from detect.streaming.context import ContextKernel

    rng = random.Random(2)
    k = ContextKernel(levels=4, orders=3, warmup=100)
    for _ in range(20000):
        k.step(rng.gauss(0.0, 1.0))
    assert len(k._seen) <= sum(6**j for j in range(1, 4))
    clone = ContextKernel(levels=4, orders=3, warmup=100)
    clone.load(k.state())
    xs = [rng.gauss(0.0, 3.0) for _ in range(200)]
    assert [k.step(x) for x in xs] == [clone.step(x) for x in xs]


def test_ensemble_context_view_can_be_switched_off() -> None:
    xs = noisy_series(1500)
    xs[1200] += 6.0
    on = run("default", xs, warmup=200)
    off = run("default", xs, warmup=200, context_weight=0.0)
    assert on != off
    assert_detected(off, 1200, 200, lag=1)
    assert_detected(on, 1200, 200, lag=1)
