"""SLO burn rates: hand-computed windows and the multi-window, multi-burn-rate decision."""

from __future__ import annotations

import pytest

from detect.rules import parse_rules
from detect.slo import BURN_WINDOWS, BurnTracker, SloSpec, window_steps
from warroom.model import Severity


def _spec(objective: float = 0.99, scale: float = 1.0) -> SloSpec:
    text = f"[[slo]]\nname = 's'\nservice = 'checkout'\nobjective = {objective}\nwindow_scale = {scale}\n"
    spec = parse_rules(text).slos[0]
    assert isinstance(spec, SloSpec)
    return spec


def test_window_steps() -> None:
    assert window_steps(300, 60) == 5
    assert window_steps(3600, 60) == 60
    assert window_steps(300, 300) == 1
    assert window_steps(30, 60) == 1  # never less than one step
    assert window_steps(3600, 60, scale=0.05) == 3
    tr = BurnTracker(_spec(), 300)
    assert tr.steps == {"1h": 12, "5m": 1, "6h": 72, "30m": 6, "1d": 288, "2h": 24, "3d": 864}


def test_hand_computed_burn_rates() -> None:
    # objective 0.99 -> budget 0.01; 5-minute steps: 5m = 1 step, 1h = 12 steps.
    tr = BurnTracker(_spec(0.99), 300)
    t0 = 1_700_000_000
    for i in range(11):
        res = tr.update(t0 + 300 * i, 10.0, 0.0)
        assert res.firing == ()
    res = tr.update(t0 + 300 * 11, 10.0, 0.2)
    # 5m: 0.2 / 0.01 = 20;  1h: (10 * 0.2) / (12 * 10) / 0.01 = 1.6667
    assert res.burns["5m"] == pytest.approx(20.0)
    assert res.burns["1h"] == pytest.approx(2.0 / 120 / 0.01)
    assert res.severity is not Severity.CRITICAL  # the short window alone does not page
    # ...but 3d/6h (partial: the 12 steps seen so far) burn 1.67 >= 1 -> ticket
    assert res.firing == (BURN_WINDOWS[3],)
    for i in range(12, 23):
        res = tr.update(t0 + 300 * i, 10.0, 0.2)
    # 12 bad steps in the last 12: 1h burn 20 >= 14.4 and 5m burn 20 >= 14.4 -> page
    assert res.burns["1h"] == pytest.approx(20.0)
    assert res.firing[0] is BURN_WINDOWS[0]
    assert res.severity is Severity.CRITICAL
    f = res.finding(tr.spec)
    assert f is not None and f.layer == "L0" and f.detector == "slo:s" and f.score == 1.0
    assert "page: burn 20.0 over 1h and 20.0 over 5m >= 14.4" in f.detail
    # recovery: the 5-minute window resets the page at the first good step
    res = tr.update(t0 + 300 * 23, 10.0, 0.0)
    assert res.burns["5m"] == 0.0
    assert BURN_WINDOWS[0] not in res.firing


def test_request_weighted_ratio_and_ticket() -> None:
    # 1-hour steps: 2h = 2 steps, 1d = 24 steps; objective 0.9 -> budget 0.1.
    tr = BurnTracker(_spec(0.9), 3600)
    t0 = 0
    tr.update(t0, 100.0, 0.0)
    res = tr.update(t0 + 3600, 300.0, 0.4)
    # 2h window: (100*0 + 300*0.4) / 400 = 0.3 -> burn 3.0; 1d: same two steps -> 3.0 -> ticket
    assert res.burns["2h"] == pytest.approx(3.0)
    assert res.burns["1d"] == pytest.approx(3.0)
    assert res.burns["1h"] == pytest.approx(4.0)  # 1h = 1 step: 0.4 / 0.1
    assert BURN_WINDOWS[2] in res.firing
    assert res.severity is Severity.WARNING  # 1h/5m 4 < 14.4 and 6h/30m 3 < 6: no page
    assert BURN_WINDOWS[0] not in res.firing and BURN_WINDOWS[1] not in res.firing


def test_gaps_and_no_traffic() -> None:
    tr = BurnTracker(_spec(0.99), 60)
    assert tr.update(0, 0.0, 0.5).burns["1h"] == 0.0  # no requests: nothing burnt
    assert tr.update(60, None, None).burns["1h"] == 0.0  # gap
    res = tr.update(120, None, 0.5)  # no request-rate series: the step weighs 1
    assert res.burns["5m"] == pytest.approx(50.0)
    with pytest.raises(Exception, match="not after"):
        tr.update(120, 1.0, 0.0)


def test_state_round_trip() -> None:
    spec = _spec(0.999)
    tr = BurnTracker(spec, 60)
    for i in range(50):
        tr.update(i * 60, 10.0 + i, 0.001 * (i % 7))
    tr2 = BurnTracker.from_json(spec, tr.to_json())
    for i in range(50, 80):
        a = tr.update(i * 60, 10.0, 0.05)
        b = tr2.update(i * 60, 10.0, 0.05)
        assert a == b
