"""Seasonal profile: compare each point with what is usual at the same phase of the day (or week).

The period is split into ``buckets`` phase bins by wall-clock time; each bin keeps an exponentially
weighted mean and mean absolute deviation. The detector stays silent (z = 0) until the stream has
covered ``min_cycles`` full periods, because a profile seen once is just a copy of yesterday's noise.
Time-based rather than count-based, so gaps and irregular sampling are handled naturally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detect.streaming._common import UnivariateDetector

__all__ = ["Seasonal", "SeasonalKernel"]


class SeasonalKernel:
    __slots__ = ("period", "buckets", "alpha", "min_cycles", "_mean", "_dev", "_count", "_t0", "_gdev")

    def __init__(
        self, period: float = 86400.0, buckets: int = 48, alpha: float = 0.2, min_cycles: float = 2.0
    ):
        self.period = period
        self.buckets = buckets
        self.alpha = alpha
        self.min_cycles = min_cycles
        self._mean = [0.0] * buckets
        self._dev = [0.0] * buckets
        self._count = [0] * buckets
        self._t0: float | None = None
        self._gdev = 0.0  # stream-wide deviation, a floor for quiet bins

    def step(self, t: float, x: float) -> float:
        if self._t0 is None:
            self._t0 = t
        buckets = self.buckets
        b = int(t * buckets / self.period) % buckets
        z = 0.0
        counts = self._count
        n = counts[b]
        if n:
            means = self._mean
            devs = self._dev
            mean = means[b]
            dev = devs[b]
            d = x - mean
            ad = d if d >= 0.0 else -d
            gdev = self._gdev
            if n >= 2 and t - self._t0 >= self.min_cycles * self.period:
                scale = 1.2533 * dev
                g = 0.25 * 1.2533 * gdev
                if g > scale:
                    scale = g
                tiny = 1e-9 * (1.0 + (mean if mean >= 0.0 else -mean))
                z = ad / (scale if scale > tiny else tiny)
            a = 1.0 / (n + 1)
            if a < self.alpha:
                a = self.alpha
            means[b] = mean + a * d
            devs[b] = dev + a * (ad - dev)
            self._gdev = gdev + 0.01 * (ad - gdev)
        else:
            self._mean[b] = x
        counts[b] = n + 1
        return z

    def state(self) -> dict[str, Any]:
        return {
            "mean": list(self._mean),
            "dev": list(self._dev),
            "count": list(self._count),
            "t0": self._t0,
            "gdev": self._gdev,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._mean = [float(v) for v in state["mean"]]
        self._dev = [float(v) for v in state["dev"]]
        self._count = [int(v) for v in state["count"]]
        self._t0 = None if state["t0"] is None else float(state["t0"])
        self._gdev = float(state["gdev"])


class Seasonal(UnivariateDetector):
    """Seasonal-profile z-score (daily by default) mapped to ``[0, 1)``."""

    name = "seasonal"

    def __init__(
        self,
        period: float = 86400.0,
        buckets: int = 48,
        alpha: float = 0.2,
        min_cycles: float = 2.0,
        z_half: float = 4.0,
    ) -> None:
        super().__init__()
        self.period = float(period)
        self.buckets = int(buckets)
        self.alpha = float(alpha)
        self.min_cycles = float(min_cycles)
        self.z_half = float(z_half)

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        return {"period": 3600.0, "buckets": 12}

    def get_params(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "buckets": self.buckets,
            "alpha": self.alpha,
            "min_cycles": self.min_cycles,
            "z_half": self.z_half,
        }

    def _new_kernel(self) -> SeasonalKernel:
        return SeasonalKernel(self.period, self.buckets, self.alpha, self.min_cycles)
