"""The shared vocabulary: one immutable model per concept that crosses a stage boundary.

Frozen, slotted dataclasses; no behaviour beyond derivations of their own fields. Pydantic lives
only at the API and configuration edges. Times are timezone-aware UTC ``datetime``s; series
timestamps are integer Unix seconds (the step grid), which is what detectors consume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class SignalKind(StrEnum):
    """What a series measures; part of every alert's identity."""

    REQUEST_RATE = "request_rate"
    ERROR_RATIO = "error_ratio"
    LATENCY_P50 = "latency_p50"
    LATENCY_P95 = "latency_p95"
    LATENCY_P99 = "latency_p99"
    LOG_RATE = "log_rate"
    LOG_TEMPLATE_RATE = "log_template_rate"
    NEW_LOG_TEMPLATE = "new_log_template"
    METRIC = "metric"
    SLO_BURN = "slo_burn"
    MULTIVARIATE = "multivariate"
    EXTERNAL = "external"


_RANKS = {"info": 0, "warning": 1, "critical": 2}


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Order of urgency: info 0, warning 1, critical 2."""
        return _RANKS[self.value]

    @classmethod
    def parse(cls, text: str | None) -> Severity:
        """Map common spellings (Alertmanager's ``severity`` label, PagerDuty's) onto ours.

        Lenient: anything unknown (or missing) is info, because a free-form label must not lose an alert.
        """
        return cls(_SPELLINGS.get(_key(text), cls.INFO.value))

    @classmethod
    def parse_strict(cls, text: str | None) -> Severity:
        """Like :meth:`parse`, but an unknown spelling is a ``ValueError`` naming the known ones.

        For inputs whose producer chose the severity on purpose (the generic alert intake), where
        silently downgrading a typo such as ``critcal`` to info would hide a page.
        """
        value = _SPELLINGS.get(_key(text))
        if value is None:
            aliases = ", ".join(sorted(set(_SPELLINGS) - {s.value for s in cls}))
            raise ValueError(
                f"unknown severity {text!r}; expected critical, warning or info (aliases: {aliases})"
            )
        return cls(value)


def _key(text: str | None) -> str:
    return (text or "").strip().lower()


# Known severity spellings → ours; read by Severity.parse (lenient) and Severity.parse_strict.
_SPELLINGS: Mapping[str, str] = {
    **dict.fromkeys(
        ("critical", "crit", "page", "p1", "high", "error", "fatal", "emergency", "alert"), "critical"
    ),
    **dict.fromkeys(("warning", "warn", "p2", "p3", "medium", "major", "minor"), "warning"),
    **dict.fromkeys(("info", "informational", "notice", "low", "p4", "p5"), "info"),
}


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identity of a time series: what is measured, on which entity.

    ``entity`` is the service (``checkout``), a call edge (``frontend->checkout``) or a metric's
    service; ``labels`` hold the rest (operation, metric name, severity, template id …).
    """

    kind: SignalKind
    entity: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def fingerprint(self) -> str:
        """Stable across processes and restarts (not Python's ``hash``)."""
        payload = json.dumps([self.kind.value, self.entity, sorted(self.labels)], separators=(",", ":"))
        return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()

    def __str__(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.labels)
        return f"{self.kind.value}:{self.entity}" + (f"{{{extra}}}" if extra else "")


@dataclass(frozen=True, slots=True)
class Series:
    """Values of one series on a regular step grid; ``None`` where there was no data."""

    key: SeriesKey
    step_s: int
    timestamps: tuple[int, ...]
    values: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector's verdict on one point: the "why" an alert carries."""

    detector: str
    layer: str  # "L0" rules, "L1" statistics, "L2" ML
    score: float  # [0, 1], higher is worse
    observed: float | None = None
    baseline: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "layer": self.layer,
            "score": self.score,
            "observed": self.observed,
            "baseline": self.baseline,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an SRE needs to check an alert without opening a dashboard."""

    window_start: int = 0  # unix seconds
    step_s: int = 60
    values: tuple[float | None, ...] = ()
    trace_ids: tuple[str, ...] = ()
    log_samples: tuple[str, ...] = ()
    log_template: str = ""
    query: str = ""  # the SQL that produced the series, for re-running

    def to_json(self) -> dict[str, Any]:
        return {
            "window_start": self.window_start,
            "step_s": self.step_s,
            "values": list(self.values),
            "trace_ids": list(self.trace_ids),
            "log_samples": list(self.log_samples),
            "log_template": self.log_template,
            "query": self.query,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        return cls(
            window_start=int(data.get("window_start", 0)),
            step_s=int(data.get("step_s", 60)),
            values=tuple(data.get("values", ())),
            trace_ids=tuple(data.get("trace_ids", ())),
            log_samples=tuple(data.get("log_samples", ())),
            log_template=str(data.get("log_template", "")),
            query=str(data.get("query", "")),
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert raised by warroom's detectors or received from outside (Alertmanager, webhooks).

    ``fingerprint`` is stable per entity and signal, so the same problem keeps one identity across
    runs; ``ends_at`` is ``None`` while firing. ``labels`` carry service, operation, edge, metric,
    signal kind and resource attributes (host, pod, deployment version) used by correlation.
    """

    fingerprint: str
    title: str
    severity: Severity
    starts_at: datetime
    ends_at: datetime | None = None
    score: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    evidence: Evidence = field(default_factory=Evidence)
    source: str = "warroom"
    updated_at: datetime | None = None

    @property
    def firing(self) -> bool:
        return self.ends_at is None

    @property
    def service(self) -> str:
        return self.labels.get("service", "")
