"""Conformance suite: every registered detector honours the contract in detect.base."""

from __future__ import annotations

import json
import math

import pytest

from detect.base import STATE_FORMAT, AlertEvent, Decision, Detector, check_point
from detect.registry import BUILTINS, create
from tests.detect.conftest import noisy_series
from warroom.errors import InputError

NAMES = sorted(BUILTINS)


def build(name: str) -> Detector:
    return BUILTINS[name](**BUILTINS[name].example_params())


def feed(det: Detector, xs: list[float], t0: float = 0.0, step: float = 300.0) -> list[float]:
    return [det.update(t0 + i * step, x) for i, x in enumerate(xs)]


@pytest.mark.parametrize("name", NAMES)
def test_scores_in_unit_interval(name: str) -> None:
    xs = noisy_series(600)
    xs[400] += 50.0
    scores = feed(build(name), xs)
    assert all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize("name", NAMES)
def test_no_look_ahead(name: str) -> None:
    xs = noisy_series(500)
    changed = xs[:300] + [x * 3.0 + 100.0 for x in xs[300:]]
    a = feed(build(name), xs)
    b = feed(build(name), changed)
    assert a[:300] == b[:300]


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_identically(name: str) -> None:
    xs = noisy_series(700, seed=3)
    xs[550] -= 20.0
    det = build(name)
    feed(det, xs[:400])
    text = det.to_json()
    payload = json.loads(text)
    assert payload["format"] == STATE_FORMAT and payload["detector"] == name
    clone = Detector.from_json(text)
    rest = [(400 + i) * 300.0 for i in range(300)]
    assert [det.update(t, x) for t, x in zip(rest, xs[400:], strict=True)] == [
        clone.update(t, x) for t, x in zip(rest, xs[400:], strict=True)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_score_one_does_not_learn(name: str) -> None:
    xs = noisy_series(300)
    det = build(name)
    feed(det, xs[:250])
    before = det.to_json()
    s = det.score_one(250 * 300.0, 99.0)
    assert det.to_json() == before
    assert s == det.update(250 * 300.0, 99.0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "12", None, [], True])
def test_bad_values_raise_input_error_and_keep_state(name: str, bad: object) -> None:
    det = build(name)
    feed(det, noisy_series(50))
    before = det.to_json()
    with pytest.raises(InputError):
        det.update(1e9, bad)  # type: ignore[arg-type]
    assert det.to_json() == before


@pytest.mark.parametrize("name", NAMES)
def test_timestamps_backwards_rejected_but_duplicates_and_gaps_accepted(name: str) -> None:
    det = build(name)
    feed(det, noisy_series(100))
    t_last = 99 * 300.0
    det.update(t_last, 10.0)  # duplicate stamp: accepted
    det.update(t_last + 86400.0 * 3, 10.0)  # three-day gap: accepted
    with pytest.raises(InputError) as err:
        det.update(0.0, 10.0)
    assert err.value.reason == "timestamp_backwards"


@pytest.mark.parametrize("name", NAMES)
def test_constant_series_scores_low(name: str) -> None:
    scores = feed(build(name), [5.0] * 400)
    assert max(scores) < 0.6 if name == "windowed_gaussian" else max(scores) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_vector_input_width_is_fixed(name: str) -> None:
    det = build(name)
    if name == "windowed_gaussian":
        pytest.skip("NAB's baseline is univariate by definition")
    for i in range(50):
        s = det.update(i * 60.0, [float(i % 5), 2.0 * (i % 3)])
        assert 0.0 <= s <= 1.0
    with pytest.raises(InputError) as err:
        det.update(51 * 60.0, [1.0, 2.0, 3.0])
    assert err.value.reason == "bad_width"


def test_registry_create_and_unknown() -> None:
    assert create("default").name == "ensemble"
    with pytest.raises(InputError):
        create("nope")
    with pytest.raises(InputError):
        create("ensemble", views=["bogus"])


def test_state_rejects_other_formats() -> None:
    with pytest.raises(InputError):
        Detector.from_json(json.dumps({"format": 2, "detector": "ewma"}))
    with pytest.raises(InputError):
        Detector.from_json("not json")
    with pytest.raises(InputError):
        Detector.from_json(json.dumps({"format": 1, "detector": "pickle"}))


def test_check_point_converts_vectors() -> None:
    assert check_point(1.0, [1, 2.5], None, None) == (1.0, 2.5)
    with pytest.raises(InputError):
        check_point(float("nan"), 1.0, None, None)
    with pytest.raises(InputError):
        check_point("x", 1.0, None, None)  # type: ignore[arg-type]


def test_decision_hysteresis() -> None:
    dec = Decision(threshold=0.5, open_after=2, resolve_after=3)
    seq = [0.1, 0.9, 0.2, 0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1]
    events = [(i, e) for i, s in enumerate(seq) if (e := dec.step(float(i), s)) is not None]
    assert events == [(4, AlertEvent("open", 4.0, 0.9)), (10, AlertEvent("resolve", 10.0, 0.1))]
    clone = Decision.from_json(dec.to_json())
    assert clone.is_open == dec.is_open and clone.threshold == 0.5
    with pytest.raises(InputError):
        Decision(threshold=1.5)
    with pytest.raises(InputError):
        Decision(open_after=0)


def test_z_to_score_is_monotone_and_bounded() -> None:
    from detect.streaming._common import z_to_score

    vals = [z_to_score(z) for z in (0.0, 1.0, 4.0, 40.0, 1e6)]
    assert vals == sorted(vals) and vals[0] == 0.0 and math.isclose(vals[2], 0.5) and vals[-1] < 1.0
