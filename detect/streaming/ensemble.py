"""The default layer-1 detector: several causal statistics, each normalised by its own history.

Why this shape:

* **Several views.** A rolling robust z-score (spikes, level changes), an EWMA z-score (fast
  adaptation), a robust z-score of first differences (sudden jumps inside the normal range), a
  robust CUSUM (slow level shifts) and a daily seasonal profile (values unusual for the time of day).
* **Self-normalised.** Raw z-scores are not comparable between streams (tweet counts are heavy-tailed,
  temperatures are not), so each view's z is divided by the largest z that view produced over the
  last ``history`` points (never less than ``z_floor``). A ratio above 1 means "more surprising than
  anything recently seen here", which makes one threshold work across very different series.
* **Sparse output.** The worst view's ratio ``u`` becomes ``u^2 / (1 + u^2)`` (0.5 at a new record).
  After a score above 0.5 the detector enters a ``cooldown``: during it a score must beat the peak
  that opened it or it is halved. An incident then pages once instead of on every point.
* **Warm-up.** Nothing scores above 0 during the first ``warmup`` points, while the views learn; a
  view that starts late (the seasonal one needs two days) joins after ``warmup / 2`` points of output.
* **Contextual novelty** (:mod:`detect.streaming.context`, CAD OSE-style). Each point is also
  quantised into ``context_levels`` bins of the warm-up range and the detector checks whether the
  last 1..``context_orders`` levels ever occurred before; the fraction of new contexts ``c`` (after
  a CAD-style rest period) joins as a second opinion:
  ``score = (max(w * e, c) + b * e * c) / (w + b)`` with ``e`` the statistical score above,
  ``w = context_weight`` and ``b = agree_weight``. ``context_weight = 0`` switches it off.
  On NAB this lifted the standard score from 55.55 to 67.23 (see ``detect/nab/bench.py``).
* **Defaults relative to the warm-up.** ``history = 2 * warmup`` and ``cooldown = warmup / 2``; on NAB
  the bench passes NAB's probationary length as ``warmup``, as NAB does for every detector.

Vectors are scored per dimension and the worst dimension wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from detect.base import Detector, Value, check_point
from detect.streaming.changepoint import CusumKernel
from detect.streaming.context import ContextKernel, RestGate
from detect.streaming.ewma import EwmaKernel
from detect.streaming.robust import RobustZKernel
from detect.streaming.seasonal import SeasonalKernel

__all__ = ["DiffKernel", "Ensemble", "SlidingMax"]

VIEWS = ("robust", "ewma", "diff", "cusum", "seasonal")
# "robust" is available but off by default: on NAB it duplicated what ewma + cusum already saw.
DEFAULT_VIEWS = ("ewma", "diff", "cusum", "seasonal")


class SlidingMax:
    """Maximum of roughly the last ``size`` values in O(1): the max over ``blocks`` completed blocks
    of ``size // blocks`` points plus the block being filled.

    The covered span therefore varies between ``size`` and ``size + size // blocks`` points; an exact
    monotonic deque costs several times more per point and the ensemble does not need the precision.
    """

    __slots__ = ("size", "blocks", "_block", "_done", "_cur", "_fill", "_past", "live")

    def __init__(self, size: int, blocks: int = 8) -> None:
        self.size = size
        self.blocks = max(1, min(blocks, size))
        self._block = max(1, size // self.blocks)
        self._done: list[float] = []  # maxima of completed blocks, oldest first
        self._cur = 0.0  # values are non-negative surprises, so 0 is a neutral start
        self._fill = 0
        self._past = 0.0  # max(self._done), cached
        self.live = 0  # how many positive values were seen: a view's history only counts once it has one

    def add(self, v: float) -> None:
        if v > 0.0:
            self.live += 1
            if v > self._cur:
                self._cur = v
        self._fill += 1
        if self._fill >= self._block:
            done = self._done
            done.append(self._cur)
            if len(done) > self.blocks:
                del done[0]
            self._past = max(done)
            self._cur = 0.0
            self._fill = 0

    def max(self) -> float:
        return self._past if self._past > self._cur else self._cur

    def state(self) -> dict[str, Any]:
        return {"done": list(self._done), "cur": self._cur, "fill": self._fill, "live": self.live}

    def load(self, state: Mapping[str, Any]) -> None:
        self._done = [float(v) for v in state["done"]]
        self._cur = float(state["cur"])
        self._fill = int(state["fill"])
        self.live = int(state["live"])
        self._past = max(self._done) if self._done else 0.0


class DiffKernel:
    """Robust z-score of the first difference ``x_t - x_{t-1}``."""

    __slots__ = ("_k", "_prev")

    def __init__(self, window: int) -> None:
        self._k = RobustZKernel(window)
        self._prev: float | None = None

    def step(self, t: float, x: float) -> float:
        prev = self._prev
        self._prev = x
        if prev is None:
            return 0.0
        return self._k.step(t, x - prev)

    def state(self) -> dict[str, Any]:
        return {"k": self._k.state(), "prev": self._prev}

    def load(self, state: Mapping[str, Any]) -> None:
        self._k.load(state["k"])
        self._prev = None if state["prev"] is None else float(state["prev"])


class _Channel:
    """All views of one dimension, with their history maxima."""

    __slots__ = ("views", "maxima", "pairs", "context")

    def __init__(self, det: Ensemble) -> None:
        self.context = (
            ContextKernel(det.context_levels, det.context_orders, det.warmup)
            if det.context_weight > 0
            else None
        )
        self.views: list[Any] = []
        for name in det.views:
            if name == "robust":
                self.views.append(RobustZKernel(det.window))
            elif name == "ewma":
                self.views.append(EwmaKernel(det.alpha))
            elif name == "diff":
                self.views.append(DiffKernel(det.window))
            elif name == "cusum":
                self.views.append(CusumKernel(det.window))
            elif name == "seasonal":
                self.views.append(SeasonalKernel(det.period))
        self.maxima = [SlidingMax(det.history) for _ in self.views]
        self.pairs = list(zip(self.views, self.maxima, strict=True))


class Ensemble(Detector):
    """Self-normalised ensemble of the layer-1 views (see the module docstring)."""

    name = "ensemble"

    def __init__(
        self,
        warmup: int = 300,
        history: int | None = None,
        cooldown: int | None = None,
        window: int = 500,
        alpha: float = 0.05,
        period: float = 86400.0,
        z_floor: float = 5.0,
        views: list[str] | tuple[str, ...] = DEFAULT_VIEWS,
        context_weight: float = 1.3,
        agree_weight: float = 0.2,
        context_levels: int = 4,
        context_orders: int = 5,
        context_rest: int | None = None,
    ) -> None:
        unknown = set(views) - set(VIEWS)
        if unknown:
            raise ValueError(f"unknown views {sorted(unknown)}; choose from {VIEWS}")
        self.warmup = int(warmup)
        self.history = int(history) if history is not None else max(1, 2 * self.warmup)
        self.cooldown = int(cooldown) if cooldown is not None else max(1, self.warmup // 2)
        self.window = int(window)
        self.alpha = float(alpha)
        self.period = float(period)
        self.z_floor = float(z_floor)
        self.views = tuple(views)
        self.context_weight = float(context_weight)
        self.agree_weight = float(agree_weight)
        self.context_levels = int(context_levels)
        self.context_orders = int(context_orders)
        self.context_rest = int(context_rest) if context_rest is not None else max(1, self.warmup // 5)
        if self.context_weight < 0 or self.agree_weight < 0:
            raise ValueError("context_weight and agree_weight must be >= 0")
        if self.context_levels < 1 or self.context_orders < 1:
            raise ValueError("context_levels and context_orders must be >= 1")
        self._gate = RestGate(self.context_rest, 0.75)
        self._channels: list[_Channel] = []
        self._n = 0
        self._last_t: float | None = None
        self._since = 1 << 30  # points since the cooldown opened
        self._peak = 0.0

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        return {"warmup": 50, "history": 500, "window": 100}

    def get_params(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "history": self.history,
            "cooldown": self.cooldown,
            "window": self.window,
            "alpha": self.alpha,
            "period": self.period,
            "z_floor": self.z_floor,
            "views": list(self.views),
            "context_weight": self.context_weight,
            "agree_weight": self.agree_weight,
            "context_levels": self.context_levels,
            "context_orders": self.context_orders,
            "context_rest": self.context_rest,
        }

    def update(self, t: float, x: Value) -> float:
        if type(x) is float and type(t) is float and math.isfinite(x) and math.isfinite(t):
            if self._last_t is not None and t < self._last_t:
                check_point(t, x, self._last_t, None)
            xs: tuple[float, ...] = (x,)
        else:
            xs = check_point(t, x, self._last_t, len(self._channels) or None)
        if not self._channels:
            self._channels = [_Channel(self) for _ in xs]
        elif len(xs) != len(self._channels):
            check_point(t, x, self._last_t, len(self._channels))
        self._last_t = t
        self._n += 1
        scoring = self._n > self.warmup
        floor = self.z_floor
        # A view that only just started producing surprises (the seasonal profile after its first
        # cycles) has no history to be normalised by yet; it joins after half a warm-up of output.
        live_min = self.warmup >> 1
        u = 0.0
        c = 0.0
        for ch, v in zip(self._channels, xs, strict=True):
            ctx = ch.context
            if ctx is not None:
                r = ctx.step(v)
                if r > c:
                    c = r
                if ctx.replay_age < self._gate._since:  # the warm-up replay just ended
                    self._gate._since = ctx.replay_age
                    ctx.replay_age = 1 << 30
            for view, mx in ch.pairs:
                z = view.step(t, v)
                cur = mx._cur
                if scoring and mx.live >= live_min:
                    ref = mx._past if mx._past > cur else cur
                    r = z / (ref if ref > floor else floor)
                    if r > u:
                        u = r
                # SlidingMax.add(z), inlined: this loop is the detector's hot path.
                if z > 0.0:
                    mx.live += 1
                    if z > cur:
                        mx._cur = cur = z
                fill = mx._fill + 1
                if fill >= mx._block:
                    done = mx._done
                    done.append(cur)
                    if len(done) > mx.blocks:
                        del done[0]
                    mx._past = max(done)
                    mx._cur = 0.0
                    mx._fill = 0
                else:
                    mx._fill = fill
        score = u * u / (1.0 + u * u)
        # Cooldown: after an alert-level score, only a stronger one gets through undamped.
        since = self._since + 1
        if since <= self.cooldown:
            if score > self._peak:
                self._peak = score
                since = 0
            else:
                score *= 0.5
        elif score > 0.5:
            self._peak = score
            since = 0
        self._since = since
        a = self.context_weight
        if a > 0.0:
            # Contextual novelty joins as a second opinion: the larger of the two (novelty
            # discounted by ``context_weight``) plus a bonus when both agree.
            c = self._gate(c)
            b = self.agree_weight
            m = a * score
            if c > m:
                m = c
            score = (m + b * score * c) / (a + b)
        return score

    def _get_state(self) -> dict[str, Any]:
        return {
            "n": self._n,
            "last_t": self._last_t,
            "since": self._since,
            "peak": self._peak,
            "gate": self._gate._since,
            "channels": [
                {
                    "views": [v.state() for v in ch.views],
                    "maxima": [m.state() for m in ch.maxima],
                    "context": None if ch.context is None else ch.context.state(),
                }
                for ch in self._channels
            ],
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self._n = int(state["n"])
        self._last_t = None if state["last_t"] is None else float(state["last_t"])
        self._since = int(state["since"])
        self._peak = float(state["peak"])
        self._gate._since = int(state["gate"])
        self._channels = []
        for cs in state["channels"]:
            ch = _Channel(self)
            for view, vs in zip(ch.views, cs["views"], strict=True):
                view.load(vs)
            for mx, ms in zip(ch.maxima, cs["maxima"], strict=True):
                mx.load(ms)
            ch.pairs = list(zip(ch.views, ch.maxima, strict=True))
            if ch.context is not None:
                ch.context.load(cs["context"])
            self._channels.append(ch)
