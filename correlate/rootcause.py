"""Rank the likely root-cause services of one incident, each with its reasons.

Each service an incident's alerts touch is a candidate. An alert on an ``edge`` ("caller->callee")
counts for the **callee** (what the caller waited for); any other alert counts for its
``service``. A candidate's score is the weighted sum of five evidence terms in [0, 1]:

* ``walk`` — a personalised PageRank (MicroRCA-style) on the anomalous subgraph. The walker
  moves from a service to the services it calls, against the direction in which faults spread
  (callee → caller), with transitions weighted by the target's anomaly strength; a small backward
  weight (``backward``) lets it leave dead ends, and a service that calls no anomalous service
  keeps a self-loop. Teleports follow the anomaly strengths. So a callee whose callers are also
  anomalous collects their mass and ranks above them. Without a topology the term is 0;
* ``onset`` — earliest anomaly first: 1 for the first onset, falling linearly to 0 for the last;
* ``strength`` — the service's largest alert score (the severity when no score was set);
* ``local_cause`` — evidence the fault is in the service itself, within ``onset_window`` of its
  first alert: a ``new_log_template`` alert (a code fault, which metrics miss), its own resource
  saturation (a process/container metric), or a saturated machine it runs on (a node alert);
* ``change`` — the service ran more than one ``service.version`` across its alerts, or one that
  differs from ``previous_versions`` (e.g. the version before the incident, from deploy data).

``confidence = score * share``, where share is the candidate's part of all candidates' scores:
high only when the evidence is strong *and* one candidate stands out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from correlate.signals import anomalous_entity, hosts, is_infrastructure
from correlate.topology import Topology
from warroom.model import Alert, Severity, SignalKind

__all__ = ["Candidate", "RankConfig", "anomalous_entity", "rank"]


@dataclass(frozen=True, slots=True)
class RankConfig:
    w_walk: float = 0.35
    w_onset: float = 0.2
    w_strength: float = 0.15
    w_local_cause: float = 0.15
    silent_strength: float = 0.8  # a silent shared dependency's strength, relative to its callers
    w_change: float = 0.15
    damping: float = 0.85
    backward: float = 0.2
    iterations: int = 100
    onset_window: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Candidate:
    service: str
    score: float
    confidence: float  # [0, 1]
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "score": self.score,
            "confidence": self.confidence,
            "reasons": list(self.reasons),
        }


_SEVERITY_STRENGTH = {Severity.CRITICAL: 0.9, Severity.WARNING: 0.6, Severity.INFO: 0.3}


def _strength(alert: Alert) -> float:
    score = alert.score if alert.score > 0 else _SEVERITY_STRENGTH[alert.severity]
    return float(min(1.0, max(0.0, score)))


def _walk(
    services: list[str], strength: Mapping[str, float], topology: Topology, cfg: RankConfig
) -> np.ndarray:
    """Personalised PageRank on the anomalous subgraph, walking caller → callee; max-normalised."""
    n = len(services)
    index = {s: i for i, s in enumerate(services)}
    weights = np.zeros((n, n))
    for s, i in index.items():
        callees = [c for c in topology.callees(s) if c in index and c != s]
        for c in callees:
            weights[i, index[c]] += strength[c]
            weights[index[c], i] += cfg.backward * strength[s]
        if not callees:
            weights[i, i] += strength[s]
    rows = weights.sum(axis=1, keepdims=True)
    transition = np.divide(weights, rows, out=np.zeros_like(weights), where=rows > 0)
    personal = np.array([strength[s] for s in services], dtype=float)
    personal = personal / personal.sum() if personal.sum() > 0 else np.full(n, 1.0 / n)
    dangling = rows[:, 0] == 0
    rank = np.full(n, 1.0 / n)
    for _ in range(cfg.iterations):
        nxt = cfg.damping * (transition.T @ rank + rank[dangling].sum() * personal)
        nxt += (1.0 - cfg.damping) * personal
        if np.abs(nxt - rank).sum() < 1e-12:
            rank = nxt
            break
        rank = nxt
    top = rank.max()
    return rank / top if top > 0 else rank


def _local_cause(alerts: Sequence[Alert], onset: datetime, window: timedelta) -> str:
    """Evidence that the fault is *in* this service rather than passed on by a dependency: a new
    error log template (code faults, which metrics miss) or its own resource saturation (a
    process/container metric), at its onset. Empty when none."""
    for a in alerts:
        if a.starts_at - onset > window:
            continue
        signal = a.labels.get("signal")
        if signal == SignalKind.NEW_LOG_TEMPLATE.value:
            return f"new log template at onset: {a.labels.get('template') or a.title}"
    for a in alerts:
        if a.starts_at - onset <= window and a.labels.get("signal") == SignalKind.METRIC.value:
            return f"own resource saturated at onset: {a.labels.get('metric') or a.title}"
    return ""


def rank(
    incident_alerts: Sequence[Alert],
    topology: Topology | None,
    k: int = 3,
    *,
    previous_versions: Mapping[str, str] | None = None,
    config: RankConfig | None = None,
) -> list[Candidate]:
    """The ``k`` most likely root-cause services, best first (ties broken by name).

    Node and host alerts are not candidates themselves; a saturated machine is local-cause evidence
    for the incident's services running on it. A dependency that raised no alert of its own but is
    called by two or more anomalous services that no other anomalous callee explains (a database
    without telemetry behind two slow services) is a candidate too.
    """
    cfg = config or RankConfig()
    by_service: dict[str, list[Alert]] = {}
    machines: dict[str, list[Alert]] = {}
    for alert in incident_alerts:
        if is_infrastructure(alert):
            for host in hosts(alert):
                machines.setdefault(host, []).append(alert)
            continue
        entity = anomalous_entity(alert)
        if entity:
            by_service.setdefault(entity, []).append(alert)
    if not by_service or k <= 0:
        return []
    strength = {s: max(_strength(a) for a in alerts) for s, alerts in by_service.items()}
    onset: dict[str, datetime] = {s: min(a.starts_at for a in alerts) for s, alerts in by_service.items()}
    silent: dict[str, list[str]] = {}
    if topology is not None:
        for s in list(by_service):
            if any(c in by_service for c in topology.callees(s)):
                continue  # its symptoms are explained by an anomalous callee already
            for callee in topology.callees(s):
                silent.setdefault(callee, []).append(s)
        silent = {c: callers for c, callers in silent.items() if len(callers) >= 2}
        for c, callers in silent.items():
            strength[c] = cfg.silent_strength * max(strength[s] for s in callers)
            onset[c] = min(onset[s] for s in callers)
    services = sorted(strength)
    first, last = min(onset.values()), max(onset.values())
    span = (last - first).total_seconds()
    walk = _walk(services, strength, topology, cfg) if topology is not None else np.zeros(len(services))

    scored: list[tuple[str, float, list[str]]] = []
    for i, s in enumerate(services):
        alerts = by_service.get(s, [])
        reasons: list[str] = []
        onset_score = 1.0 if span == 0 else 1.0 - (onset[s] - first).total_seconds() / span
        lag = (onset[s] - first).total_seconds()
        reasons.append("earliest anomaly" if lag == 0 else f"anomalous {lag:.0f}s after the first")
        if s in silent:
            reasons.append(f"no alerts of its own; called by anomalous {', '.join(sorted(silent[s]))}")
        walk_score = float(walk[i])
        if topology is not None:
            callers = sorted(c for c in topology.upstream(s) if c in strength)
            if callers:
                reasons.append(f"depended on by anomalous {', '.join(callers)} (walk {walk_score:.2f})")
            else:
                reasons.append(f"no anomalous service depends on it (walk {walk_score:.2f})")
        reasons.append(f"max anomaly score {strength[s]:.2f}")
        local = _local_cause(alerts, onset[s], cfg.onset_window)
        saturated = {h for a in alerts for h in hosts(a)} & set(machines)
        if not local and saturated:
            host = sorted(saturated)[0]
            local = f"its machine {host} saturated: {machines[host][0].title}"
        if local:
            reasons.append(local)
        versions = sorted({v for a in alerts if (v := a.labels.get("service.version"))})
        before = (previous_versions or {}).get(s)
        changed = len(versions) > 1 or (bool(versions) and before is not None and versions[-1] != before)
        if changed:
            old = before if before is not None else versions[0]
            reasons.append(f"version changed: {old} -> {', '.join(v for v in versions if v != old)}")
        score = (
            cfg.w_walk * walk_score
            + cfg.w_onset * onset_score
            + cfg.w_strength * strength[s]
            + cfg.w_local_cause * (1.0 if local else 0.0)
            + cfg.w_change * (1.0 if changed else 0.0)
        )
        scored.append((s, score, reasons))

    total = sum(score for _, score, _ in scored)
    scored.sort(key=lambda t: (-t[1], t[0]))
    out = []
    for s, score, reasons in scored[:k]:
        share = score / total if total > 0 else 0.0
        confidence = float(min(1.0, max(0.0, score * share)))
        out.append(Candidate(s, round(score, 6), round(confidence, 6), tuple(reasons)))
    return out
