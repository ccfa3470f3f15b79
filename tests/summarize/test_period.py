"""The periodic SRE digest: MTTA/MTTR from hand-made incidents and events, noisiest alerts in
order, flapping signals listed, and every format rendered safely and deterministically."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from summarize.period import DurationStats, PeriodDigest, build_period
from summarize.render import FORMATS, render_period
from tests.summarize.test_render import EVIL, _check_slack_limits, _parse, _slack_texts
from warroom.alert_json import time_text
from warroom.incident import Incident
from warroom.model import Alert, Severity

DAY = datetime(2026, 11, 1, tzinfo=UTC)


def _at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def _incident(
    n: int,
    started: float,
    *,
    severity: str = "critical",
    status: str = "resolved",
    resolved: float | None = None,
    merged_into: str | None = None,
    flapping: tuple[str, ...] = (),
    cause: str = "",
    title: str = "",
) -> Incident:
    return Incident(
        id=f"INC-{n}",
        title=title or f"incident {n}",
        severity=severity,
        status=status,
        started_at=_at(started),
        updated_at=_at(started),
        resolved_at=_at(resolved) if resolved is not None else None,
        acknowledged_by="",
        alert_count=3,
        services=("checkout",),
        fingerprints=(),
        flapping=flapping,
        root_causes=({"service": cause, "score": 0.8, "confidence": 0.7, "reasons": []},) if cause else (),
        merged_into=merged_into,
    )


def _event(kind: str, hours: float, *, as_text: bool = True) -> dict[str, object]:
    at = _at(hours)
    return {
        "at": time_text(at) if as_text else at,
        "recorded_at": time_text(at),
        "kind": kind,
        "actor": "alice",
        "notify": True,
        "reasons": [],
    }


def _alert(fp: str, start: float, end: float | None, *, updated: float | None = None, **kw: object) -> Alert:
    return Alert(
        fingerprint=fp,
        title=str(kw.get("title", f"{fp} high")),
        severity=kw.get("severity", Severity.WARNING),  # type: ignore[arg-type]
        starts_at=_at(start),
        ends_at=_at(end) if end is not None else None,
        updated_at=_at(updated) if updated is not None else None,
        labels={"service": "checkout"},
    )


M = 1 / 60  # one minute, in hours

INCIDENTS = [
    _incident(1, 0, resolved=1, cause="checkout"),  # TTA 5m, TTR 60m
    _incident(2, 2, severity="warning", resolved=2 + 45 * M),  # TTA 15m (first ack), TTR 45m, reopened
    _incident(3, 5, status="acknowledged", flapping=("x-flap", "a")),  # TTA 2m, no TTR
    _incident(4, 6, severity="info", resolved=6 + 10 * M, merged_into="INC-1"),  # no TTA, no TTR
    _incident(5, 7, severity="warning", resolved=9),  # ack 1m before start (skew): TTA 0, TTR 2h
]
EVENTS = {
    "INC-1": [_event("opened", 0), _event("acknowledged", 5 * M)],
    "INC-2": [
        _event("opened", 2),
        _event("acknowledged", 2 + 30 * M),
        _event("acknowledged", 2 + 15 * M, as_text=False),
        _event("resolved", 2 + 20 * M),
        _event("reopened", 2 + 25 * M),
        _event("resolved", 2 + 45 * M),
    ],
    "INC-3": [_event("opened", 5), _event("acknowledged", 5 + 2 * M)],
    "INC-4": [_event("opened", 6), _event("merged", 6 + 10 * M)],
    "INC-5": [_event("acknowledged", 7 - 1 * M), _event("opened", 7)],
}
ALERTS = [
    # "a" fires four times; the 01:00 firing arrives three times (fire, resolve, late re-send).
    _alert("a", 1, None, updated=1 + 2 * M),
    _alert("a", 1, 1 + 5 * M),
    _alert("a", 1, None, updated=1 + 7 * M),
    _alert("a", 3, 3 + 10 * M),
    _alert("a", 5, 5 + 5 * M),
    _alert("a", 7, 7 + 5 * M, title="a high (renamed)"),
    # "b": two long firings, the second critical.
    _alert("b", 10, 12),
    _alert("b", 14, 15, severity=Severity.CRITICAL),
    # "d": two short firings: same count as "b", less firing time.
    _alert("d", 16, 16 + 10 * M),
    _alert("d", 17, 17 + 10 * M),
    # "c": one firing since yesterday, still firing: counted inside the period only.
    _alert("c", -4, None),
]


def _digest() -> PeriodDigest:
    return build_period(INCIDENTS, EVENTS, ALERTS, start=DAY, end=DAY + timedelta(days=1))


def test_time_to_acknowledge_and_resolve_per_incident() -> None:
    rows = {r.id: r for r in _digest().incidents}

    def minutes(value: timedelta | None) -> float | None:
        return None if value is None else round(value / timedelta(minutes=1), 6)

    figures = {i: (minutes(r.tta), minutes(r.ttr)) for i, r in rows.items()}
    assert figures == {
        "INC-1": (5, 60),
        "INC-2": (15, 45),
        "INC-3": (2, None),
        "INC-4": (None, None),  # merged: its time goes on in INC-1
        "INC-5": (0, 120),
    }
    assert rows["INC-2"].reopened == 1
    assert rows["INC-1"].root_cause == "checkout" and rows["INC-2"].root_cause == ""
    assert [r.id for r in _digest().incidents] == ["INC-1", "INC-2", "INC-3", "INC-4", "INC-5"]


def test_mtta_and_mttr_are_median_and_p90() -> None:
    digest = _digest()
    # TTA sample 0, 2, 5, 15 minutes; TTR sample 45, 60, 120 minutes.
    assert digest.tta == DurationStats(4, timedelta(minutes=3, seconds=30), timedelta(minutes=12))
    assert digest.ttr == DurationStats(3, timedelta(minutes=60), timedelta(minutes=108))


def test_quantiles_match_numpy() -> None:
    rng = random.Random(7)
    incidents = [_incident(n, 0, resolved=rng.uniform(0.1, 30)) for n in range(23)]
    digest = build_period(incidents, {}, [], start=DAY, end=DAY + timedelta(days=2))
    sample = [(i.resolved_at - i.started_at).total_seconds() for i in incidents if i.resolved_at]
    assert digest.ttr.median is not None and digest.ttr.p90 is not None
    assert digest.ttr.median.total_seconds() == pytest.approx(float(np.percentile(sample, 50)))
    assert digest.ttr.p90.total_seconds() == pytest.approx(float(np.percentile(sample, 90)))
    assert digest.tta == DurationStats(0, None, None)


def test_counts_by_severity_and_status() -> None:
    digest = _digest()
    assert digest.by_severity == (("critical", 2), ("warning", 2), ("info", 1))
    assert digest.by_status == (("open", 0), ("acknowledged", 1), ("resolved", 4))
    assert digest.alert_count == 9
    assert digest.alerts_by_severity == (("critical", 1), ("warning", 8), ("info", 0))


def test_noisiest_alerts_ordered_by_fires_then_firing_time() -> None:
    noisiest = _digest().noisiest
    assert [(n.fingerprint, n.fires) for n in noisiest] == [("a", 4), ("b", 2), ("d", 2), ("c", 1)]
    by_fp = {n.fingerprint: n for n in noisiest}
    assert by_fp["a"].firing == timedelta(minutes=25)  # the late re-send did not reopen 01:00
    assert by_fp["a"].title == "a high (renamed)"
    assert by_fp["b"].firing == timedelta(hours=3) and by_fp["b"].severity == "critical"
    assert by_fp["c"].firing == timedelta(hours=24)  # clipped to the period
    top = build_period(INCIDENTS, EVENTS, ALERTS, start=DAY, end=DAY + timedelta(days=1), top=2)
    assert [n.fingerprint for n in top.noisiest] == ["a", "b"]


def test_flapping_signals_from_correlation_and_fire_counts() -> None:
    flapping = _digest().flapping
    assert [(f.fingerprint, f.fires, f.incidents) for f in flapping] == [
        ("a", 4, ("INC-3",)),
        ("x-flap", 0, ("INC-3",)),
    ]
    loose = build_period(INCIDENTS, EVENTS, ALERTS, start=DAY, end=DAY + timedelta(days=1), flap_fires=2)
    assert [f.fingerprint for f in loose.flapping] == ["a", "b", "d", "x-flap"]


def test_empty_period() -> None:
    digest = build_period([], {}, [], start=DAY, end=DAY + timedelta(days=1))
    assert digest.incidents == () and digest.noisiest == () and digest.flapping == ()
    for fmt in FORMATS:
        out = render_period(digest, fmt)
        assert "No incidents" in out or "none in this period" in out


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_period_shows_figures_order_and_flapping(fmt: str) -> None:
    out = render_period(_digest(), fmt)
    if fmt == "slack":
        data = json.loads(out)
        _check_slack_limits(data)
        out = "\n".join(_slack_texts(data))
    elif fmt == "html":
        _parse(out)
    for n in range(1, 6):
        assert f"INC-{n}" in out
    for figure in ("3m 30s", "12m", "1h", "1h 48m", "25m", "3h"):
        assert figure in out, figure
    assert out.index("a high (renamed)") < out.index("b high") < out.index("d high") < out.index("c high")
    assert "x-flap" in out
    assert render_period(_digest(), fmt) == render_period(_digest(), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_period_escapes_telemetry(fmt: str) -> None:
    incidents = [_incident(1, 0, resolved=1, title=EVIL, cause=EVIL)]
    alerts = [_alert(EVIL, 1, 2, title=EVIL)]
    out = render_period(build_period(incidents, {}, alerts, start=DAY, end=DAY + timedelta(days=1)), fmt)
    assert "<script" not in out
    if fmt == "slack":
        assert "<!channel>" not in out
        _check_slack_limits(json.loads(out))
    if fmt == "md":
        assert "[click](" not in out
        assert "| <script" not in out
    if fmt == "html":
        _parse(out)


def test_slack_period_with_many_incidents_stays_within_limits() -> None:
    incidents = [_incident(n, n / 100, title="x" * 400) for n in range(400)]
    data = json.loads(
        render_period(build_period(incidents, {}, [], start=DAY, end=DAY + timedelta(days=1)), "slack")
    )
    _check_slack_limits(data)
