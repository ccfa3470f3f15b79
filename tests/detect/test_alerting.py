"""The combiner: L0 + L1 (+ L2) scores through hysteresis into Alert open/update/resolve events."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest

from detect.alerting import AlertPolicy, DetectState, detect_series, labels_for
from detect.ml import MlConfig
from detect.rules import parse_rules
from warroom.errors import InputError
from warroom.model import Series, SeriesKey, Severity, SignalKind

T0 = 1_700_000_000
STEP = 60
ONSET = 120


#: These tests pin the combiner's mechanics on synthetic series, so they use the original noise
#: floors; the product defaults (tuned on the fixture scenarios) are checked end to end elsewhere.
_OLD_FLOORS = {SignalKind.ERROR_RATIO: (0.002, 0.05)}
MECHANICS = AlertPolicy(min_scale=_OLD_FLOORS, flap_max_opens=3)


def _series(
    kind: SignalKind, entity: str, values: Sequence[float | None], labels: tuple[tuple[str, str], ...] = ()
) -> Series:
    return Series(
        SeriesKey(kind, entity, tuple(labels)),
        STEP,
        tuple(T0 + i * STEP for i in range(len(values))),
        tuple(values),
    )


def _errors(n: int = 200, seed: int = 5, incident: bool = True) -> list[float | None]:
    rng = random.Random(seed)
    out: list[float | None] = [max(0.0, 0.01 + rng.gauss(0, 0.002)) for _ in range(n)]
    if incident:
        for i in range(ONSET, ONSET + 15):
            out[i] = 0.2 + rng.gauss(0, 0.01)
    return out


def _step(t: int) -> int:
    return (t - T0) // STEP


def test_incident_opens_once_and_resolves() -> None:
    s = _series(SignalKind.ERROR_RATIO, "checkout", _errors(), labels=(("operation", "POST /checkout"),))
    res = detect_series(
        [s], resource={"checkout": {"service.version": "1.4.2", "host.name": "node-3"}}, policy=MECHANICS
    )
    actions = [(c.action, _step(c.t)) for c in res.changes]
    assert [a for a, _ in actions] == ["open", "resolve"], actions
    opened, resolved = res.changes[0].alert, res.changes[1].alert
    assert ONSET <= _step(res.changes[0].t) <= ONSET + 3
    assert opened.starts_at.timestamp() == T0 + ONSET * STEP  # the onset, not the step it opened
    assert opened.fingerprint == s.key.fingerprint()
    assert opened.firing and opened.severity is Severity.CRITICAL
    assert opened.title.startswith("checkout POST /checkout error ratio ")
    assert "(baseline 1." in opened.title and opened.title.endswith("%)")
    assert opened.labels["service"] == "checkout" and opened.labels["signal"] == "error_ratio"
    assert opened.labels["operation"] == "POST /checkout" and opened.labels["service.version"] == "1.4.2"
    layers = {(f.layer, f.detector) for f in opened.findings}
    assert {("L1", "ensemble"), ("L1", "baseline")} <= layers
    base = next(f for f in opened.findings if f.detector == "baseline")
    assert (
        base.observed is not None
        and base.observed > 0.15
        and base.baseline is not None
        and base.baseline < 0.02
    )
    ev = opened.evidence
    assert ev.step_s == STEP and ev.window_start == T0 + (ONSET - 10) * STEP
    assert ev.values[:10] == s.values[ONSET - 10 : ONSET] and ev.values[10] == s.values[ONSET]
    # resolved after recovery (5 normal steps), ends_at = first normal step
    assert ONSET + 15 + 4 <= _step(res.changes[1].t) <= ONSET + 15 + 8
    assert resolved.ends_at is not None and resolved.ends_at.timestamp() == T0 + (ONSET + 15) * STEP
    assert len(resolved.evidence.values) == 10 + 1 + 5  # grown to evidence_after steps past onset
    assert res.state.open_alerts() == []
    reasons = {d.reason for d in res.decisions if d.fingerprint == s.key.fingerprint()}
    assert {"threshold", "hysteresis_pending", "resolve_pending", "recovered"} <= reasons


@pytest.mark.parametrize("height", [0.04, 0.25])
def test_single_point_spike_does_not_alert(height: float) -> None:
    vals = _errors(incident=False)
    vals[ONSET] = height
    res = detect_series([_series(SignalKind.ERROR_RATIO, "payment", vals)], policy=MECHANICS)
    assert res.changes == []
    spike = [d for d in res.decisions if d.t == T0 + ONSET * STEP]
    assert [d.reason for d in spike] == ["hysteresis_pending"]
    assert spike[0].detail == "1 of 2 anomalous steps" and spike[0].score >= 0.5


def test_quiet_series_do_not_alert() -> None:
    rng = random.Random(1)
    series = [
        _series(SignalKind.ERROR_RATIO, "a", _errors(400, seed=2, incident=False)),
        _series(SignalKind.LATENCY_P95, "a", [100 + rng.gauss(0, 5) for _ in range(400)]),
        _series(SignalKind.REQUEST_RATE, "a", [50 + rng.gauss(0, 3) for _ in range(400)]),
        _series(SignalKind.REQUEST_RATE, "b", [2.0] * 400),  # constant
    ]
    assert detect_series(series).changes == []


def test_direction_latency_drop_is_good_news_rate_drop_is_not() -> None:
    rng = random.Random(4)
    lat_down = [100 + rng.gauss(0, 5) for _ in range(200)]
    lat_up = list(lat_down)
    rate = [50 + rng.gauss(0, 3) for _ in range(200)]
    for i in range(ONSET, ONSET + 30):
        lat_down[i] = 40 + rng.gauss(0, 2)
        lat_up[i] = 400 + rng.gauss(0, 10)
        rate[i] = 5.0 + rng.gauss(0, 0.5)
    down = _series(SignalKind.LATENCY_P95, "cart", lat_down)
    up = _series(SignalKind.LATENCY_P95, "cart", lat_up, labels=(("operation", "GET /cart"),))
    drop = _series(SignalKind.REQUEST_RATE, "frontend", rate)
    res = detect_series([down, up, drop])
    opened = {c.alert.fingerprint for c in res.changes if c.action == "open"}
    assert opened == {up.key.fingerprint(), drop.key.fingerprint()}
    assert any(d.reason == "improvement" and d.fingerprint == down.key.fingerprint() for d in res.decisions)
    rate_alert = next(c.alert for c in res.changes if c.alert.fingerprint == drop.key.fingerprint())
    assert "request rate 5" in rate_alert.title and "/s (baseline 4" in rate_alert.title


def _fleet() -> list[Series]:
    rng = random.Random(9)
    lat = [100 + rng.gauss(0, 5) for _ in range(200)]
    for i in range(ONSET + 2, ONSET + 20):
        lat[i] = 300 + rng.gauss(0, 10)
    return [
        _series(SignalKind.ERROR_RATIO, "checkout", _errors()),
        _series(SignalKind.REQUEST_RATE, "checkout", [50 + rng.gauss(0, 3) for _ in range(200)]),
        _series(SignalKind.LATENCY_P95, "checkout", lat),
        _series(SignalKind.ERROR_RATIO, "payment", _errors(seed=8, incident=False)),
    ]


RULES = parse_rules(
    """
[[threshold]]
name = "errs"
kind = "error_ratio"
service = "checkout"
op = ">"
value = 0.05
for_steps = 1
severity = "critical"

[[slo]]
name = "avail"
service = "checkout"
objective = 0.98
window_scale = 0.1
"""
)


@pytest.mark.parametrize("split", [1, 60, ONSET, ONSET + 1, ONSET + 7, ONSET + 16, 199])
def test_save_load_continue_equals_uninterrupted(split: int) -> None:
    series = _fleet()
    policy = AlertPolicy(ml=MlConfig(min_train=20, train_window=60, retrain_every=30), ml_every=7)
    whole = detect_series(series, rules=RULES, policy=policy)
    first = detect_series(series, rules=RULES, policy=policy, now_index=split)
    saved = first.state.to_json()
    state = DetectState.from_json(saved, slos=RULES.slos)
    assert state.to_json() == saved
    rest = detect_series(series, rules=RULES, policy=policy, state=state)
    assert first.changes + rest.changes == whole.changes
    assert first.decisions + rest.decisions == whole.decisions
    assert rest.state.to_json() == whole.state.to_json()


def test_l0_slo_and_l2_findings_in_alerts() -> None:
    policy = AlertPolicy(ml=MlConfig(min_train=20, train_window=60, retrain_every=30))
    res = detect_series(_fleet(), rules=RULES, policy=policy)
    opens = [c for c in res.changes if c.action == "open"]
    by_signal = Counter(c.alert.labels["signal"] for c in opens)
    assert by_signal == {"error_ratio": 1, "slo_burn": 1, "latency_p95": 1}, [c.alert.title for c in opens]
    err = next(c for c in opens if c.alert.labels["signal"] == "error_ratio")
    assert _step(err.t) == ONSET  # a critical rule opens at once
    assert any(f.layer == "L0" and f.detector == "threshold:errs" for f in err.alert.findings)
    slo = next(c for c in opens if c.alert.labels["signal"] == "slo_burn")
    # burn 10 during the incident: below both page factors (14.4, 6), above the 3d/6h ticket's 1
    assert slo.alert.severity is Severity.WARNING and slo.alert.labels["slo"] == "avail"
    assert any(f.detector == "slo:avail" and "ticket" in f.detail for f in slo.alert.findings)
    assert slo.alert.title.startswith("checkout avail SLO burn rate ")
    lat = next(c for c in opens if c.alert.labels["signal"] == "latency_p95")
    assert any(f.layer == "L2" and f.score > 0.9 for f in lat.alert.findings)
    assert {c.action for c in res.changes if c.alert.labels["signal"] == "error_ratio"} >= {"open", "resolve"}


def test_flapping_guard() -> None:
    vals = _errors(400, incident=False)
    for start in range(100, 400, 12):
        for i in range(start, min(start + 4, 400)):
            vals[i] = 0.3
    res = detect_series(
        [_series(SignalKind.ERROR_RATIO, "flappy", vals)],
        policy=AlertPolicy(relearn_after=1000, min_scale=_OLD_FLOORS, flap_max_opens=3),
    )
    opens = [c for c in res.changes if c.action == "open"]
    assert len(opens) == 3  # then held: the bursts are shorter than flap_hold
    assert sum(d.reason == "flapping" for d in res.decisions) > 20
    # a sustained run still opens while flapping
    for i in range(300, 320):
        vals[i] = 0.3
    res = detect_series(
        [_series(SignalKind.ERROR_RATIO, "flappy", vals)],
        policy=AlertPolicy(relearn_after=1000, min_scale=_OLD_FLOORS, flap_max_opens=3),
    )
    assert [d.reason for d in res.decisions if d.action == "open"][-1] == "flapping_sustained"


def test_no_look_ahead() -> None:
    a = _fleet()
    b = [
        Series(
            s.key, s.step_s, s.timestamps, s.values[:150] + tuple(v * 3 if v else v for v in s.values[150:])
        )
        for s in a
    ]
    ra = detect_series(a, rules=RULES)
    rb = detect_series(b, rules=RULES)
    cut = T0 + 149 * STEP
    assert [c for c in ra.changes if c.t <= cut] == [c for c in rb.changes if c.t <= cut]
    assert [d for d in ra.decisions if d.t <= cut] == [d for d in rb.decisions if d.t <= cut]


def test_gaps_nan_empty_and_duplicates() -> None:
    vals = _errors()
    for i in range(0, 200, 7):
        vals[i] = None
    vals[ONSET + 3] = float("nan")
    vals[ONSET + 5] = float("inf")
    res = detect_series(
        [_series(SignalKind.ERROR_RATIO, "gappy", vals), _series(SignalKind.ERROR_RATIO, "empty", [])]
    )
    assert [c.action for c in res.changes] == ["open", "resolve"]
    assert detect_series([]).changes == []
    res2 = detect_series([_series(SignalKind.ERROR_RATIO, "nodata", [None] * 50)])
    assert res2.changes == [] and res2.decisions == []


def test_malformed_series_raise_clear_errors() -> None:
    key = SeriesKey(SignalKind.ERROR_RATIO, "x")
    with pytest.raises(InputError, match="3 timestamps but 2 values"):
        detect_series([Series(key, 60, (1, 2, 3), (0.1, 0.2))])
    with pytest.raises(InputError, match="timestamps must increase"):
        detect_series([Series(key, 60, (120, 60), (0.1, 0.2))])
    with pytest.raises(InputError, match="step_s"):
        detect_series([Series(key, 0, (1,), (0.1,))])
    with pytest.raises(InputError, match="given twice"):
        detect_series([Series(key, 60, (60,), (0.1,)), Series(key, 60, (60,), (0.1,))])
    with pytest.raises(InputError, match="format"):
        DetectState.from_json('{"format": 0}')
    with pytest.raises(InputError, match="outside"):
        AlertPolicy(threshold=1.5)


def test_edge_labels() -> None:
    labels = labels_for(SeriesKey(SignalKind.LATENCY_P95, "frontend->checkout"), {"k8s.cluster.name": "prod"})
    assert labels == {
        "k8s.cluster.name": "prod",
        "service": "checkout",
        "edge": "frontend->checkout",
        "caller": "frontend",
        "signal": "latency_p95",
    }
