"""Layer 2: multivariate outlier models (PyOD) over per-service feature vectors.

One :class:`ServiceModel` per service sees, at every step, a *row*: the service's request rate,
error ratio, p95 latency, log (error) rate and resource metrics such as CPU and memory, by feature
name (:func:`feature_name`). It is asked for a second opinion when layer 1 escalates a series of the
service, and periodically.

Conventions:

* **No look-ahead.** :meth:`ServiceModel.score` scores a row against a model fitted on rows seen
  *before* it; :meth:`ServiceModel.observe` then stores the row (unless the caller flags it as
  anomalous: a model does not learn from points it flagged) and refits every ``retrain_every`` steps
  from the last ``train_window`` stored rows. Until ``min_train`` rows exist, ``score`` returns
  ``None``.
* **Features.** Columns are the feature names present in at least half the training rows (sorted);
  a missing value (``None``, NaN, a feature absent from the row) is imputed with the training median.
  ``sklearn.preprocessing.RobustScaler`` (median / IQR) is fitted on the training rows only.
* **Scores in [0, 1].** Each model's raw outlier score is mapped through the empirical CDF of its
  own training scores (``P(train score < s) + P(= s) / 2``), and the models' mapped scores are
  averaged. A normal row is therefore about uniform on [0, 1]; a row beyond everything in training
  scores 1. L2 corroborates L1; alone it never pages (see :mod:`detect.alerting`).
* **State without pickle.** :meth:`ServiceModel.to_json` stores the configuration, the exact rows the
  current model was fitted on and the training buffer; loading refits from those rows with the same
  seed, so a loaded model gives identical scores (ECOD, COPOD and HBOS are deterministic; IForest is
  seeded).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from warroom.errors import InputError
from warroom.model import SeriesKey, SignalKind

__all__ = ["MODELS", "MlConfig", "ServiceModel", "feature_name"]

STATE_FORMAT = 1
MODELS = ("ecod", "copod", "iforest", "hbos")

Row = Mapping[str, float | None]


def feature_name(key: SeriesKey) -> str:
    """Column name of a series in its service's feature vector, e.g. ``error_ratio`` or
    ``metric{metric=process.cpu.utilization}``."""
    extra = ",".join(f"{k}={v}" for k, v in sorted(key.labels))
    return key.kind.value + (f"{{{extra}}}" if extra else "")


@dataclass(frozen=True, slots=True)
class MlConfig:
    """Settings of the layer-2 models (JSON-safe; stored with every model's state)."""

    models: tuple[str, ...] = ("ecod",)
    train_window: int = 240
    min_train: int = 30
    retrain_every: int = 60
    seed: int = 0
    iforest_trees: int = 100
    kinds: tuple[str, ...] = (
        SignalKind.REQUEST_RATE.value,
        SignalKind.ERROR_RATIO.value,
        SignalKind.LATENCY_P95.value,
        SignalKind.LOG_RATE.value,
        SignalKind.METRIC.value,
    )
    metric_pattern: str = r"(?i).*(cpu|mem|memory|heap|gc|thread|fd|disk|network).*"
    max_features: int = 16

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise InputError(
                f"unknown L2 model(s) {unknown or '[]'}; choose one or two of {', '.join(MODELS)}",
                reason="bad_params",
            )
        if self.min_train < 5 or self.train_window < self.min_train or self.retrain_every < 1:
            raise InputError(
                "need min_train >= 5, train_window >= min_train and retrain_every >= 1", reason="bad_params"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models)
        d["kinds"] = list(self.kinds)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MlConfig:
        d = dict(d)
        d["models"] = tuple(d.get("models", ("ecod",)))
        if "kinds" in d:
            d["kinds"] = tuple(d["kinds"])
        return cls(**d)


def _build(name: str, config: MlConfig) -> Any:
    # Lazy imports: PyOD pulls numba/scipy, which only the L2 layer needs.
    if name == "ecod":
        from pyod.models.ecod import ECOD

        return ECOD()
    if name == "copod":
        from pyod.models.copod import COPOD

        return COPOD()
    if name == "iforest":
        from pyod.models.iforest import IForest

        return IForest(n_estimators=config.iforest_trees, random_state=config.seed)
    from pyod.models.hbos import HBOS

    return HBOS()


class _Fitted:
    """A fitted scaler + models and their sorted training scores."""

    def __init__(self, config: MlConfig, columns: list[str], rows: list[list[float | None]]) -> None:
        from sklearn.preprocessing import RobustScaler

        raw = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
        med = np.nanmedian(raw, axis=0)
        self.fill = np.where(np.isnan(med), 0.0, med)
        x = np.where(np.isnan(raw), self.fill, raw)
        self.scaler = RobustScaler().fit(x)
        xs = self.scaler.transform(x)
        self.columns = columns
        self.models = []
        self.train_scores = []
        for name in config.models:
            model = _build(name, config).fit(xs)
            self.models.append(model)
            self.train_scores.append(np.sort(np.asarray(model.decision_scores_, dtype=float)))

    def score(self, row: Row) -> float:
        v = np.array([[_num(row.get(c)) for c in self.columns]], dtype=float)
        v = np.where(np.isnan(v), self.fill, v)
        xs = self.scaler.transform(v)
        mapped = []
        for model, train in zip(self.models, self.train_scores, strict=True):
            s = float(model.decision_function(xs)[0])
            below = np.searchsorted(train, s, side="left")
            upto = np.searchsorted(train, s, side="right")
            mapped.append((below + 0.5 * (upto - below)) / len(train))
        return float(min(1.0, max(0.0, sum(mapped) / len(mapped))))


class ServiceModel:
    """Layer-2 model of one service (see the module docstring)."""

    def __init__(self, config: MlConfig | None = None) -> None:
        self.config = config or MlConfig()
        self._buffer: deque[dict[str, float | None]] = deque(maxlen=self.config.train_window)
        self._fit_columns: list[str] = []
        self._fit_rows: list[list[float | None]] = []
        self._fitted: _Fitted | None = None
        self.since_fit = 0
        self.steps = 0

    @property
    def fitted(self) -> bool:
        return self._fitted is not None

    @property
    def columns(self) -> list[str]:
        return list(self._fit_columns)

    def score(self, row: Row) -> float | None:
        """Score ``row`` in [0, 1] against the current model; ``None`` while there is none."""
        if self._fitted is None:
            return None
        return self._fitted.score(row)

    def observe(self, row: Row, learn: bool = True) -> None:
        """Advance one step: store ``row`` for training when ``learn``; refit when due."""
        self.steps += 1
        self.since_fit += 1
        if learn:
            self._buffer.append({str(k): _clean(v) for k, v in row.items()})
        due = self._fitted is None or self.since_fit >= self.config.retrain_every
        if due and len(self._buffer) >= self.config.min_train:
            self._refit()

    def _refit(self) -> None:
        rows = list(self._buffer)
        counts: dict[str, int] = {}
        for r in rows:
            for k, v in r.items():
                if v is not None:
                    counts[k] = counts.get(k, 0) + 1
        columns = sorted(k for k, c in counts.items() if 2 * c >= len(rows))[: self.config.max_features]
        if not columns:
            return
        self._fit_columns = columns
        self._fit_rows = [[r.get(c) for c in columns] for r in rows]
        self._fitted = _Fitted(self.config, columns, self._fit_rows)
        self.since_fit = 0

    def to_json(self) -> str:
        payload = {
            "format": STATE_FORMAT,
            "model": "warroom.ml.ServiceModel",
            "config": self.config.to_dict(),
            "columns": self._fit_columns,
            "fit_rows": self._fit_rows,
            "buffer": list(self._buffer),
            "since_fit": self.since_fit,
            "steps": self.steps,
        }
        return json.dumps(payload, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ServiceModel:
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise InputError(f"L2 model state is not JSON: {exc}", reason="bad_state") from exc
        if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
            raise InputError("unsupported L2 model state format", reason="bad_state_format")
        model = cls(MlConfig.from_dict(payload["config"]))
        model._buffer.extend({str(k): _clean(v) for k, v in r.items()} for r in payload["buffer"])
        model._fit_columns = [str(c) for c in payload["columns"]]
        model._fit_rows = [[_clean(v) for v in r] for r in payload["fit_rows"]]
        if model._fit_rows:
            model._fitted = _Fitted(model.config, model._fit_columns, model._fit_rows)
        model.since_fit = int(payload["since_fit"])
        model.steps = int(payload["steps"])
        return model


def _clean(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _num(v: Any) -> float:
    c = _clean(v)
    return math.nan if c is None else c


def rows_matrix(rows: Sequence[Row], columns: Sequence[str]) -> list[list[float | None]]:
    """Rows as a matrix over ``columns`` (``None`` where missing), e.g. for inspection in tests."""
    return [[_clean(r.get(c)) for c in columns] for r in rows]
