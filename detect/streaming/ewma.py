"""Exponentially weighted mean/variance z-score: the cheapest adaptive baseline (O(1), two floats).

Fast to adapt and blind to anything slower than ``1/alpha`` points; the ensemble pairs it with the
robust window so a single outlier does not inflate the variance for long.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from detect.streaming._common import UnivariateDetector

__all__ = ["Ewma", "EwmaKernel"]


class EwmaKernel:
    """``|x - mean| / std`` with exponentially weighted mean and variance (learning rate ``alpha``)."""

    __slots__ = ("alpha", "min_points", "_n", "_mean", "_var")

    def __init__(self, alpha: float = 0.02, min_points: int = 10) -> None:
        self.alpha = alpha
        self.min_points = min_points
        self._n = 0
        self._mean = 0.0
        self._var = 0.0

    def step(self, t: float, x: float) -> float:
        z = 0.0
        if self._n == 0:
            self._mean = x
        else:
            d = x - self._mean
            if self._n >= self.min_points:
                sd = math.sqrt(self._var)
                z = abs(d) / max(sd, 1e-9 * (1.0 + abs(self._mean)))
            # Warm-up uses 1/n so the first points are not over-weighted by a small alpha.
            a = max(self.alpha, 1.0 / (self._n + 1))
            self._mean += a * d
            self._var = (1.0 - a) * (self._var + a * d * d)
        self._n += 1
        return z

    def state(self) -> dict[str, Any]:
        return {"n": self._n, "mean": self._mean, "var": self._var}

    def load(self, state: Mapping[str, Any]) -> None:
        self._n = int(state["n"])
        self._mean = float(state["mean"])
        self._var = float(state["var"])


class Ewma(UnivariateDetector):
    """EWMA z-score mapped to ``[0, 1)``."""

    name = "ewma"

    def __init__(self, alpha: float = 0.02, min_points: int = 10, z_half: float = 4.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.min_points = int(min_points)
        self.z_half = float(z_half)

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        return {"alpha": 0.05}

    def get_params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "min_points": self.min_points, "z_half": self.z_half}

    def _new_kernel(self) -> EwmaKernel:
        return EwmaKernel(self.alpha, self.min_points)
