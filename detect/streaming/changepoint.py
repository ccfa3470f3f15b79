"""Two-sided CUSUM on robust residuals: catches level shifts too small for a point z-score.

Each point's residual is its robust z against a rolling median/IQR window (signed, clipped at
``clip`` so one spike cannot fake a shift). The statistics ``g+ = max(0, g+ + r - k)`` and
``g- = max(0, g- - r - k)`` accumulate persistent drift of more than ``k`` sigmas; the surprise is
``max(g+, g-)``. When it passes ``h`` the change is declared, both sums reset and the baseline window
restarts from the new level, so the detector fires once per shift rather than until the median catches up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detect.streaming._common import UnivariateDetector
from detect.streaming.robust import RobustZKernel

__all__ = ["Cusum", "CusumKernel"]


class CusumKernel:
    __slots__ = ("k", "h", "clip", "_base", "_pos", "_neg", "window", "min_points")

    def __init__(
        self, window: int = 500, k: float = 0.5, h: float = 12.0, clip: float = 6.0, min_points: int = 20
    ):
        self.window = window
        self.min_points = min_points
        self.k = k
        self.h = h
        self.clip = clip
        self._base = RobustZKernel(window, min_points)
        self._pos = 0.0
        self._neg = 0.0

    def step(self, t: float, x: float) -> float:
        base = self._base
        if len(base._w._fifo) < self.min_points:
            base.step(t, x)
            return 0.0
        med, scale = base.location_scale()
        r = (x - med) / scale
        clip = self.clip
        r = clip if r > clip else (-clip if r < -clip else r)
        pos = self._pos + r - self.k
        neg = self._neg - r - self.k
        pos = pos if pos > 0.0 else 0.0
        neg = neg if neg > 0.0 else 0.0
        g = pos if pos > neg else neg
        if g > self.h:
            # Change declared: restart the baseline at the new level.
            pos = neg = 0.0
            self._base = base = RobustZKernel(self.window, self.min_points)
            base.step(t, x)
        else:
            base.observe(x, med)
        self._pos = pos
        self._neg = neg
        return g

    def state(self) -> dict[str, Any]:
        return {"base": self._base.state(), "pos": self._pos, "neg": self._neg}

    def load(self, state: Mapping[str, Any]) -> None:
        self._base.load(state["base"])
        self._pos = float(state["pos"])
        self._neg = float(state["neg"])


class Cusum(UnivariateDetector):
    """Robust two-sided CUSUM level-shift detector; scores 0.5 when the sum reaches ``h``."""

    name = "cusum"

    def __init__(
        self, window: int = 500, k: float = 0.5, h: float = 12.0, clip: float = 6.0, min_points: int = 20
    ):
        super().__init__()
        self.window = int(window)
        self.k = float(k)
        self.h = float(h)
        self.clip = float(clip)
        self.min_points = int(min_points)
        self.z_half = self.h

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        return {"window": 100, "h": 8.0}

    def get_params(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "k": self.k,
            "h": self.h,
            "clip": self.clip,
            "min_points": self.min_points,
        }

    def _new_kernel(self) -> CusumKernel:
        return CusumKernel(self.window, self.k, self.h, self.clip, self.min_points)
