"""The one detector contract, the decision object that turns scores into alerts, and state codecs.

Conventions every detector keeps (the conformance tests in ``tests/detect`` check them):

* **Streaming, no look-ahead.** A detector sees ``(t, x)`` one point at a time. ``score_one`` scores a
  point against what was learnt *before* it and changes nothing; ``learn_one`` then absorbs it.
  ``update`` does both (score, then learn) and is the hot path; prefer it.
* **Scores** are floats in ``[0, 1]``; higher is always more anomalous. A score is not a decision:
  :class:`Decision` owns the threshold and the hysteresis.
* **Input rules.** ``t`` is seconds (any epoch) and must not go backwards; *equal* timestamps are
  accepted and treated as consecutive observations, because real exports repeat stamps around
  daylight-saving changes (NAB has several). Gaps are fine: the statistical detectors count points,
  and the seasonal profile buckets by wall-clock phase. ``x`` is a float, or a short sequence of
  floats of fixed length (each dimension is scored and the worst one wins). NaN, infinities,
  non-numbers, a shrinking/growing vector or a timestamp that goes backwards raise
  :class:`warroom.errors.InputError` with a ``reason`` code; the detector's state is left unchanged.
  A constant series scores 0 until it changes.
* **State** is versioned JSON (``{"format": 1, "detector": name, "params": {...}, "state": {...}}``),
  never pickle: ``load(dump(d))`` continues with exactly the scores ``d`` would have produced.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from warroom.errors import InputError

__all__ = [
    "STATE_FORMAT",
    "AlertEvent",
    "Decision",
    "Detector",
    "Value",
    "check_point",
]

STATE_FORMAT = 1

Value = float | Sequence[float]


def check_point(t: float, x: Value, last_t: float | None, width: int | None) -> tuple[float, ...]:
    """Validate one input point and return ``x`` as a tuple of floats.

    Raises :class:`InputError` (reasons ``bad_timestamp``, ``timestamp_backwards``, ``non_numeric``,
    ``non_finite``, ``bad_width``) instead of letting a bad point corrupt the state.
    """
    try:
        tf = float(t)
    except (TypeError, ValueError) as exc:
        raise InputError(f"timestamp {t!r} is not a number", reason="bad_timestamp") from exc
    if not math.isfinite(tf):
        raise InputError(f"timestamp {t!r} is not finite", reason="bad_timestamp")
    if last_t is not None and tf < last_t:
        raise InputError(
            f"timestamp {tf} goes backwards (previous {last_t}); points must arrive in time order",
            reason="timestamp_backwards",
        )
    if isinstance(x, int | float) and not isinstance(x, bool):
        xs: tuple[float, ...] = (float(x),)
    elif isinstance(x, str | bytes) or isinstance(x, bool):
        raise InputError(f"value {x!r} is not numeric", reason="non_numeric")
    else:
        try:
            xs = tuple(float(v) for v in x)
        except (TypeError, ValueError) as exc:
            raise InputError(f"value {x!r} is not numeric", reason="non_numeric") from exc
        if not xs:
            raise InputError("empty value vector", reason="bad_width")
    for v in xs:
        if not math.isfinite(v):
            raise InputError(f"value {v!r} is not finite", reason="non_finite")
    if width is not None and len(xs) != width:
        raise InputError(f"value has {len(xs)} dimensions, expected {width}", reason="bad_width")
    return xs


class Detector(ABC):
    """A streaming anomaly detector: ``update(t, x) -> score in [0, 1]``.

    Subclasses implement :meth:`update`, :meth:`get_params`, :meth:`_get_state` and
    :meth:`_set_state` (JSON-safe dicts); ``score_one``/``learn_one`` are derived from them so that
    every detector honours the split without duplicating its maths. Built-ins register in
    :data:`detect.registry.BUILTINS` under :attr:`name`.
    """

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def example_params(cls) -> dict[str, Any]:
        """Parameters that build a working instance (used by the conformance tests and docs)."""

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """The constructor keyword arguments that rebuild this detector (JSON-safe)."""

    @abstractmethod
    def update(self, t: float, x: Value) -> float:
        """Score ``(t, x)`` against the past, then learn it. Returns a score in ``[0, 1]``."""

    @abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """Everything learnt so far, as a JSON-safe dict."""

    @abstractmethod
    def _set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned."""

    def score_one(self, t: float, x: Value) -> float:
        """Score without learning: the state after the call equals the state before it.

        Implemented as update-then-restore, so it costs a state round-trip; streaming code should call
        :meth:`update` instead.
        """
        saved = self._get_state()
        try:
            return self.update(t, x)
        finally:
            self._set_state(saved)

    def learn_one(self, t: float, x: Value) -> None:
        """Absorb ``(t, x)`` (the score is discarded)."""
        self.update(t, x)

    def to_json(self) -> str:
        """Versioned JSON state: ``{"format": 1, "detector", "params", "state"}``."""
        payload = {
            "format": STATE_FORMAT,
            "detector": self.name,
            "params": self.get_params(),
            "state": self._get_state(),
        }
        return json.dumps(payload, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Detector:
        """Rebuild a detector saved by :meth:`to_json` (any registered detector, not only ``cls``)."""
        from detect.registry import BUILTINS  # late import: the registry imports the detectors

        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise InputError(f"detector state is not JSON: {exc}", reason="bad_state") from exc
        if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
            got = payload.get("format") if isinstance(payload, dict) else None
            raise InputError(
                f"unsupported detector state format {got!r} (expected {STATE_FORMAT})",
                reason="bad_state_format",
            )
        kind = payload.get("detector")
        if kind not in BUILTINS:
            raise InputError(f"unknown detector {kind!r} in saved state", reason="unknown_detector")
        det = BUILTINS[kind](**payload.get("params", {}))
        det._set_state(payload.get("state", {}))
        return det


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert opening or resolving at time ``t``; ``score`` is the score that tipped it."""

    kind: Literal["open", "resolve"]
    t: float
    score: float


class Decision:
    """Threshold plus hysteresis: scores in, alert open/resolve events out.

    An alert opens after ``open_after`` consecutive scores ``>= threshold`` and resolves after
    ``resolve_after`` consecutive scores below it. Kept apart from detectors so the same scores can
    feed a paging policy and a dashboard policy with different thresholds.
    """

    def __init__(self, threshold: float = 0.5, open_after: int = 1, resolve_after: int = 1) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold {threshold} is outside [0, 1]", reason="bad_threshold")
        if open_after < 1 or resolve_after < 1:
            raise InputError("open_after and resolve_after must be >= 1", reason="bad_hysteresis")
        self.threshold = float(threshold)
        self.open_after = int(open_after)
        self.resolve_after = int(resolve_after)
        self.is_open = False
        self._run = 0  # consecutive steps pointing the other way

    def step(self, t: float, score: float) -> AlertEvent | None:
        """Feed one score; returns an event when the alert opens or resolves, else ``None``."""
        anomalous = score >= self.threshold
        if anomalous != self.is_open:
            self._run += 1
            if self._run >= (self.open_after if anomalous else self.resolve_after):
                self.is_open = anomalous
                self._run = 0
                return AlertEvent("open" if anomalous else "resolve", t, score)
        else:
            self._run = 0
        return None

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": STATE_FORMAT,
                "decision": {
                    "threshold": self.threshold,
                    "open_after": self.open_after,
                    "resolve_after": self.resolve_after,
                },
                "state": {"is_open": self.is_open, "run": self._run},
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Decision:
        payload = json.loads(text)
        if payload.get("format") != STATE_FORMAT:
            raise InputError("unsupported decision state format", reason="bad_state_format")
        dec = cls(**payload["decision"])
        dec.is_open = bool(payload["state"]["is_open"])
        dec._run = int(payload["state"]["run"])
        return dec
