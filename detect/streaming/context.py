"""Contextual novelty: has this short sequence of quantised values ever been seen before?

An idea in the spirit of CAD OSE (Smirnov's Contextual Anomaly Detector, a NAB leader), written from
scratch and much simpler: the value is quantised into a few coarse levels and the detector remembers
every *context* it has met, i.e. the current level together with the 0..``orders - 1`` levels before
it. The raw novelty of a point is the fraction of its contexts (orders 0, 1, ..., ``orders - 1``)
that were never seen before. Point z-scores ask "how far is this value?"; contexts ask "has the
series ever moved like this?", which catches changed shapes and rhythms inside the normal range.

* **Levels.** The quantisation grid is fixed once, from the minimum and maximum of the first
  ``warmup`` points (NAB's probationary period on the bench): ``levels`` equal bins over that range
  (the two edge bins reach one bin-width past it), plus one bin below and one above for values
  further out. Until the warm-up is full
  the points are only buffered; then they are replayed into the context memory, so every score
  after the warm-up uses data up to and including that point only (nothing from the future).
* **Memory.** A set of integer keys (a level sequence read as a base-``levels + 3`` number), so it
  is bounded by ``sum((levels + 2) ** k)`` for ``k <= orders`` whatever the stream length.
* **Rest period.** After a raw novelty of at least ``base`` the stream is quiet for ``rest`` points
  (default ``warmup / 5``), as in CAD OSE: one change tends to produce a burst of new contexts and
  should page once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from detect.base import Detector, Value, check_point

__all__ = ["ContextKernel", "ContextNovelty"]


class ContextKernel:
    """One univariate stream; ``step(x)`` returns the raw novelty in ``[0, 1]`` (0 during warm-up)."""

    __slots__ = (
        "levels",
        "orders",
        "warmup",
        "base",
        "replay_age",
        "_buf",
        "_lo",
        "_hi",
        "_step",
        "_hist",
        "_seen",
        "_radix",
    )

    def __init__(self, levels: int = 4, orders: int = 5, warmup: int = 300, base: float = 0.75) -> None:
        if levels < 1 or orders < 1:
            raise ValueError("levels and orders must be >= 1")
        self.levels = levels
        self.orders = orders
        self.warmup = max(1, warmup)
        self.base = base
        # Points between the last warm-up point whose replayed novelty reached ``base`` and the end of
        # the warm-up (large if none did): lets a rest gate treat the replay like live points.
        self.replay_age = 1 << 30
        self._buf: list[float] | None = []  # warm-up points, None once the grid is fixed
        self._lo = 0.0
        self._hi = 0.0
        self._step = 1.0
        self._hist: list[int] = []  # digits of the previous levels, newest first
        self._seen: set[int] = set()
        self._radix = levels + 3  # digits 1..levels+2 (0 never used, so orders cannot collide)

    def step(self, x: float) -> float:
        buf = self._buf
        if buf is None:
            return self._learn(x)
        buf.append(x)
        if len(buf) >= self.warmup:
            self._fix_grid(buf)
            self._buf = None
            age = 1 << 30
            for v in buf:
                age += 1
                if self._learn(v) >= self.base:
                    age = 0
            self.replay_age = age
        return 0.0

    def _fix_grid(self, buf: list[float]) -> None:
        lo, hi = min(buf), max(buf)
        self._lo, self._hi = lo, hi
        span = hi - lo
        self._step = span / self.levels if span > 0.0 else (abs(lo) if lo != 0.0 else 1.0) / self.levels

    def _learn(self, x: float) -> float:
        levels = self.levels
        q = math.floor((x - self._lo) / self._step)
        # The edge bins reach one step past the warm-up range; only values beyond that are "outside".
        if q >= levels:
            q = levels - 1 if q == levels else levels
        elif q < 0:
            q = 0 if q == -1 else -1
        digit = q + 2
        seen = self._seen
        radix = self._radix
        key = digit
        novel = 0
        if key not in seen:
            seen.add(key)
            novel = 1
        hist = self._hist
        for d in hist:
            key = key * radix + d
            if key not in seen:
                seen.add(key)
                novel += 1
        total = len(hist) + 1
        hist.insert(0, digit)
        if len(hist) >= self.orders:
            hist.pop()
        return novel / total

    def state(self) -> dict[str, Any]:
        return {
            "buf": self._buf,
            "lo": self._lo,
            "hi": self._hi,
            "step": self._step,
            "hist": list(self._hist),
            "seen": sorted(self._seen),
            "replay_age": self.replay_age,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        buf = state["buf"]
        self._buf = None if buf is None else [float(v) for v in buf]
        self._lo = float(state["lo"])
        self._hi = float(state["hi"])
        self._step = float(state["step"])
        self._hist = [int(v) for v in state["hist"]]
        self._seen = {int(v) for v in state["seen"]}
        self.replay_age = int(state["replay_age"])


class RestGate:
    """CAD-style suppression: a score is zeroed while a raw score ``>= base`` occurred in the last
    ``rest`` points (the raw score itself still counts for the next gate)."""

    __slots__ = ("rest", "base", "_since")

    def __init__(self, rest: int, base: float) -> None:
        self.rest = rest
        self.base = base
        self._since = 1 << 30

    def __call__(self, s: float) -> float:
        self._since += 1
        out = s if self._since > self.rest else 0.0
        if s >= self.base:
            self._since = 0
        return out


class ContextNovelty(Detector):
    """Standalone contextual-novelty detector (see the module docstring); the ensemble embeds it."""

    name = "context"

    def __init__(
        self, warmup: int = 300, levels: int = 4, orders: int = 5, rest: int | None = None, base: float = 0.75
    ) -> None:
        self.warmup = int(warmup)
        self.levels = int(levels)
        self.orders = int(orders)
        self.rest = int(rest) if rest is not None else max(1, self.warmup // 5)
        self.base = float(base)
        if self.levels < 1 or self.orders < 1:
            raise ValueError("levels and orders must be >= 1")
        self._kernels: list[ContextKernel] = []
        self._gate = RestGate(self.rest, self.base)
        self._last_t: float | None = None

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        return {"warmup": 50}

    def get_params(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "levels": self.levels,
            "orders": self.orders,
            "rest": self.rest,
            "base": self.base,
        }

    def update(self, t: float, x: Value) -> float:
        if type(x) is float and type(t) is float and math.isfinite(x) and math.isfinite(t):
            if self._last_t is not None and t < self._last_t:
                check_point(t, x, self._last_t, None)
            xs: tuple[float, ...] = (x,)
        else:
            xs = check_point(t, x, self._last_t, len(self._kernels) or None)
        if not self._kernels:
            self._kernels = [ContextKernel(self.levels, self.orders, self.warmup, self.base) for _ in xs]
        elif len(xs) != len(self._kernels):
            check_point(t, x, self._last_t, len(self._kernels))
        self._last_t = t
        s = 0.0
        for k, v in zip(self._kernels, xs, strict=True):
            r = k.step(v)
            if r > s:
                s = r
            if k.replay_age < self._gate._since:  # the warm-up replay just ended
                self._gate._since = k.replay_age
                k.replay_age = 1 << 30
        return self._gate(s)

    def _get_state(self) -> dict[str, Any]:
        return {
            "last_t": self._last_t,
            "since": self._gate._since,
            "kernels": [k.state() for k in self._kernels],
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self._last_t = None if state["last_t"] is None else float(state["last_t"])
        self._gate._since = int(state["since"])
        self._kernels = []
        for ks in state["kernels"]:
            k = ContextKernel(self.levels, self.orders, self.warmup, self.base)
            k.load(ks)
            self._kernels.append(k)
