"""Robust rolling z-score: distance from the rolling median in units of a robust scale.

The scale is the window's interquartile range divided by 1.349 (Gaussian-consistent, like MAD, but
read straight off the sorted window in O(1), where an exact MAD needs O(w) per point), floored by an
exponentially weighted mean absolute deviation so that quantised or mostly-flat series (where the IQR
is 0) do not turn every small wiggle into an infinite z.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detect.streaming._common import UnivariateDetector
from detect.streaming.window import SortedWindow

__all__ = ["RobustZ", "RobustZKernel"]

_IQR_TO_SIGMA = 1.0 / 1.349
_MEAN_ABS_TO_SIGMA = 1.2533  # sqrt(pi/2): mean |x - mu| of a Gaussian is sigma * sqrt(2/pi)


class RobustZKernel:
    """One univariate stream. ``step`` returns ``|x - median| / scale`` against the past window."""

    __slots__ = ("window", "min_points", "alpha", "_w", "_absdev")

    def __init__(self, window: int = 500, min_points: int = 10, alpha: float = 0.01) -> None:
        self.window = window
        self.min_points = min_points
        self.alpha = alpha
        self._w = SortedWindow(window)
        self._absdev = 0.0

    def location_scale(self) -> tuple[float, float]:
        """Median and robust scale of the current window (which must hold at least one value)."""
        s = self._w._sorted
        n = len(s)
        mid = n >> 1
        med = s[mid] if n & 1 else 0.5 * (s[mid - 1] + s[mid])
        # Quartiles by linear interpolation, inlined: this is the hot path of every robust view.
        p = 0.25 * (n - 1)
        i = int(p)
        q1 = s[i] + (s[i + 1] - s[i]) * (p - i) if i + 1 < n else s[i]
        p = 0.75 * (n - 1)
        i = int(p)
        q3 = s[i] + (s[i + 1] - s[i]) * (p - i) if i + 1 < n else s[i]
        scale = (q3 - q1) * _IQR_TO_SIGMA
        floor = _MEAN_ABS_TO_SIGMA * self._absdev
        if floor > scale:
            scale = floor
        tiny = 1e-9 * (1.0 + abs(med))
        return med, scale if scale > tiny else tiny

    def observe(self, x: float, med: float) -> None:
        """Learn ``x`` given the median it was scored against (callers that already scored it)."""
        self._absdev += self.alpha * (abs(x - med) - self._absdev)
        self._w.add(x)

    def step(self, t: float, x: float) -> float:
        if len(self._w._fifo) >= self.min_points:
            med, scale = self.location_scale()
            dev = abs(x - med)
            self._absdev += self.alpha * (dev - self._absdev)
            self._w.add(x)
            return dev / scale
        self._w.add(x)
        return 0.0

    def state(self) -> dict[str, Any]:
        return {"window": self._w.values(), "absdev": self._absdev}

    def load(self, state: Mapping[str, Any]) -> None:
        self._w.load(list(state["window"]))
        self._absdev = float(state["absdev"])


class RobustZ(UnivariateDetector):
    """Rolling median/IQR z-score over the last ``window`` points, mapped to ``[0, 1)``."""

    name = "robust_z"

    def __init__(self, window: int = 500, min_points: int = 10, alpha: float = 0.01, z_half: float = 4.0):
        super().__init__()
        self.window = int(window)
        self.min_points = int(min_points)
        self.alpha = float(alpha)
        self.z_half = float(z_half)

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        return {"window": 100, "min_points": 10}

    def get_params(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "min_points": self.min_points,
            "alpha": self.alpha,
            "z_half": self.z_half,
        }

    def _new_kernel(self) -> RobustZKernel:
        return RobustZKernel(self.window, self.min_points, self.alpha)
