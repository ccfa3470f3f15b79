"""Helpers shared by the layer-1 detectors: the z-to-score map and the single-stream base class."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from detect.base import Detector, Value, check_point

__all__ = ["UnivariateDetector", "z_to_score"]


def z_to_score(z: float, z_half: float = 4.0) -> float:
    """Map a non-negative surprise ``z`` to ``[0, 1)`` as ``z^2 / (z^2 + z_half^2)``.

    Smooth and strictly increasing, so it never saturates at exactly 1 (a threshold can still separate
    a 10-sigma point from a 100-sigma one); ``z_half`` is the surprise that scores 0.5.
    """
    z2 = z * z
    return z2 / (z2 + z_half * z_half)


class UnivariateDetector(Detector):
    """Base for detectors built on a per-dimension kernel with ``step(t, x) -> z``.

    Handles validation, vectors (one kernel per dimension, the worst dimension wins) and state. A
    subclass provides :meth:`_new_kernel` and the kernels provide ``state()``/``load()``.
    """

    z_half: float = 4.0

    def __init__(self) -> None:
        self._kernels: list[Any] = []
        self._last_t: float | None = None

    def _new_kernel(self) -> Any:
        raise NotImplementedError

    def update(self, t: float, x: Value) -> float:
        if type(x) is float and type(t) is float and math.isfinite(x) and math.isfinite(t):
            if self._last_t is not None and t < self._last_t:
                check_point(t, x, self._last_t, None)  # raises the clear error
            xs: tuple[float, ...] = (x,)
        else:
            xs = check_point(t, x, self._last_t, len(self._kernels) or None)
        if not self._kernels:
            self._kernels = [self._new_kernel() for _ in xs]
        elif len(xs) != len(self._kernels):
            check_point(t, x, self._last_t, len(self._kernels))
        self._last_t = t
        z = 0.0
        for kernel, v in zip(self._kernels, xs, strict=True):
            zi = kernel.step(t, v)
            if zi > z:
                z = zi
        return z_to_score(z, self.z_half)

    def _get_state(self) -> dict[str, Any]:
        return {"last_t": self._last_t, "kernels": [k.state() for k in self._kernels]}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self._last_t = None if state["last_t"] is None else float(state["last_t"])
        self._kernels = []
        for ks in state["kernels"]:
            kernel = self._new_kernel()
            kernel.load(ks)
            self._kernels.append(kernel)
