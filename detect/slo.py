"""SLO burn-rate alerts: the Google SRE workbook's multi-window, multi-burn-rate recipe.

For an availability SLO with objective ``o`` the error budget is ``1 - o``; the **burn rate** over a
window is the window's error ratio divided by the budget (burn 1 spends the budget exactly over the
SLO period). The workbook ("Alerting on SLOs", recommendation 6) alerts when a long *and* a short
window both burn fast; the short window makes the alert reset soon after the burning stops:

=========  ===========  ============  ==========  ===================================
severity   long window  short window  burn rate   budget spent (30-day SLO period)
=========  ===========  ============  ==========  ===================================
page       1 h          5 min         14.4        2% in 1 h
page       6 h          30 min        6           5% in 6 h
ticket     1 day        2 h           3           10% in 1 day
ticket     3 days       6 h           1           10% in 3 days
=========  ===========  ============  ==========  ===================================

Conventions:

* **Windows in steps.** A window of ``w`` seconds covers ``max(1, round(w * window_scale / step_s))``
  steps of the series, so 5 min on a 60 s grid is 5 steps and on a 5 min grid 1 step.
  ``window_scale`` (default 1) shrinks every window alike, for replays of short recordings.
* **Error ratio of a window** is request-weighted: ``sum(rate_i * ratio_i) / sum(rate_i)``; the
  unit of the request rate cancels out. Without a request-rate series every step weighs 1.
* **Before a window is full** its burn is computed over the steps seen so far (as Prometheus' rate
  does over a short history); a step without requests or without an error ratio adds nothing.
* Page → :attr:`Severity.CRITICAL`, ticket → :attr:`Severity.WARNING`. Only ``kind =
  "availability"`` exists today; other kinds are rejected by the rules parser, naming the field.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from detect.rules import check_unknown, compile_regex, entry_error, get_field
from warroom.errors import InputError
from warroom.model import Finding, Severity

__all__ = ["BURN_WINDOWS", "BurnResult", "BurnTracker", "BurnWindow", "SloSpec", "window_steps"]

STATE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """One line of the recipe: both windows must burn at least ``factor``."""

    long_s: int
    short_s: int
    factor: float
    severity: Severity

    @property
    def label(self) -> str:
        return f"{_dur(self.long_s)}/{_dur(self.short_s)}"


BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(3600, 300, 14.4, Severity.CRITICAL),
    BurnWindow(6 * 3600, 1800, 6.0, Severity.CRITICAL),
    BurnWindow(86400, 2 * 3600, 3.0, Severity.WARNING),
    BurnWindow(3 * 86400, 6 * 3600, 1.0, Severity.WARNING),
)

_SLO_FIELDS = {"name", "service", "objective", "kind", "window_scale", "description"}
_SLO_KINDS = ("availability",)


def window_steps(seconds: float, step_s: int, scale: float = 1.0) -> int:
    """How many steps of ``step_s`` seconds a window of ``seconds`` (times ``scale``) covers."""
    return max(1, round(seconds * scale / step_s))


@dataclass(frozen=True, slots=True)
class SloSpec:
    """One ``[[slo]]`` entry; ``service`` is a regex matched against whole service names."""

    name: str
    service: re.Pattern[str]
    objective: float
    kind: str = "availability"
    window_scale: float = 1.0
    description: str = ""

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    @classmethod
    def from_toml(cls, entry: Mapping[str, Any], index: int, source: str) -> SloSpec:
        raw_name = entry.get("name")
        name = raw_name if isinstance(raw_name, str) and raw_name else None
        where = (source, "slo", index, name)
        get_field(entry, "name", str, where, default="")
        check_unknown(entry, _SLO_FIELDS, where)
        service_text = get_field(entry, "service", str, where)
        service = compile_regex(service_text, "service", where)
        objective = float(get_field(entry, "objective", (int, float), where))
        if not 0.0 < objective < 1.0:
            raise entry_error(
                *where, "objective", f"must be strictly between 0 and 1, e.g. 0.999 (got {objective})"
            )
        kind = get_field(entry, "kind", str, where, default="availability")
        if kind not in _SLO_KINDS:
            raise entry_error(*where, "kind", f"must be one of {', '.join(_SLO_KINDS)} (got {kind!r})")
        scale = float(get_field(entry, "window_scale", (int, float), where, default=1.0))
        if not (math.isfinite(scale) and scale > 0):
            raise entry_error(*where, "window_scale", f"must be a positive number (got {scale})")
        return cls(
            name=name or f"{service_text}-{kind}",
            service=service,
            objective=objective,
            kind=kind,
            window_scale=scale,
            description=get_field(entry, "description", str, where, default=""),
        )


@dataclass(frozen=True, slots=True)
class BurnResult:
    """Burn rates at one step (window label → burn) and the recipe lines that fire."""

    t: int
    burns: dict[str, float]
    firing: tuple[BurnWindow, ...]

    @property
    def severity(self) -> Severity | None:
        if any(w.severity is Severity.CRITICAL for w in self.firing):
            return Severity.CRITICAL
        return Severity.WARNING if self.firing else None

    def finding(self, spec: SloSpec) -> Finding | None:
        if not self.firing:
            return None
        top = self.firing[0]
        long_burn = self.burns[_dur(top.long_s)]
        short_burn = self.burns[_dur(top.short_s)]
        action = "page" if top.severity is Severity.CRITICAL else "ticket"
        return Finding(
            detector=f"slo:{spec.name}",
            layer="L0",
            score=1.0 if top.severity is Severity.CRITICAL else 0.75,
            observed=long_burn,
            baseline=top.factor,
            detail=(
                f"{action}: burn {long_burn:.1f} over {_dur(top.long_s)} and {short_burn:.1f} over "
                f"{_dur(top.short_s)} >= {top.factor:g} (objective {spec.objective:g})"
            ),
        )


class BurnTracker:
    """Burn rates of one SLO on one service, fed one step at a time (no look-ahead)."""

    def __init__(self, spec: SloSpec, step_s: int) -> None:
        if step_s < 1:
            raise InputError(f"step_s must be >= 1 (got {step_s})", reason="bad_step")
        self.spec = spec
        self.step_s = int(step_s)
        self.steps = {
            _dur(s): window_steps(s, self.step_s, spec.window_scale)
            for w in BURN_WINDOWS
            for s in (w.long_s, w.short_s)
        }
        size = max(self.steps.values())
        self._req: deque[float] = deque(maxlen=size)
        self._err: deque[float] = deque(maxlen=size)
        self.last_t: int | None = None

    def update(self, t: int, request_rate: float | None, error_ratio: float | None) -> BurnResult:
        """Add the step at ``t`` and return the burn rates of every window ending at ``t``."""
        if self.last_t is not None and t <= self.last_t:
            raise InputError(f"SLO step {t} is not after {self.last_t}", reason="timestamp_backwards")
        self.last_t = t
        weight = 1.0 if request_rate is None else request_rate
        ok = (
            error_ratio is not None
            and math.isfinite(error_ratio)
            and math.isfinite(weight)
            and weight > 0
            and (request_rate is None or math.isfinite(request_rate))
        )
        if ok:
            assert error_ratio is not None
            self._req.append(weight)
            self._err.append(weight * min(1.0, max(0.0, error_ratio)))
        else:
            self._req.append(0.0)
            self._err.append(0.0)
        burns = {label: self.burn(n) for label, n in self.steps.items()}
        firing = tuple(
            w
            for w in BURN_WINDOWS
            if burns[_dur(w.long_s)] >= w.factor and burns[_dur(w.short_s)] >= w.factor
        )
        return BurnResult(t, burns, firing)

    def burn(self, n: int) -> float:
        """Burn rate over the last ``n`` steps (fewer while the history is shorter)."""
        k = min(n, len(self._req))
        if k == 0:
            return 0.0
        req = math.fsum(islice(reversed(self._req), k))
        if req <= 0:
            return 0.0
        err = math.fsum(islice(reversed(self._err), k))
        return (err / req) / self.spec.budget

    def state(self) -> dict[str, Any]:
        return {"req": list(self._req), "err": list(self._err), "last_t": self.last_t}

    def load(self, state: Mapping[str, Any]) -> None:
        self._req.clear()
        self._err.clear()
        self._req.extend(float(v) for v in state["req"])
        self._err.extend(float(v) for v in state["err"])
        self.last_t = None if state["last_t"] is None else int(state["last_t"])

    def to_json(self) -> str:
        return json.dumps(
            {"format": STATE_FORMAT, "slo": self.spec.name, "step_s": self.step_s, **self.state()}
        )

    @classmethod
    def from_json(cls, spec: SloSpec, text: str | bytes) -> BurnTracker:
        payload = json.loads(text)
        if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
            raise InputError("unsupported SLO state format", reason="bad_state_format")
        tracker = cls(spec, int(payload["step_s"]))
        tracker.load(payload)
        return tracker


def _dur(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
