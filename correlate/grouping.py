"""Group alerts into incidents, one streaming decision per alert, each with its reasons.

A :class:`Grouper` takes alerts in start-time order. Every :meth:`Grouper.add` runs the stages in
:data:`STAGES`, in that order:

1. **dedup** — an alert already seen as ``(fingerprint, starts_at)`` updates its incident (a
   re-send, a resolve) and never opens one;
2. **candidates** — open incidents whose last alert is at most ``window`` before this alert;
3. **score** — per candidate, five factors in [0, 1], all stored in the decision:

   * ``topology``: ``1 / (1 + undirected hops)`` from the alert's services (its ``service`` and
     both ends of its ``edge``) to the nearest incident service; 0 without a topology or path;
   * ``resources``: 1 when the alert shares a ``host.name``, ``k8s.node.name`` or
     ``k8s.pod.name`` value, or a ``(service, service.version)`` pair, with the incident;
   * ``text``: TF-IDF cosine between the alert's text (title + ``template`` label) and the
     incident's text (its members' texts joined). The vectorizer is fitted per decision on the
     candidates' texts plus the alert's: deterministic, no global state to persist, and bounded by
     the number of open incidents in the window. The price is a local IDF — words common to all
     open incidents count less, which is what we want when telling them apart;
   * ``time``: ``0.5 ** (minutes since the incident's last alert / time_half_life)``;
   * ``change``: 1 when the alert carries a ``service.version`` that differs from the version
     the incident last saw for that service (a deploy during the incident);

   the candidate's score is the weighted sum (weights sum to 1);
4. **decide** — join the best candidate when its score is at least ``join_threshold``, else open a
   new incident. The :class:`GroupDecision` records the verdict, a one-line reason and every
   candidate's factors; :meth:`Grouper.explain` returns an incident's decisions.

The default ``join_threshold`` (0.38) is tuned on the fixture shop: time and topology alone give
a one-hop neighbour at most ``0.35 * 0.5 + 0.15 = 0.325``, so a simultaneous alert next to an
incident but with an unrelated title (cart memory next to a frontend latency alert) opens its own
incident, while a one-hop neighbour with a similar title (text ≳ 0.2) or a shared host joins
(adjacent latency alerts of one fault score 0.41–0.49, same-service alerts ≥ 0.6). Two hops away
needs text ≳ 0.4; unconnected services need text and a shared resource.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from correlate.topology import Topology
from warroom.model import Alert, Severity

__all__ = [
    "STAGES",
    "CandidateScore",
    "Factors",
    "GroupDecision",
    "Grouper",
    "GroupingConfig",
    "Incident",
    "IncidentStatus",
    "alert_services",
    "incident_id",
]

STAGES: tuple[str, ...] = ("dedup", "candidates", "score", "decide")
"""The order :meth:`Grouper.add` runs its stages in."""

IncidentStatus = Literal["open", "resolved"]

_RESOURCE_KEYS = ("host.name", "k8s.node.name", "k8s.pod.name")
_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class GroupingConfig:
    """Knobs of :class:`Grouper`; the five weights must sum to 1."""

    window: timedelta = timedelta(minutes=15)
    join_threshold: float = 0.38
    time_half_life: timedelta = timedelta(minutes=5)
    w_topology: float = 0.35
    w_resources: float = 0.1
    w_text: float = 0.3
    w_time: float = 0.15
    w_change: float = 0.1

    def __post_init__(self) -> None:
        total = self.w_topology + self.w_resources + self.w_text + self.w_time + self.w_change
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"grouping weights must sum to 1, got {total}")
        if not 0.0 <= self.join_threshold <= 1.0:
            raise ValueError(f"join_threshold must be in [0, 1], got {self.join_threshold}")


@dataclass(frozen=True, slots=True)
class Factors:
    """One candidate's factor scores, each in [0, 1]."""

    topology: float
    resources: float
    text: float
    time: float
    change: float

    def weighted(self, config: GroupingConfig) -> float:
        return (
            config.w_topology * self.topology
            + config.w_resources * self.resources
            + config.w_text * self.text
            + config.w_time * self.time
            + config.w_change * self.change
        )


@dataclass(frozen=True, slots=True)
class CandidateScore:
    incident_id: str
    factors: Factors
    score: float


@dataclass(frozen=True, slots=True)
class GroupDecision:
    """Why an alert went where it went: "why grouped here"."""

    fingerprint: str
    starts_at: datetime
    incident_id: str
    joined: bool  # False when the alert opened ``incident_id``
    reason: str
    candidates: tuple[CandidateScore, ...] = ()
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Incident:
    """A snapshot of one incident; :class:`Grouper` returns a fresh one after every change."""

    id: str
    title: str
    severity: Severity
    status: IncidentStatus
    started_at: datetime
    last_alert_at: datetime
    fingerprints: tuple[str, ...]
    services: tuple[str, ...]
    decisions: tuple[GroupDecision, ...] = field(default=(), repr=False)


def incident_id(first: Alert) -> str:
    """Stable id from the first alert's fingerprint and start (not Python's ``hash``)."""
    payload = f"{first.fingerprint}|{first.starts_at.isoformat()}"
    return "inc-" + hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def alert_services(alert: Alert) -> frozenset[str]:
    """The alert's ``service`` plus both ends of its ``edge`` ("caller->callee")."""
    found = {alert.service} if alert.service else set()
    edge = alert.labels.get("edge", "")
    if "->" in edge:
        caller, callee = edge.split("->", 1)
        found.update(s for s in (caller.strip(), callee.strip()) if s)
    return frozenset(found)


def _text(alert: Alert) -> str:
    return f"{alert.title} {alert.labels.get('template', '')}".strip()


def _resources(alert: Alert) -> set[tuple[str, str]]:
    found = {(k, alert.labels[k]) for k in _RESOURCE_KEYS if alert.labels.get(k)}
    version = alert.labels.get("service.version")
    if version and alert.service:
        found.add((f"service.version:{alert.service}", version))
    return found


class _State:
    """Mutable working state of one incident (the public view is :class:`Incident`)."""

    def __init__(self, first: Alert) -> None:
        self.id = incident_id(first)
        self.title = first.title
        self.started_at = first.starts_at
        self.last_alert_at = first.starts_at
        self.alerts: dict[str, Alert] = {}  # latest alert per fingerprint, in arrival order
        self.services: set[str] = set()
        self.resources: set[tuple[str, str]] = set()
        self.versions: dict[str, str] = {}
        self.texts: list[str] = []
        self.decisions: list[GroupDecision] = []

    def absorb(self, alert: Alert) -> None:
        self.alerts[alert.fingerprint] = alert
        self.services |= alert_services(alert)
        self.resources |= _resources(alert)
        version = alert.labels.get("service.version")
        if version and alert.service:
            self.versions[alert.service] = version
        self.texts.append(_text(alert))
        touched = max(alert.starts_at, alert.updated_at or alert.starts_at)
        self.last_alert_at = max(self.last_alert_at, touched)

    @property
    def status(self) -> IncidentStatus:
        return "resolved" if all(a.ends_at is not None for a in self.alerts.values()) else "open"

    def snapshot(self) -> Incident:
        severity = max((a.severity for a in self.alerts.values()), key=_SEVERITY_RANK.__getitem__)
        return Incident(
            id=self.id,
            title=self.title,
            severity=severity,
            status=self.status,
            started_at=self.started_at,
            last_alert_at=self.last_alert_at,
            fingerprints=tuple(self.alerts),
            services=tuple(sorted(self.services)),
            decisions=tuple(self.decisions),
        )


class Grouper:
    """Streaming alert → incident grouping; feed alerts in start-time order."""

    def __init__(self, topology: Topology | None = None, config: GroupingConfig | None = None) -> None:
        self.topology = topology
        self.config = config or GroupingConfig()
        self._incidents: dict[str, _State] = {}
        self._seen: dict[tuple[str, datetime], str] = {}

    # --- public surface ---------------------------------------------------------------------

    def add(self, alert: Alert) -> GroupDecision:
        """Run :data:`STAGES` on one alert and return the decision (also kept for :meth:`explain`)."""
        duplicate = self._dedup(alert)
        if duplicate is not None:
            return duplicate
        candidates = self._candidates(alert)
        scored = self._score(alert, candidates)
        return self._decide(alert, scored)

    def add_all(self, alerts: Iterable[Alert]) -> list[GroupDecision]:
        return [self.add(a) for a in sorted(alerts, key=lambda a: a.starts_at)]

    def explain(self, incident_id: str) -> list[GroupDecision]:
        """Every decision that touched ``incident_id``, oldest first (KeyError if unknown)."""
        return list(self._incidents[incident_id].decisions)

    def incident(self, incident_id: str) -> Incident:
        return self._incidents[incident_id].snapshot()

    def incidents(self) -> list[Incident]:
        """All incidents, oldest first."""
        return [s.snapshot() for s in self._incidents.values()]

    def alerts(self, incident_id: str) -> list[Alert]:
        """The latest version of each member alert, in arrival order."""
        return list(self._incidents[incident_id].alerts.values())

    # --- stages -------------------------------------------------------------------------------

    def _dedup(self, alert: Alert) -> GroupDecision | None:
        owner = self._seen.get((alert.fingerprint, alert.starts_at))
        if owner is None:
            return None
        state = self._incidents[owner]
        state.alerts[alert.fingerprint] = alert
        touched = alert.updated_at or alert.ends_at or alert.starts_at
        state.last_alert_at = max(state.last_alert_at, touched)
        what = "resolve" if alert.ends_at is not None else "re-send"
        decision = GroupDecision(
            alert.fingerprint,
            alert.starts_at,
            owner,
            True,
            f"duplicate ({what}) of a member alert",
            duplicate=True,
        )
        state.decisions.append(decision)
        return decision

    def _candidates(self, alert: Alert) -> list[_State]:
        horizon = alert.starts_at - self.config.window
        return [s for s in self._incidents.values() if s.status == "open" and s.last_alert_at >= horizon]

    def _score(self, alert: Alert, candidates: list[_State]) -> list[CandidateScore]:
        if not candidates:
            return []
        texts = self._text_similarity(alert, candidates)
        scored = []
        for state, text in zip(candidates, texts, strict=True):
            factors = Factors(
                topology=self._topology(alert, state),
                resources=1.0 if _resources(alert) & state.resources else 0.0,
                text=text,
                time=self._time(alert, state),
                change=self._change(alert, state),
            )
            scored.append(CandidateScore(state.id, factors, round(factors.weighted(self.config), 6)))
        return scored

    def _decide(self, alert: Alert, scored: list[CandidateScore]) -> GroupDecision:
        best = max(scored, key=lambda c: c.score, default=None)
        threshold = self.config.join_threshold
        if best is not None and best.score >= threshold:
            state = self._incidents[best.incident_id]
            reason = f"joined: best score {best.score:.3f} >= threshold {threshold:.3f}"
            joined = True
        else:
            state = _State(alert)
            self._incidents[state.id] = state
            reason = (
                "opened: no open incident in the window"
                if best is None
                else f"opened: best score {best.score:.3f} < threshold {threshold:.3f}"
            )
            joined = False
        state.absorb(alert)
        self._seen[(alert.fingerprint, alert.starts_at)] = state.id
        decision = GroupDecision(alert.fingerprint, alert.starts_at, state.id, joined, reason, tuple(scored))
        state.decisions.append(decision)
        return decision

    # --- factors ------------------------------------------------------------------------------

    def _topology(self, alert: Alert, state: _State) -> float:
        if self.topology is None:
            return 0.0
        mine = alert_services(alert)
        if mine & state.services:
            return 1.0
        known = set(self.topology.services)
        hops = [
            h
            for a in mine & known
            for b in state.services & known
            if (h := self.topology.hops(a, b, directed=False)) is not None
        ]
        return 1.0 / (1.0 + min(hops)) if hops else 0.0

    def _time(self, alert: Alert, state: _State) -> float:
        minutes = max(0.0, (alert.starts_at - state.last_alert_at).total_seconds() / 60.0)
        half_life = self.config.time_half_life.total_seconds() / 60.0
        return float(0.5 ** (minutes / half_life)) if half_life > 0 else 0.0

    @staticmethod
    def _change(alert: Alert, state: _State) -> float:
        version = alert.labels.get("service.version")
        known = state.versions.get(alert.service)
        return 1.0 if version and known and version != known else 0.0

    @staticmethod
    def _text_similarity(alert: Alert, candidates: list[_State]) -> list[float]:
        docs = [_text(alert)] + [" ".join(s.texts) for s in candidates]
        try:
            matrix = TfidfVectorizer(token_pattern=r"(?u)\b\w[\w.]*\b").fit_transform(docs)
        except ValueError:  # every document empty or stop words only
            return [0.0] * len(candidates)
        sims = cosine_similarity(matrix[0:1], matrix[1:])[0]
        return [float(min(1.0, max(0.0, s))) for s in sims]
