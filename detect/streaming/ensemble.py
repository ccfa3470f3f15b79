"""The default layer-1 detector: several causal statistics, each normalised by its own history.

Why this shape:

* **Several views.** A rolling robust z-score (spikes, level changes), an EWMA z-score (fast
  adaptation), a robust z-score of first differences (sudden jumps inside the normal range), a
  robust CUSUM (slow level shifts) and a daily seasonal profile (values unusual for the time of day).
* **Self-normalised.** Raw z-scores are not comparable between streams (tweet counts are heavy-tailed,
  temperatures are not), so each view's z is divided by a reference: the largest z that view produced
  over the last ``history`` points (never less than ``z_floor``), or ``long_weight`` times the largest
  over the last ``long_history`` points if that is bigger. A ratio above 1 means "more surprising than
  anything recently seen here, and not far below the worst of the last few weeks": the long memory
  stops a bursty stream from paging on every new 5-day record. Both maxima come from one list of block
  maxima, so the long memory costs a comparison per point.
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
* **Final quiet period.** For ``suppress`` points after a combined score of at least 0.5 every score
  is halved: NAB (and a pager) rewards the first alert of an incident and punishes each repeat.
* **Defaults relative to the warm-up.** ``history = 2 * warmup``, ``long_history = 6 * warmup``,
  ``cooldown = warmup / 2`` and ``suppress = warmup / 20``; on NAB the bench passes NAB's
  probationary length as ``warmup``, as NAB does for every detector.
* **Speed.** One scalar stream with the default views runs through a single inlined function
  (:meth:`Ensemble._update_fused`, same maths as the generic loop, checked by the tests); vectors and
  custom view lists take the generic loop.

NAB v1.1 (``python -m detect.nab.bench``, standard / low-FP / low-FN): 55.55 standard for the
statistical views alone; 67.23 / 55.21 / 73.45 with the context view; 70.23 / 62.22 / 74.98 with the
four context orders instead of five (+0.2, and cheaper), the quiet period (+1.1 standard, +2.2
low-FP) and the long memory (+1.7, +4.4). Neighbouring settings of the new knobs stay within about half a
point (``long_weight`` 0.55-0.7, ``long_history`` 5-7 warm-ups, ``suppress`` 0.03-0.1 warm-ups), and a
leave-one-category-out check picks the same defaults from the other categories in 6 of 7 folds.

Vectors are scored per dimension and the worst dimension wins.
"""

from __future__ import annotations

import math
from bisect import bisect_left as _bisect_left
from bisect import insort as _insort
from collections.abc import Mapping
from typing import Any

from detect.base import Detector, Value, check_point
from detect.streaming.changepoint import CusumKernel
from detect.streaming.context import ContextKernel, RestGate
from detect.streaming.ewma import EwmaKernel
from detect.streaming.robust import _IQR_TO_SIGMA, _MEAN_ABS_TO_SIGMA, RobustZKernel
from detect.streaming.seasonal import SeasonalKernel

__all__ = ["DiffKernel", "Ensemble", "SlidingMax"]

_floor = math.floor
_sqrt = math.sqrt

VIEWS = ("robust", "ewma", "diff", "cusum", "seasonal")
# "robust" is available but off by default: on NAB it duplicated what ewma + cusum already saw.
DEFAULT_VIEWS = ("ewma", "diff", "cusum", "seasonal")


class SlidingMax:
    """Maxima of roughly the last ``size`` values, and of the last ``long_size``, in O(1).

    The values are grouped in blocks of ``size // blocks`` points; :meth:`max` is the maximum over the
    last ``blocks`` completed blocks plus the block being filled, so it covers between ``size`` and
    ``size + size // blocks`` points (an exact monotonic deque costs several times more per point and
    the ensemble does not need the precision). :meth:`long_max` does the same over as many blocks as
    cover ``long_size`` (``0``: no long memory). Both only change when a block completes, and so does
    the cached part of :meth:`ref`, the ensemble's normaliser.
    """

    __slots__ = (
        "size",
        "blocks",
        "keep",
        "long_weight",
        "floor",
        "_block",
        "_done",
        "_cur",
        "_fill",
        "_past",
        "_long",
        "_ref",
        "live",
    )

    def __init__(
        self, size: int, blocks: int = 8, long_size: int = 0, long_weight: float = 0.0, floor: float = 0.0
    ) -> None:
        self.size = size
        self.long_weight = long_weight
        self.floor = floor
        self.blocks = max(1, min(blocks, size))
        self._block = max(1, size // self.blocks)
        # Completed blocks retained: enough for the long memory, never fewer than the short one needs.
        self.keep = max(self.blocks, -(-long_size // self._block))
        self._done: list[float] = []  # maxima of completed blocks, oldest first
        self._cur = 0.0  # values are non-negative surprises, so 0 is a neutral start
        self._fill = 0
        self._past = 0.0  # max of the last ``blocks`` completed blocks, cached
        self._long = 0.0  # max of every retained block, cached
        self._ref = floor  # max(_past, long_weight * _long, floor), cached
        self.live = 0  # how many positive values were seen: a view's history only counts once it has one

    def add(self, v: float) -> None:
        if v > 0.0:
            self.live += 1
            if v > self._cur:
                self._cur = v
        self._fill += 1
        if self._fill >= self._block:
            self._close_block()

    def _close_block(self) -> None:
        done = self._done
        done.append(self._cur)
        if len(done) > self.keep:
            del done[0]
        self._refresh()
        self._cur = 0.0
        self._fill = 0

    def _refresh(self) -> None:
        done = self._done
        self._long = max(done) if done else 0.0
        self._past = max(done[-self.blocks :]) if len(done) > self.blocks else self._long
        ref = self.long_weight * self._long
        if self._past > ref:
            ref = self._past
        self._ref = ref if ref > self.floor else self.floor

    def max(self) -> float:
        return self._past if self._past > self._cur else self._cur

    def long_max(self) -> float:
        return self._long if self._long > self._cur else self._cur

    def ref(self) -> float:
        """``max(max(), long_weight * long_max(), floor)``: what a new value is divided by."""
        return self._ref if self._ref > self._cur else self._cur

    def state(self) -> dict[str, Any]:
        return {"done": list(self._done), "cur": self._cur, "fill": self._fill, "live": self.live}

    def load(self, state: Mapping[str, Any]) -> None:
        self._done = [float(v) for v in state["done"]][-self.keep :]
        self._cur = float(state["cur"])
        self._fill = int(state["fill"])
        self.live = int(state["live"])
        self._refresh()


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
                self.views.append(CusumKernel(det.window, h=det.cusum_h))
            elif name == "seasonal":
                self.views.append(SeasonalKernel(det.period))
        long_size = det.long_history if det.long_weight > 0 else 0
        self.maxima = [
            SlidingMax(det.history, long_size=long_size, long_weight=det.long_weight, floor=det.z_floor)
            for _ in self.views
        ]
        self.pairs = list(zip(self.views, self.maxima, strict=True))


class Ensemble(Detector):
    """Self-normalised ensemble of the layer-1 views (see the module docstring)."""

    name = "ensemble"
    #: Use the inlined single-stream path when it applies (tests switch it off to compare the two).
    fused: bool = True

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
        context_orders: int = 4,
        context_rest: int | None = None,
        long_history: int | None = None,
        long_weight: float = 0.65,
        suppress: int | None = None,
        cusum_h: float = 12.0,
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
        self.long_history = int(long_history) if long_history is not None else max(1, 6 * self.warmup)
        self.long_weight = float(long_weight)
        self.suppress = int(suppress) if suppress is not None else max(1, self.warmup // 20)
        self.cusum_h = float(cusum_h)
        if self.context_weight < 0 or self.agree_weight < 0:
            raise ValueError("context_weight and agree_weight must be >= 0")
        if self.context_levels < 1 or self.context_orders < 1:
            raise ValueError("context_levels and context_orders must be >= 1")
        if not self.z_floor > 0.0:
            raise ValueError("z_floor must be > 0")
        if not 0.0 <= self.long_weight <= 1.0:
            raise ValueError("long_weight must be in [0, 1]")
        if self.suppress < 0 or self.cusum_h <= 0:
            raise ValueError("suppress must be >= 0 and cusum_h > 0")
        self._gate = RestGate(self.context_rest, 0.75)
        self._channels: list[_Channel] = []
        self._n = 0
        self._last_t: float | None = None
        self._since = 1 << 30  # points since the cooldown opened
        self._peak = 0.0
        self._quiet = 1 << 30  # points since the last combined score >= 0.5
        # One scalar stream with the default views takes a single inlined function (same scores).
        self._fast = False

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
            "long_history": self.long_history,
            "long_weight": self.long_weight,
            "suppress": self.suppress,
            "cusum_h": self.cusum_h,
        }

    def update(self, t: float, x: Value) -> float:
        # Hot path: a finite float after a non-decreasing float stamp on a one-channel detector
        # (``v - v == 0`` is False exactly for NaN and infinities).
        if self._fast and type(x) is float and type(t) is float and x - x == 0.0 and t - t == 0.0:
            if t >= self._last_t:  # type: ignore[operator]  # set whenever _fast is
                return self._update_fused(t, x)
        if type(x) is float and type(t) is float and math.isfinite(x) and math.isfinite(t):
            if self._last_t is not None and t < self._last_t:
                check_point(t, x, self._last_t, None)
            xs: tuple[float, ...] = (x,)
        else:
            xs = check_point(t, x, self._last_t, len(self._channels) or None)
        if not self._channels:
            self._channels = [_Channel(self) for _ in xs]
            self._fast = self.fused and len(xs) == 1 and self.views == DEFAULT_VIEWS
        elif len(xs) != len(self._channels):
            check_point(t, x, self._last_t, len(self._channels))
        if self._fast:
            return self._update_fused(t, xs[0])
        return self._update_generic(t, xs)

    def _update_generic(self, t: float, xs: tuple[float, ...]) -> float:
        self._last_t = t
        self._n += 1
        scoring = self._n > self.warmup
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
                if scoring and mx.live >= live_min:
                    r = z / mx.ref()
                    if r > u:
                        u = r
                mx.add(z)
        return self._finish(u, c)

    def _finish(self, u: float, c: float) -> float:
        """Cooldown, context combination and quiet period, shared by both paths."""
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
            gate = self._gate
            gs = gate._since + 1
            gate._since = 0 if c >= gate.base else gs
            if gs <= gate.rest:
                c = 0.0
            b = self.agree_weight
            m = a * score
            if c > m:
                m = c
            score = (m + b * score * c) / (a + b)
        # Quiet period: repeats shortly after an alert-level score are halved.
        quiet = self._quiet + 1
        self._quiet = 0 if score >= 0.5 else quiet
        if quiet <= self.suppress:
            score *= 0.5
        return score

    def _update_fused(self, t: float, x: float) -> float:
        """The single-stream default ensemble in one function (same maths as the generic loop).

        The context memory, every view and the history maxima are inlined (the cooldown, context gate
        and quiet period are shared with the generic path through :meth:`_finish`): on one core the
        generic path spends most of its time in method calls, not arithmetic. The tests check that both
        paths return identical scores.
        """
        ch = self._channels[0]
        ew, df, cu, se = ch.views
        self._last_t = t
        n = self._n + 1
        self._n = n
        scoring = n > self.warmup

        # --- contextual novelty ---------------------------------------------------------------
        ctx = ch.context
        c = 0.0
        if ctx is not None:
            if ctx._buf is None:
                levels = ctx.levels
                q = _floor((x - ctx._lo) / ctx._step)
                if q >= levels:
                    q = levels - 1 if q == levels else levels
                elif q < 0:
                    q = 0 if q == -1 else -1
                key = digit = q + 2
                seen = ctx._seen
                radix = ctx._radix
                novel = 0
                if key not in seen:
                    seen.add(key)
                    novel = 1
                hist = ctx._hist
                for d in hist:
                    key = key * radix + d
                    if key not in seen:
                        seen.add(key)
                        novel += 1
                c = novel / (len(hist) + 1)
                hist.insert(0, digit)
                if len(hist) >= ctx.orders:
                    hist.pop()
            else:
                ctx.step(x)
                if ctx.replay_age < self._gate._since:  # the warm-up replay just ended
                    self._gate._since = ctx.replay_age
                    ctx.replay_age = 1 << 30

        # --- EWMA z -------------------------------------------------------------------------------
        z_ew = 0.0
        en = ew._n
        if en == 0:
            ew._mean = x
        else:
            mean = ew._mean
            var = ew._var
            d = x - mean
            if en >= ew.min_points:
                sd = _sqrt(var)
                tiny = 1e-9 * (1.0 + (mean if mean >= 0.0 else -mean))
                z_ew = (d if d >= 0.0 else -d) / (sd if sd > tiny else tiny)
            a = 1.0 / (en + 1)
            if a < ew.alpha:
                a = ew.alpha
            ew._mean = mean + a * d
            ew._var = (1.0 - a) * (var + a * d * d)
        ew._n = en + 1

        # --- robust z of the first difference -------------------------------------------------
        z_df = 0.0
        prev = df._prev
        df._prev = x
        if prev is not None:
            v = x - prev
            k = df._k
            w = k._w
            fifo = w._fifo
            s = w._sorted
            m = len(s)
            if m >= k.min_points:
                mid = m >> 1
                med = s[mid] if m & 1 else 0.5 * (s[mid - 1] + s[mid])
                p = 0.25 * (m - 1)
                i = int(p)
                q1 = s[i] + (s[i + 1] - s[i]) * (p - i) if i + 1 < m else s[i]
                p = 0.75 * (m - 1)
                i = int(p)
                q3 = s[i] + (s[i + 1] - s[i]) * (p - i) if i + 1 < m else s[i]
                scale = (q3 - q1) * _IQR_TO_SIGMA
                absdev = k._absdev
                fl = _MEAN_ABS_TO_SIGMA * absdev
                if fl > scale:
                    scale = fl
                tiny = 1e-9 * (1.0 + (med if med >= 0.0 else -med))
                dev = v - med
                if dev < 0.0:
                    dev = -dev
                z_df = dev / (scale if scale > tiny else tiny)
                k._absdev = absdev + k.alpha * (dev - absdev)
            fifo.append(v)
            _insort(s, v)
            if m >= w.size:
                del s[_bisect_left(s, fifo.popleft())]

        # --- robust CUSUM -------------------------------------------------------------------------
        z_cu = 0.0
        base = cu._base
        w = base._w
        s = w._sorted
        m = len(s)
        if m < cu.min_points:
            base.step(t, x)
        else:
            mid = m >> 1
            med = s[mid] if m & 1 else 0.5 * (s[mid - 1] + s[mid])
            p = 0.25 * (m - 1)
            i = int(p)
            q1 = s[i] + (s[i + 1] - s[i]) * (p - i) if i + 1 < m else s[i]
            p = 0.75 * (m - 1)
            i = int(p)
            q3 = s[i] + (s[i + 1] - s[i]) * (p - i) if i + 1 < m else s[i]
            scale = (q3 - q1) * _IQR_TO_SIGMA
            absdev = base._absdev
            fl = _MEAN_ABS_TO_SIGMA * absdev
            if fl > scale:
                scale = fl
            tiny = 1e-9 * (1.0 + (med if med >= 0.0 else -med))
            r = (x - med) / (scale if scale > tiny else tiny)
            clip = cu.clip
            r = clip if r > clip else (-clip if r < -clip else r)
            pos = cu._pos + r - cu.k
            neg = cu._neg - r - cu.k
            pos = pos if pos > 0.0 else 0.0
            neg = neg if neg > 0.0 else 0.0
            z_cu = pos if pos > neg else neg
            if z_cu > cu.h:
                pos = neg = 0.0
                cu._base = base = RobustZKernel(cu.window, cu.min_points)
                base.step(t, x)
            else:
                dev = x - med
                base._absdev = absdev + base.alpha * ((dev if dev >= 0.0 else -dev) - absdev)
                fifo = w._fifo
                fifo.append(x)
                _insort(s, x)
                if m >= w.size:
                    del s[_bisect_left(s, fifo.popleft())]
            cu._pos = pos
            cu._neg = neg

        # --- seasonal profile ---------------------------------------------------------------------
        z_se = 0.0
        if se._t0 is None:
            se._t0 = t
        buckets = se.buckets
        b = int(t * buckets / se.period) % buckets
        counts = se._count
        cnt = counts[b]
        if cnt:
            means = se._mean
            devs = se._dev
            mean = means[b]
            dev = devs[b]
            d = x - mean
            ad = d if d >= 0.0 else -d
            gdev = se._gdev
            if cnt >= 2 and t - se._t0 >= se.min_cycles * se.period:
                scale = 1.2533 * dev
                g = 0.25 * 1.2533 * gdev
                if g > scale:
                    scale = g
                tiny = 1e-9 * (1.0 + (mean if mean >= 0.0 else -mean))
                z_se = ad / (scale if scale > tiny else tiny)
            a = 1.0 / (cnt + 1)
            if a < se.alpha:
                a = se.alpha
            means[b] = mean + a * d
            devs[b] = dev + a * (ad - dev)
            se._gdev = gdev + 0.01 * (ad - gdev)
        else:
            se._mean[b] = x
        counts[b] = cnt + 1

        # --- self-normalisation by each view's recent (and long-term) maximum ------------------
        u = 0.0
        live_min = self.warmup >> 1
        # Unrolled over the four views. Their maxima are fed in lockstep, so they share one block
        # position and close their blocks together.
        m_ew, m_df, m_cu, m_se = maxima = ch.maxima
        cur = m_ew._cur
        if scoring and m_ew.live >= live_min:
            ref = m_ew._ref
            r = z_ew / (ref if ref > cur else cur)
            if r > u:
                u = r
        if z_ew > 0.0:
            m_ew.live += 1
            if z_ew > cur:
                m_ew._cur = z_ew
        cur = m_df._cur
        if scoring and m_df.live >= live_min:
            ref = m_df._ref
            r = z_df / (ref if ref > cur else cur)
            if r > u:
                u = r
        if z_df > 0.0:
            m_df.live += 1
            if z_df > cur:
                m_df._cur = z_df
        cur = m_cu._cur
        if scoring and m_cu.live >= live_min:
            ref = m_cu._ref
            r = z_cu / (ref if ref > cur else cur)
            if r > u:
                u = r
        if z_cu > 0.0:
            m_cu.live += 1
            if z_cu > cur:
                m_cu._cur = z_cu
        cur = m_se._cur
        if scoring and m_se.live >= live_min:
            ref = m_se._ref
            r = z_se / (ref if ref > cur else cur)
            if r > u:
                u = r
        if z_se > 0.0:
            m_se.live += 1
            if z_se > cur:
                m_se._cur = z_se
        fill = m_ew._fill + 1
        if fill >= m_ew._block:
            for mx in maxima:
                mx._close_block()
        else:
            m_ew._fill = m_df._fill = m_cu._fill = m_se._fill = fill
        return self._finish(u, c)

    def _get_state(self) -> dict[str, Any]:
        return {
            "n": self._n,
            "last_t": self._last_t,
            "since": self._since,
            "peak": self._peak,
            "gate": self._gate._since,
            "quiet": self._quiet,
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
        self._quiet = int(state.get("quiet", 1 << 30))
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
        self._fast = self.fused and len(self._channels) == 1 and self.views == DEFAULT_VIEWS
