"""Built-in detectors by name. Each class provides ``example_params()`` for tests and docs.

The lead may expose these through a ``warroom.detectors`` entry-point group; until then this dict is
the single list, and :func:`create` is the one way to build a detector by name.
"""

from __future__ import annotations

from typing import Any

from detect.base import Detector
from detect.streaming.changepoint import Cusum
from detect.streaming.context import ContextNovelty
from detect.streaming.ensemble import Ensemble
from detect.streaming.ewma import Ewma
from detect.streaming.gaussian import WindowedGaussian
from detect.streaming.robust import RobustZ
from detect.streaming.seasonal import Seasonal
from warroom.errors import InputError

__all__ = ["BUILTINS", "DEFAULT_DETECTOR", "create"]

BUILTINS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (Ensemble, RobustZ, Ewma, Cusum, Seasonal, ContextNovelty, WindowedGaussian)
}

DEFAULT_DETECTOR = Ensemble.name


def create(name: str = "default", **params: Any) -> Detector:
    """Build a registered detector; ``"default"`` is the ensemble."""
    key = DEFAULT_DETECTOR if name == "default" else name
    try:
        cls = BUILTINS[key]
    except KeyError:
        raise InputError(
            f"unknown detector {name!r}; choose from {', '.join(sorted(BUILTINS))}", reason="unknown_detector"
        ) from None
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad parameters for detector {key!r}: {exc}", reason="bad_params") from exc
