"""The combiner: rules (L0), statistics (L1) and ML (L2) in, :class:`warroom.model.Alert` events out.

:func:`detect_series` walks the given series step by step in time order (all series together, so a
service's layer-2 feature vector sees every signal of that step) and, per series and step:

1. **L0** — threshold rules that match the series (:mod:`detect.rules`); SLO burn-rate alerts run on
   their own pseudo-series ``SeriesKey(SLO_BURN, service, (("slo", name),))`` (:mod:`detect.slo`).
2. **L1** — two views, both causal:

   * ``ensemble``: the registry's default detector (:mod:`detect.streaming.ensemble`), one instance
     per :meth:`SeriesKey.fingerprint`. It is an *onset* detector: it scores the first step of a
     change high and then adapts, so on its own it can neither tell a spike from a level shift nor
     keep an alert open.
   * ``baseline``: a robust z-score of the value against a *frozen* baseline, the median and IQR of
     the last ``baseline_window`` values that were judged normal (a series does not learn from points
     it flagged). It stays high for as long as a level shift lasts. Its scale has a floor per kind
     (``min_scale``) so a flat series does not page on a tiny wiggle.

   ``l1 = max(baseline, ensemble)`` when the baseline agrees at least a little (``>= escalate``);
   otherwise the ensemble alone is capped at ``escalate``: it can ask layer 2 for a second opinion but
   cannot open an alert by itself (reason ``l1_uncorroborated``).
3. **Direction.** Each kind has a direction (:data:`DEFAULT_DIRECTIONS`): rates alert on drops and
   spikes, error ratios, latencies and burn rates only on increases. A change in the harmless
   direction scores 0 on both L1 views, is learnt as the new normal and is logged as ``improvement``.
4. **L2** — when a series' L1 score reaches ``escalate`` (and every ``ml_every`` steps), the service's
   multivariate model (:mod:`detect.ml`) scores the service's feature vector at that step. It
   corroborates the series' *own* level change: ``score = max(l0, l1, sqrt(baseline * tail))`` with
   ``tail = max(0, (l2 - ml_floor) / (1 - ml_floor))``. L2 scores are a calibrated CDF (a normal row
   is uniform on [0, 1]), so only their top decile counts; and because the service vector holds
   every signal of the service, L2 must not lift a series whose own value did not move (``baseline``
   is near 0 then). L2 alone never pages (``ml_only``).
5. **Hysteresis** (``AlertPolicy``). An alert opens after ``open_after`` (2) consecutive steps with
   ``score >= threshold`` (0.5), or after 1 when an L0 rule agrees and is critical, or an L0 rule
   agrees and the score is ``>= strong`` (0.9). A lone strong L1 score still needs two steps: at the
   first step a one-minute blip and the onset of an outage look the same. It resolves after
   ``resolve_after`` (5) consecutive normal steps. A series that opened ``flap_max_opens`` (3) times
   within ``flap_window`` (60) steps is *flapping*: further openings are held (reason ``flapping``)
   unless fast or the anomalous run lasts ``flap_hold`` (10) steps; the flag clears after
   ``flap_window`` steps without an anomalous step.
   Gaps (``None``/NaN values) neither advance nor reset any counter.

Every step where something could have alerted but did not leaves a :class:`DecisionRecord` with its
reason (``below_threshold``, ``hysteresis_pending``, ``l1_uncorroborated``, ``improvement``,
``flapping``, ``resolve_pending``, ``ml_only``, ``relearning``) next to the ``open``/``update``/
``resolve`` records, so every page — and every page that did not happen — can be explained.

**Stop and resume.** All learnt state lives in :class:`DetectState` (versioned JSON, no pickle).
Each series remembers the last timestamp it processed, so the caller may pass the same growing
series again (or only the new points) and ``save → load → continue`` yields exactly the alerts of an
uninterrupted run. Timestamps of one series must increase; :class:`warroom.errors.InputError` says
which series is malformed otherwise.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from detect.base import Detector
from detect.ml import MlConfig, ServiceModel, feature_name
from detect.registry import create
from detect.rules import RuleSet, ThresholdState
from detect.slo import BurnTracker, SloSpec
from warroom.errors import InputError
from warroom.model import Alert, Evidence, Finding, Series, SeriesKey, Severity, SignalKind

__all__ = [
    "DEFAULT_DIRECTIONS",
    "AlertChange",
    "AlertPolicy",
    "DecisionRecord",
    "DetectResult",
    "DetectState",
    "Direction",
    "alerts_from_changes",
    "detect_series",
    "labels_for",
    "service_of",
]

STATE_FORMAT = 1

Direction = Literal["up", "down", "both"]

DEFAULT_DIRECTIONS: Mapping[SignalKind, Direction] = {
    SignalKind.REQUEST_RATE: "both",
    SignalKind.ERROR_RATIO: "up",
    SignalKind.LATENCY_P50: "up",
    SignalKind.LATENCY_P95: "up",
    SignalKind.LATENCY_P99: "up",
    SignalKind.LOG_RATE: "both",
    SignalKind.LOG_TEMPLATE_RATE: "up",
    SignalKind.NEW_LOG_TEMPLATE: "up",
    SignalKind.METRIC: "both",
    SignalKind.SLO_BURN: "up",
    SignalKind.MULTIVARIATE: "up",
    SignalKind.EXTERNAL: "up",
}

# (absolute, relative-to-|median|) floors of the baseline's scale, per kind.
#: (absolute, relative-to-median) floors of each kind's noise scale. They encode what an SRE would
#: call a real change, so low-volume series (one error a minute, a rarely used route) do not page:
#: an error ratio must move by several percentage points, a rate by a few events per minute, a
#: latency by milliseconds and a tenth of itself. Units follow detect.series (per second, ms).
DEFAULT_MIN_SCALE: Mapping[SignalKind, tuple[float, float]] = {
    SignalKind.ERROR_RATIO: (0.015, 0.1),
    SignalKind.REQUEST_RATE: (0.05, 0.1),
    SignalKind.LATENCY_P50: (5.0, 0.1),
    SignalKind.LATENCY_P95: (5.0, 0.1),
    SignalKind.LATENCY_P99: (5.0, 0.1),
    SignalKind.LOG_RATE: (0.05, 0.1),
    SignalKind.LOG_TEMPLATE_RATE: (0.05, 0.1),
    SignalKind.NEW_LOG_TEMPLATE: (0.3, 0.0),  # counts per step: two new error lines a step page
    SignalKind.METRIC: (0.05, 0.05),
}
_DEFAULT_FLOOR = (1e-9, 0.05)

Action = Literal["open", "update", "resolve", "suppress", "info"]


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """How scores become alerts (see the module docstring). All counts are in steps."""

    threshold: float = 0.5
    strong: float = 0.9
    escalate: float = 0.3
    open_after: int = 2
    fast_open_after: int = 1
    resolve_after: int = 5
    critical_score: float = 0.9  # an alert without an L0 severity is critical from this score on
    detector: str = "default"
    detector_params: Mapping[str, Any] = field(default_factory=lambda: {"warmup": 30})
    baseline_window: int = 60
    baseline_min: int = 10
    z_half: float = 6.0  # baseline z that scores 0.5
    relearn_after: int = 120  # an alert open this long lets its series learn the new level
    evidence_before: int = 10
    evidence_after: int = 5
    flap_window: int = 60
    flap_max_opens: int = 2
    flap_hold: int = 10  # while flapping, an anomalous run this long still opens
    update_delta: float = 0.1  # an open alert's score must grow this much to emit an update
    ml: MlConfig | None = None  # None: layer 2 off
    ml_every: int = 10
    ml_floor: float = 0.9  # only the top of L2's [0, 1] (a calibrated CDF) counts as corroboration
    directions: Mapping[SignalKind, Direction] = field(default_factory=lambda: dict(DEFAULT_DIRECTIONS))
    min_scale: Mapping[SignalKind, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_MIN_SCALE)
    )

    def __post_init__(self) -> None:
        for name in ("threshold", "strong", "escalate", "critical_score"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"AlertPolicy.{name} = {v} is outside [0, 1]", reason="bad_policy")
        for name in ("open_after", "fast_open_after", "resolve_after", "baseline_window", "baseline_min"):
            if getattr(self, name) < 1:
                raise InputError(f"AlertPolicy.{name} must be >= 1", reason="bad_policy")

    def direction(self, kind: SignalKind) -> Direction:
        return self.directions.get(kind, "both")


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert opening, changing (severity up, or score up by ``update_delta``) or resolving."""

    action: Literal["open", "update", "resolve"]
    t: int
    alert: Alert


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """Why a series did (or did not) alert at step ``t``."""

    t: int
    fingerprint: str
    series: str
    action: Action
    reason: str
    score: float
    detail: str = ""


@dataclass(slots=True)
class DetectResult:
    changes: list[AlertChange]
    decisions: list[DecisionRecord]
    state: DetectState

    @property
    def opened(self) -> list[Alert]:
        return [c.alert for c in self.changes if c.action == "open"]


# --- per-series state -------------------------------------------------------------------------


class _SeriesState:
    """Everything one series has learnt: detector, baseline, hysteresis and its open alert."""

    def __init__(self, key: SeriesKey, step_s: int, detector: Detector | None) -> None:
        self.key = key
        self.step_s = step_s
        self.detector = detector
        self.last_t: int | None = None
        self.normal: deque[float] = deque()
        self.recent: deque[tuple[int, float | None]] = deque()
        self.is_open = False
        self.run = 0
        self.run_start: int | None = None
        self.steps_open = 0
        self.opens: list[int] = []
        self.alert: Alert | None = None
        self.emitted_score = 0.0
        self.emitted_severity: str = ""
        self.flapping = False
        self.last_bad: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": _key_to_json(self.key),
            "step_s": self.step_s,
            "detector": None if self.detector is None else json.loads(self.detector.to_json()),
            "last_t": self.last_t,
            "normal": list(self.normal),
            "recent": [list(p) for p in self.recent],
            "is_open": self.is_open,
            "run": self.run,
            "run_start": self.run_start,
            "steps_open": self.steps_open,
            "opens": self.opens,
            "alert": None if self.alert is None else _alert_to_json(self.alert),
            "emitted_score": self.emitted_score,
            "emitted_severity": self.emitted_severity,
            "flapping": self.flapping,
            "last_bad": self.last_bad,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _SeriesState:
        det = None if d["detector"] is None else Detector.from_json(json.dumps(d["detector"]))
        st = cls(_key_from_json(d["key"]), int(d["step_s"]), det)
        st.last_t = None if d["last_t"] is None else int(d["last_t"])
        st.normal = deque(float(v) for v in d["normal"])
        st.recent = deque((int(t), None if v is None else float(v)) for t, v in d["recent"])
        st.is_open = bool(d["is_open"])
        st.run = int(d["run"])
        st.run_start = None if d["run_start"] is None else int(d["run_start"])
        st.steps_open = int(d["steps_open"])
        st.opens = [int(t) for t in d["opens"]]
        st.alert = None if d["alert"] is None else _alert_from_json(d["alert"])
        st.emitted_score = float(d["emitted_score"])
        st.emitted_severity = str(d["emitted_severity"])
        st.flapping = bool(d["flapping"])
        st.last_bad = None if d["last_bad"] is None else int(d["last_bad"])
        return st


class DetectState:
    """All state of :func:`detect_series`; ``to_json``/``from_json`` round-trip it exactly."""

    def __init__(self) -> None:
        self.series: dict[str, _SeriesState] = {}
        self.thresholds = ThresholdState()
        self.burn: dict[str, BurnTracker] = {}
        self.ml: dict[str, ServiceModel] = {}
        self.ml_steps: dict[str, int] = {}

    def open_alerts(self) -> list[Alert]:
        return [s.alert for s in self.series.values() if s.is_open and s.alert is not None]

    def to_json(self) -> str:
        payload = {
            "format": STATE_FORMAT,
            "kind": "warroom.detect.alerting",
            "series": {fp: s.to_dict() for fp, s in sorted(self.series.items())},
            "thresholds": json.loads(self.thresholds.to_json()),
            "burn": {k: {"step_s": b.step_s, **b.state()} for k, b in sorted(self.burn.items())},
            "ml": {k: json.loads(m.to_json()) for k, m in sorted(self.ml.items())},
            "ml_steps": dict(sorted(self.ml_steps.items())),
        }
        return json.dumps(payload, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, slos: Sequence[SloSpec] = ()) -> DetectState:
        """Load saved state; pass the same SLO specs as the run that saved it (they are config)."""
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise InputError(f"detection state is not JSON: {exc}", reason="bad_state") from exc
        if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
            got = payload.get("format") if isinstance(payload, dict) else None
            raise InputError(
                f"unsupported detection state format {got!r} (expected {STATE_FORMAT})",
                reason="bad_state_format",
            )
        st = cls()
        st.series = {fp: _SeriesState.from_dict(d) for fp, d in payload["series"].items()}
        st.thresholds = ThresholdState.from_json(json.dumps(payload["thresholds"]))
        specs = {s.name: s for s in slos}
        for k, b in payload["burn"].items():
            name = k.split("|", 1)[0]
            if name not in specs:
                continue  # the SLO was removed from the rules file: its burn history goes with it
            tracker = BurnTracker(specs[name], int(b["step_s"]))
            tracker.load(b)
            st.burn[k] = tracker
        st.ml = {k: ServiceModel.from_json(json.dumps(m)) for k, m in payload["ml"].items()}
        st.ml_steps = {str(k): int(v) for k, v in payload["ml_steps"].items()}
        return st


# --- the entry point --------------------------------------------------------------------------


def detect_series(
    series: Sequence[Series],
    *,
    rules: RuleSet | None = None,
    slos: Sequence[SloSpec] | None = None,
    state: DetectState | None = None,
    policy: AlertPolicy | None = None,
    now_index: int | None = None,
    now: int | None = None,
    resource: Mapping[str, Mapping[str, str]] | None = None,
) -> DetectResult:
    """Process every point not yet seen (per series) up to ``now_index``/``now``, in time order.

    ``rules`` supplies L0 thresholds (and SLOs unless ``slos`` is given); ``now_index`` stops at that
    index of each series (inclusive), ``now`` at that Unix second (inclusive). ``resource`` maps a
    service to resource attributes copied into its alerts' labels. Returns the alert changes, the
    decision log and the (mutated) state to save.
    """
    pol = policy or AlertPolicy()
    st = state if state is not None else DetectState()
    rule_set = rules or RuleSet()
    specs = tuple(slos) if slos is not None else tuple(rule_set.slos)
    run = _Run(pol, st, rule_set, specs, resource or {})
    by_t: dict[int, list[tuple[Series, float | None]]] = {}
    seen: set[str] = set()
    for s in series:
        _validate(s)
        fp = s.key.fingerprint()
        if fp in seen:
            raise InputError(f"series {s.key} is given twice", reason="duplicate_series")
        seen.add(fp)
        prev = st.series[fp].last_t if fp in st.series else None
        for i, (t, v) in enumerate(zip(s.timestamps, s.values, strict=True)):
            if now_index is not None and i > now_index:
                break
            if now is not None and t > now:
                break
            if prev is not None and t <= prev:
                continue
            by_t.setdefault(int(t), []).append((s, _clean(v)))
    for t in sorted(by_t):
        run.step(t, by_t[t])
    return DetectResult(run.changes, run.decisions, st)


def _validate(s: Series) -> None:
    if s.step_s < 1:
        raise InputError(f"series {s.key}: step_s must be >= 1 (got {s.step_s})", reason="bad_series")
    if len(s.timestamps) != len(s.values):
        raise InputError(
            f"series {s.key}: {len(s.timestamps)} timestamps but {len(s.values)} values", reason="bad_series"
        )
    for a, b in zip(s.timestamps, s.timestamps[1:], strict=False):
        if b <= a:
            raise InputError(
                f"series {s.key}: timestamps must increase ({a} then {b})", reason="timestamp_backwards"
            )


def _clean(v: Any) -> float | None:
    """A gap is ``None``; NaN and infinities are treated as gaps too."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --- one run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Point:
    """One series at one step, while the step is being decided."""

    s: Series
    ss: _SeriesState
    x: float | None
    service: str
    l0: list[Finding]
    ens: float = 0.0
    base: float = 0.0
    med: float | None = None
    z: float = 0.0
    l1: float = 0.0
    l2: float | None = None
    improvement: bool = False
    capped: bool = False


class _Run:
    def __init__(
        self,
        policy: AlertPolicy,
        state: DetectState,
        rules: RuleSet,
        slos: tuple[SloSpec, ...],
        resource: Mapping[str, Mapping[str, str]],
    ) -> None:
        self.p = policy
        self.st = state
        self.rules = rules
        self.slos = slos
        self.resource = resource
        self.changes: list[AlertChange] = []
        self.decisions: list[DecisionRecord] = []

    # The step: L0 + L1 per series, SLOs and L2 per service, then one decision per series.
    def step(self, t: int, items: list[tuple[Series, float | None]]) -> None:
        points = [self._score_l1(t, s, x) for s, x in items]
        points += self._slo_points(t, items)
        self._score_l2(t, points)
        for pt in points:
            self._decide(t, pt)
        self._learn_l2(points)

    def _series_state(self, s: Series) -> _SeriesState:
        fp = s.key.fingerprint()
        ss = self.st.series.get(fp)
        if ss is None:
            det = (
                None
                if s.key.kind is SignalKind.SLO_BURN
                else create(self.p.detector, **self.p.detector_params)
            )
            ss = self.st.series[fp] = _SeriesState(s.key, s.step_s, det)
        return ss

    def _score_l1(self, t: int, s: Series, x: float | None) -> _Point:
        ss = self._series_state(s)
        pt = _Point(s, ss, x, service_of(s.key), self.st.thresholds.evaluate(self.rules, s.key, x))
        if x is None:
            return pt
        if ss.detector is not None:
            pt.ens = ss.detector.update(float(t), x)
        self._baseline(pt)
        direction = self.p.direction(s.key.kind)
        if pt.med is not None:
            worse = (
                (x > pt.med) if direction == "up" else (x < pt.med) if direction == "down" else x != pt.med
            )
            if not worse:
                pt.improvement = pt.ens >= self.p.escalate or abs(pt.z) >= self.p.z_half
                pt.ens = 0.0
        if pt.base >= self.p.escalate:
            pt.l1 = max(pt.base, pt.ens)
        else:
            pt.capped = pt.ens > self.p.escalate
            pt.l1 = max(pt.base, min(pt.ens, self.p.escalate))
        return pt

    def _baseline(self, pt: _Point) -> None:
        ss, x = pt.ss, pt.x
        assert x is not None
        if len(ss.normal) < self.p.baseline_min:
            return
        vals = sorted(ss.normal)
        n = len(vals)
        med = vals[n // 2] if n % 2 else 0.5 * (vals[n // 2 - 1] + vals[n // 2])
        q1, q3 = _quantile(vals, 0.25), _quantile(vals, 0.75)
        mad = sum(abs(v - med) for v in vals) / n
        floor_abs, floor_rel = self.p.min_scale.get(ss.key.kind, _DEFAULT_FLOOR)
        scale = max((q3 - q1) / 1.349, 1.2533 * mad, floor_abs, floor_rel * abs(med), 1e-12)
        z = (x - med) / scale
        direction = self.p.direction(ss.key.kind)
        zd = max(z, 0.0) if direction == "up" else max(-z, 0.0) if direction == "down" else abs(z)
        pt.med, pt.z = med, z
        pt.base = zd * zd / (zd * zd + self.p.z_half * self.p.z_half)

    def _slo_points(self, t: int, items: list[tuple[Series, float | None]]) -> list[_Point]:
        if not self.slos:
            return []
        rate: dict[str, float | None] = {}
        ratio: dict[str, tuple[Series, float | None]] = {}
        for s, x in items:
            if s.key.labels or "->" in s.key.entity:
                continue  # SLOs are on the service-level series
            if s.key.kind is SignalKind.REQUEST_RATE:
                rate[s.key.entity] = x
            elif s.key.kind is SignalKind.ERROR_RATIO:
                ratio[s.key.entity] = (s, x)
        out: list[_Point] = []
        for spec in self.slos:
            for service, (src, x) in sorted(ratio.items()):
                if spec.service.fullmatch(service) is None:
                    continue
                slot = f"{spec.name}|{service}"
                tracker = self.st.burn.get(slot)
                if tracker is None:
                    tracker = self.st.burn[slot] = BurnTracker(spec, src.step_s)
                res = tracker.update(t, rate.get(service), x)
                key = SeriesKey(SignalKind.SLO_BURN, service, (("slo", spec.name),))
                pseudo = Series(key, src.step_s, (t,), (res.burns["1h"],))
                ss = self._series_state(pseudo)
                finding = res.finding(spec)
                pt = _Point(pseudo, ss, res.burns["1h"], service, [finding] if finding else [])
                pt.med = 1.0  # burn 1 spends exactly the budget
                out.append(pt)
        return out

    def _score_l2(self, t: int, points: list[_Point]) -> None:
        cfg = self.p.ml
        if cfg is None:
            return
        rows = self._rows(points, cfg)
        for service, row in sorted(rows.items()):
            n = self.st.ml_steps.get(service, 0) + 1
            self.st.ml_steps[service] = n
            mine = [pt for pt in points if pt.service == service and pt.x is not None]
            escalated = [pt for pt in mine if pt.l1 >= self.p.escalate]
            periodic = self.p.ml_every > 0 and n % self.p.ml_every == 0
            if not escalated and not periodic:
                continue
            model = self.st.ml.get(service)
            score = None if model is None else model.score(row)
            if score is None:
                continue
            for pt in escalated:
                pt.l2 = score
            if not escalated and score >= self.p.threshold:
                detail = "L2 flags the service but no L1 series agrees; L2 alone never pages"
                self.decisions.append(
                    DecisionRecord(t, "", f"service:{service}", "suppress", "ml_only", score, detail)
                )

    def _rows(self, points: list[_Point], cfg: MlConfig) -> dict[str, dict[str, float | None]]:
        import re

        metric_rx = re.compile(cfg.metric_pattern)
        rows: dict[str, dict[str, float | None]] = {}
        for pt in points:
            key = pt.s.key
            if key.kind.value not in cfg.kinds or "->" in key.entity or "operation" in key.label_dict:
                continue
            if key.kind is SignalKind.METRIC and not metric_rx.fullmatch(key.label_dict.get("metric", "")):
                continue
            rows.setdefault(key.entity, {})[feature_name(key)] = pt.x
        return rows

    def _learn_l2(self, points: list[_Point]) -> None:
        cfg = self.p.ml
        if cfg is None:
            return
        rows = self._rows(points, cfg)
        for service, row in sorted(rows.items()):
            bad = any(
                pt.service == service and (pt.ss.is_open or pt.ss.run > 0)
                for pt in points
                if pt.x is not None
            )
            model = self.st.ml.get(service)
            if model is None:
                model = self.st.ml[service] = ServiceModel(cfg)
            model.observe(row, learn=not bad)

    # --- the decision ---------------------------------------------------------------------------

    def _decide(self, t: int, pt: _Point) -> None:
        ss, p = pt.ss, self.p
        ss.last_t = t
        ss.recent.append((t, pt.x))
        while len(ss.recent) > p.evidence_before + p.open_after + p.resolve_after + 1:
            ss.recent.popleft()
        if pt.x is None:
            if ss.is_open and ss.alert is not None:
                self._grow_evidence(ss, t)
            return  # a gap holds every counter
        l0 = max((f.score for f in pt.l0), default=0.0)
        score = l0
        if pt.l1 > score:
            score = pt.l1
        if pt.l2 is not None:
            score = max(score, self._boost(pt))
        anomalous = score >= p.threshold
        critical_rule = any(f.score >= 1.0 for f in pt.l0)
        fast = (
            critical_rule
            or (bool(pt.l0) and score >= p.strong)
            or any(f.detector.startswith("slo:") for f in pt.l0)
        )
        fp = ss.key.fingerprint()
        name = str(ss.key)

        def log(action: Action, reason: str, detail: str = "") -> None:
            self.decisions.append(DecisionRecord(t, fp, name, action, reason, score, detail))

        if pt.improvement:
            log("suppress", "improvement", f"{ss.key.kind.value} moved in the harmless direction")
        if pt.capped and not anomalous:
            log("suppress", "l1_uncorroborated", "onset detector fired but the value is near its baseline")

        if anomalous:
            ss.last_bad = t
        elif ss.flapping and (ss.last_bad is None or t - ss.last_bad >= p.flap_window * ss.step_s):
            ss.flapping = False
            log("info", "flapping_cleared", f"quiet for {p.flap_window} steps")
        if not ss.is_open:
            if anomalous:
                ss.run += 1
                if ss.run == 1:
                    ss.run_start = t
                need = p.fast_open_after if fast else p.open_after
                if ss.run < need:
                    log("suppress", "hysteresis_pending", f"{ss.run} of {need} anomalous steps")
                else:
                    window = p.flap_window * ss.step_s
                    recent_opens = [o for o in ss.opens if t - o < window]
                    if len(recent_opens) >= p.flap_max_opens:
                        ss.flapping = True
                    if ss.flapping and not fast and ss.run < p.flap_hold:
                        log(
                            "suppress",
                            "flapping",
                            f"{len(recent_opens)} openings in the last {p.flap_window} steps; held until the "
                            f"run lasts {p.flap_hold} steps or the series is quiet for {p.flap_window} steps",
                        )
                    else:
                        reason = "threshold"
                        if ss.flapping and not fast:
                            reason = "flapping_sustained"
                        elif fast and ss.run < p.open_after:
                            reason = "fast_open"
                        self._open(t, pt, score)
                        log("open", reason, "")
            else:
                if ss.run:
                    log("suppress", "hysteresis_reset", f"anomalous run of {ss.run} step(s) ended")
                ss.run = 0
                ss.run_start = None
                if (score >= p.escalate or pt.l0) and not pt.capped:
                    log("suppress", "below_threshold", f"score {score:.2f} < {p.threshold}")
        else:
            ss.steps_open += 1
            if anomalous:
                ss.run = 0
                self._refresh(t, pt, score)
            else:
                ss.run += 1
                if ss.run >= p.resolve_after:
                    self._resolve(t, ss)
                    log("resolve", "recovered", f"{p.resolve_after} normal steps")
                else:
                    log("suppress", "resolve_pending", f"{ss.run} of {p.resolve_after} normal steps")
            if ss.is_open:
                self._grow_evidence(ss, t)
        relearn = ss.is_open and ss.steps_open >= p.relearn_after and anomalous
        if relearn and ss.steps_open == p.relearn_after:
            log("info", "relearning", f"open for {p.relearn_after} steps: learning the new level")
        if ss.key.kind is not SignalKind.SLO_BURN and (not anomalous or pt.improvement or relearn):
            ss.normal.append(pt.x)
            while len(ss.normal) > p.baseline_window:
                ss.normal.popleft()

    def _findings(self, pt: _Point) -> tuple[Finding, ...]:
        out = list(pt.l0)
        if pt.ss.detector is not None:
            out.append(
                Finding(
                    pt.ss.detector.name,
                    "L1",
                    round(pt.ens, 6),
                    pt.x,
                    pt.med,
                    "onset detector (registry default)",
                )
            )
            out.append(
                Finding(
                    "baseline",
                    "L1",
                    round(pt.base, 6),
                    pt.x,
                    pt.med,
                    f"robust z {pt.z:+.1f} vs frozen baseline",
                )
            )
        if pt.l2 is not None:
            out.append(Finding("ml", "L2", round(pt.l2, 6), None, None, f"{pt.service} feature vector"))
        return tuple(out)

    def _boost(self, pt: _Point) -> float:
        """L2's corroboration: ``sqrt(baseline * l2_tail)``, 0 without an L2 score."""
        if pt.l2 is None:
            return 0.0
        floor = self.p.ml_floor
        tail = max(0.0, (pt.l2 - floor) / (1.0 - floor)) if floor < 1.0 else 0.0
        return math.sqrt(pt.base * tail)

    def _severity(self, pt: _Point, score: float) -> Severity:
        """The worst of the L0 rules' severities and, when L1/L2 alone would alert, their severity."""
        stat = max(pt.l1, self._boost(pt))
        sev = Severity.INFO
        if stat >= self.p.threshold:
            sev = Severity.CRITICAL if stat >= self.p.critical_score else Severity.WARNING
        for f in pt.l0:
            sev = _worse(sev, _rule_severity(f.score))
        return sev

    def _open(self, t: int, pt: _Point, score: float) -> None:
        ss, p = pt.ss, self.p
        onset = ss.run_start if ss.run_start is not None else t
        start = onset - p.evidence_before * ss.step_s
        values = tuple(v for ts, v in ss.recent if ts >= start)
        first = next((ts for ts, _ in ss.recent if ts >= start), t)
        alert = Alert(
            fingerprint=ss.key.fingerprint(),
            title=_title(ss.key, pt.x, pt.med),
            severity=self._severity(pt, score),
            starts_at=_dt(onset),
            score=round(score, 6),
            labels=labels_for(ss.key, self.resource.get(pt.service, {})),
            findings=self._findings(pt),
            evidence=Evidence(window_start=first, step_s=ss.step_s, values=values),
            updated_at=_dt(t),
        )
        ss.is_open = True
        ss.run = 0
        ss.steps_open = 0
        ss.opens = [o for o in ss.opens if t - o < p.flap_window * ss.step_s] + [t]
        ss.alert = alert
        ss.emitted_score = alert.score
        ss.emitted_severity = alert.severity.value
        self.changes.append(AlertChange("open", t, alert))

    def _refresh(self, t: int, pt: _Point, score: float) -> None:
        ss = pt.ss
        alert = ss.alert
        assert alert is not None
        sev = self._severity(pt, score)
        sev = _worse(sev, alert.severity)  # severity only escalates while open
        if score > alert.score or sev is not alert.severity:
            alert = replace(
                alert,
                score=round(max(score, alert.score), 6),
                severity=sev,
                title=_title(ss.key, pt.x, pt.med) if score > alert.score else alert.title,
                findings=self._findings(pt) if score > alert.score else alert.findings,
                updated_at=_dt(t),
            )
            ss.alert = alert
        if sev.value != ss.emitted_severity or alert.score >= ss.emitted_score + self.p.update_delta:
            ss.emitted_score = alert.score
            ss.emitted_severity = sev.value
            self.changes.append(AlertChange("update", t, alert))
            self.decisions.append(
                DecisionRecord(t, alert.fingerprint, str(ss.key), "update", "escalated", score, sev.value)
            )

    def _grow_evidence(self, ss: _SeriesState, t: int) -> None:
        alert = ss.alert
        assert alert is not None
        ev = alert.evidence
        last = ev.window_start + (len(ev.values) - 1) * ev.step_s
        limit = int(alert.starts_at.timestamp()) + self.p.evidence_after * ss.step_s
        if t > last and t <= limit:
            v = ss.recent[-1][1]
            ss.alert = replace(alert, evidence=replace(ev, values=ev.values + (v,)))

    def _resolve(self, t: int, ss: _SeriesState) -> None:
        alert = ss.alert
        assert alert is not None
        recovered = t - (self.p.resolve_after - 1) * ss.step_s
        done = replace(alert, ends_at=_dt(recovered), updated_at=_dt(t))
        ss.is_open = False
        ss.run = 0
        ss.run_start = None
        ss.steps_open = 0
        ss.alert = None
        self.changes.append(AlertChange("resolve", t, done))


_SEV_ORDER = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def _worse(a: Severity, b: Severity) -> Severity:
    return a if _SEV_ORDER[a] >= _SEV_ORDER[b] else b


def _rule_severity(score: float) -> Severity:
    return Severity.CRITICAL if score >= 1.0 else Severity.WARNING if score >= 0.75 else Severity.INFO


# --- labels and titles ------------------------------------------------------------------------


def service_of(key: SeriesKey) -> str:
    """The service a series belongs to: its entity, or the callee of an edge ``caller->callee``."""
    if "->" in key.entity:
        return key.entity.split("->", 1)[1]
    return key.entity


def labels_for(key: SeriesKey, resource: Mapping[str, str] | None = None) -> dict[str, str]:
    """Alert labels: resource attributes, then the series labels, then service/edge/signal."""
    out = dict(resource or {})
    out.update(key.label_dict)
    out["service"] = service_of(key)
    if "->" in key.entity:
        out["edge"] = key.entity
        out["caller"] = key.entity.split("->", 1)[0]
    out["signal"] = key.kind.value
    return out


_KIND_WORDS = {
    SignalKind.REQUEST_RATE: "request rate",
    SignalKind.ERROR_RATIO: "error ratio",
    SignalKind.LATENCY_P50: "p50 latency",
    SignalKind.LATENCY_P95: "p95 latency",
    SignalKind.LATENCY_P99: "p99 latency",
    SignalKind.LOG_RATE: "log rate",
    SignalKind.LOG_TEMPLATE_RATE: "log template rate",
    SignalKind.NEW_LOG_TEMPLATE: "new log template",
    SignalKind.SLO_BURN: "SLO burn rate",
    SignalKind.MULTIVARIATE: "multivariate score",
    SignalKind.EXTERNAL: "external signal",
}


def _fmt_value(kind: SignalKind, x: float, labels: Mapping[str, str]) -> str:
    unit = labels.get("unit", "")
    if unit == "1" or unit.startswith("{"):
        unit = ""  # UCUM's dimensionless "1" and annotations like "{requests}" read badly in a title
    if kind is SignalKind.ERROR_RATIO:
        return f"{100 * x:.1f}%" if abs(x) >= 0.001 or x == 0 else f"{100 * x:.3f}%"
    if kind in (SignalKind.REQUEST_RATE, SignalKind.LOG_RATE, SignalKind.LOG_TEMPLATE_RATE):
        return f"{x:.3g}/s"
    if kind in (SignalKind.LATENCY_P50, SignalKind.LATENCY_P95, SignalKind.LATENCY_P99):
        return f"{x:.3g} {unit or 'ms'}"
    if kind is SignalKind.SLO_BURN:
        return f"{x:.1f}x"
    return f"{x:.3g}" + (f" {unit}" if unit else "")


def _title(key: SeriesKey, x: float | None, baseline: float | None) -> str:
    labels = key.label_dict
    what = (
        labels.get("metric", "metric")
        if key.kind is SignalKind.METRIC
        else _KIND_WORDS.get(key.kind, key.kind.value)
    )
    who = key.entity + (f" {labels['operation']}" if "operation" in labels else "")
    if "severity" in labels:
        who += f" {labels['severity']}"  # log rate per severity: "checkout ERROR log rate"
    if key.kind is SignalKind.SLO_BURN:
        who += f" {labels.get('slo', '')}".rstrip()
    text = f"{who} {what}"
    if x is not None:
        text += f" {_fmt_value(key.kind, x, labels)}"
        if baseline is not None:
            text += f" (baseline {_fmt_value(key.kind, baseline, labels)})"
    return text


# --- serialisation helpers --------------------------------------------------------------------


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def _quantile(sorted_vals: Sequence[float], q: float) -> float:
    pos = q * (len(sorted_vals) - 1)
    lo = int(pos)
    if lo + 1 >= len(sorted_vals):
        return sorted_vals[-1]
    return sorted_vals[lo] + (sorted_vals[lo + 1] - sorted_vals[lo]) * (pos - lo)


def _key_to_json(key: SeriesKey) -> dict[str, Any]:
    return {"kind": key.kind.value, "entity": key.entity, "labels": [list(p) for p in key.labels]}


def _key_from_json(d: Mapping[str, Any]) -> SeriesKey:
    return SeriesKey(SignalKind(d["kind"]), str(d["entity"]), tuple((str(k), str(v)) for k, v in d["labels"]))


def _alert_to_json(a: Alert) -> dict[str, Any]:
    return {
        "fingerprint": a.fingerprint,
        "title": a.title,
        "severity": a.severity.value,
        "starts_at": a.starts_at.timestamp(),
        "ends_at": None if a.ends_at is None else a.ends_at.timestamp(),
        "score": a.score,
        "labels": dict(a.labels),
        "findings": [f.to_json() for f in a.findings],
        "evidence": a.evidence.to_json(),
        "source": a.source,
        "updated_at": None if a.updated_at is None else a.updated_at.timestamp(),
    }


def _alert_from_json(d: Mapping[str, Any]) -> Alert:
    def ts(v: Any) -> datetime | None:
        return None if v is None else datetime.fromtimestamp(float(v), tz=UTC)

    starts = ts(d["starts_at"])
    assert starts is not None
    return Alert(
        fingerprint=str(d["fingerprint"]),
        title=str(d["title"]),
        severity=Severity(d["severity"]),
        starts_at=starts,
        ends_at=ts(d["ends_at"]),
        score=float(d["score"]),
        labels={str(k): str(v) for k, v in d["labels"].items()},
        findings=tuple(Finding(**f) for f in d["findings"]),
        evidence=Evidence.from_json(d["evidence"]),
        source=str(d["source"]),
        updated_at=ts(d["updated_at"]),
    )


def alerts_from_changes(changes: Iterable[AlertChange]) -> list[Alert]:
    """The latest version of every alert in ``changes`` (handy for callers that keep no state)."""
    latest: dict[tuple[str, datetime], Alert] = {}
    for c in changes:
        latest[(c.alert.fingerprint, c.alert.starts_at)] = c.alert
    return list(latest.values())
