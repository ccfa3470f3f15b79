"""NAB's windowed Gaussian baseline, reimplemented to reproduce its published scores.

NAB v1.1 (``nab/detectors/gaussian/windowedGaussian_detector.py``): keep the last 6,400 values
(growing one at a time until full, then sliding 100 at a time); score each value *before* adding it as
``1 - Q(|z|)``, the two-sided Gaussian tail, with ``z`` from the window's mean and population standard
deviation (``1e-6`` when it is 0). The first point scores 0. We keep it as the bench's baseline so every
run shows a known reference beside our detector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from detect.base import Detector, Value, check_point

__all__ = ["WindowedGaussian"]

_SQRT2 = math.sqrt(2.0)


class WindowedGaussian(Detector):
    """Sliding-window Gaussian tail probability (univariate; vectors use their first dimension)."""

    name = "windowed_gaussian"

    def __init__(self, window_size: int = 6400, step_size: int = 100) -> None:
        self.window_size = int(window_size)
        self.step_size = int(step_size)
        self._window: list[float] = []
        self._buffer: list[float] = []
        self._mean = 0.0
        self._std = 1.0
        self._m2 = 0.0  # Welford accumulator while the window is still filling
        self._last_t: float | None = None

    @classmethod
    def example_params(cls) -> dict[str, Any]:
        return {"window_size": 200, "step_size": 10}

    def get_params(self) -> dict[str, Any]:
        return {"window_size": self.window_size, "step_size": self.step_size}

    def update(self, t: float, x: Value) -> float:
        if type(x) is float and type(t) is float and math.isfinite(x) and math.isfinite(t):
            if self._last_t is not None and t < self._last_t:
                check_point(t, x, self._last_t, None)
            v = x
        else:
            v = check_point(t, x, self._last_t, None)[0]
        self._last_t = t
        score = 0.0
        if self._window:
            z = abs(v - self._mean) / self._std
            score = 1.0 - 0.5 * math.erfc(z / _SQRT2)
        if len(self._window) < self.window_size:
            self._window.append(v)
            n = len(self._window)
            delta = v - self._mean
            self._mean += delta / n
            self._m2 += delta * (v - self._mean)
            std = math.sqrt(max(self._m2, 0.0) / n)
            self._std = std if std != 0.0 else 1e-6
        else:
            self._buffer.append(v)
            if len(self._buffer) == self.step_size:
                del self._window[: self.step_size]
                self._window.extend(self._buffer)
                self._buffer = []
                arr = np.asarray(self._window)
                self._mean = float(arr.mean())
                std = float(arr.std())
                self._std = std if std != 0.0 else 1e-6
        return score

    def _get_state(self) -> dict[str, Any]:
        return {
            "window": list(self._window),
            "buffer": list(self._buffer),
            "mean": self._mean,
            "std": self._std,
            "m2": self._m2,
            "last_t": self._last_t,
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self._window = [float(v) for v in state["window"]]
        self._buffer = [float(v) for v in state["buffer"]]
        self._mean = float(state["mean"])
        self._std = float(state["std"])
        self._m2 = float(state["m2"])
        self._last_t = None if state["last_t"] is None else float(state["last_t"])
