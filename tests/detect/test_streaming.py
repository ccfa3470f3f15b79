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
    long = SlidingMax(64, blocks=8, long_size=200)
    seen: list[float] = []
    for _ in range(500):
        v = rng.choice([abs(rng.gauss(0, 1)), 0.0, 1.0])
        w.add(v)
        m.add(v)
        long.add(v)
        seen.append(v)
        recent = sorted(seen[-50:])
        assert w.median() == pytest.approx((recent[len(recent) // 2] + recent[(len(recent) - 1) // 2]) / 2)
        # Block maxima cover between 64 and 64 + 8 of the latest points.
        assert max(seen[-64:]) <= m.max() <= max(seen[-72:])
        assert max(seen[-200:]) <= long.long_max() <= max(seen[-208:])
        assert max(seen[-64:]) <= long.max() <= max(seen[-72:])


def test_l1_throughput() -> None:
    """The default ensemble is meant for >= 50k points/s on one core; this guards against regressions."""
    xs = noisy_series(20000)
    det = BUILTINS["ensemble"](warmup=500)
    # CPU time of this process: other jobs on a shared machine must not fail the guard.
    start = time.process_time()
    for i, x in enumerate(xs):
        det.update(i * 60.0, x)
    rate = len(xs) / (time.process_time() - start)
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


def _fused_and_generic(xs: list[float], **params: object) -> tuple[list[float], list[float]]:
    fast = BUILTINS["ensemble"](**params)
    slow = BUILTINS["ensemble"](**params)
    slow.fused = False
    a = [fast.update(i * 300.0, x) for i, x in enumerate(xs)]
    b = [slow.update(i * 300.0, x) for i, x in enumerate(xs)]
    assert fast._fast and not slow._fast
    return a, b


def test_fused_path_matches_generic_loop() -> None:
    """The inlined single-stream kernel is an optimisation only: every score is identical."""
    rng = random.Random(3)
    xs = noisy_series(3000, seed=4)
    xs[1200] += 9.0
    xs = xs[:2000] + [x + 3.0 for x in xs[2000:]]  # level shift: the CUSUM resets
    xs += [rng.gauss(10.0, 4.0) for _ in range(400)]  # variance change
    xs += [10.0] * 200 + [-50.0, 1e6]  # flat stretch, out-of-range values
    a, b = _fused_and_generic(xs, warmup=300)
    assert a == b
    assert max(a[300:]) > 0.5
    a, b = _fused_and_generic(xs, warmup=100, long_weight=0.0, suppress=0, context_weight=0.0)
    assert a == b


def test_fused_path_state_round_trip() -> None:
    from detect.base import Detector

    xs = noisy_series(1200, seed=9)
    xs[900] += 7.0
    det = BUILTINS["ensemble"](warmup=200)
    for i, x in enumerate(xs[:600]):
        det.update(i * 300.0, x)
    clone = Detector.from_json(det.to_json())
    rest = list(enumerate(xs[600:], start=600))
    assert [det.update(i * 300.0, x) for i, x in rest] == [clone.update(i * 300.0, x) for i, x in rest]


def test_long_memory_mutes_a_repeat_of_last_weeks_burst() -> None:
    """A burst half the size of one a few warm-ups ago is no record for the long memory."""
    xs = noisy_series(4000, seed=12)
    xs[1000] += 12.0
    xs[2400] += 6.0  # > 2 warm-ups (the short history) after the first, < 6 (the long one)
    on = run("default", xs, warmup=300, context_weight=0.0)
    off = run("default", xs, warmup=300, context_weight=0.0, long_weight=0.0)
    assert on[1000] > 0.5 and off[1000] > 0.5
    assert off[2400] > 0.5 > on[2400]


def test_quiet_period_halves_repeats() -> None:
    xs = noisy_series(1500)
    xs[1200] += 8.0
    xs[1205] += 12.0  # a bigger repeat right after: still reported, but halved
    quiet = run("default", xs, warmup=200, context_weight=0.0)
    loud = run("default", xs, warmup=200, context_weight=0.0, suppress=0)
    assert quiet[1200] == loud[1200] > 0.5
    assert quiet[1205] == pytest.approx(loud[1205] / 2)
