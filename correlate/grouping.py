"""Group alerts into incidents, one streaming decision per alert, each with its reasons.

A :class:`Grouper` takes alerts in start-time order. Every :meth:`Grouper.add` runs the stages in
:data:`STAGES`, in that order:

1. **dedup** — an alert already seen as ``(fingerprint, starts_at)`` updates its incident (a
   re-send, a resolve) and never opens one;
2. **affinity** — a new occurrence of a member's fingerprint (the same entity and signal firing
   again) joins that incident while it is open and within ``window`` of its last alert, or
   reopens it when it was resolved at most ``reopen_window`` ago;
3. **candidates** — open incidents whose last alert is at most ``window`` before this alert;
4. **score** — per candidate, five factors in [0, 1], all stored in the decision:

   * ``topology``: ``1 / (1 + undirected hops)`` from the alert's services (its ``service`` and
     both ends of its ``edge``) to the nearest incident service; 1 for a shared service, else 0
     without a topology or path;
   * ``resources``: 1 when the alert shares a ``host.name``, ``k8s.node.name`` or
     ``k8s.pod.name`` value, or a ``(service, service.version)`` pair, with the incident;
   * ``text``: TF-IDF cosine between the alert's text (title + ``template`` label) and the
     incident's text (its members' texts joined), with scikit-learn's weighting (raw counts, smooth
     IDF, l2). IDF is computed per decision over the candidates' texts plus the alert's:
     deterministic, no global state to persist. Each incident keeps its term counts and extends
     them as alerts join, so a decision costs the candidates' vocabularies rather than a refit over
     every member text (1,000 alerts/min with hundreds of open incidents). The price of the local
     IDF — words common to all open incidents count less — is what we want when telling them apart;
   * ``time``: ``0.5 ** (minutes since the incident's last alert / time_half_life)``;
   * ``change``: 1 when the alert carries a ``service.version`` that differs from the version
     the incident last saw for that service (a deploy during the incident);

   the candidate's score is the weighted sum (weights sum to 1);
5. **decide** — join the best candidate when its score is at least ``join_threshold``, else open a
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
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

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

STAGES: tuple[str, ...] = ("dedup", "affinity", "candidates", "score", "decide")
"""The order :meth:`Grouper.add` runs its stages in."""

IncidentStatus = Literal["open", "acknowledged", "resolved"]

_RESOURCE_KEYS = ("host.name", "k8s.node.name", "k8s.pod.name")
_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class GroupingConfig:
    """Knobs of :class:`Grouper`; the five weights must sum to 1."""

    window: timedelta = timedelta(minutes=15)
    reopen_window: timedelta = timedelta(minutes=30)
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
    reopened: bool = False  # the alert reopened a resolved incident
    at: datetime | None = None  # when a manual decision (merge, split) was taken
    actor: str = ""  # who took a manual decision


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
    resolved_at: datetime | None = None
    acknowledged_by: str = ""
    flapping: tuple[str, ...] = ()  # member fingerprints held open as flapping
    reopen_count: int = 0


def incident_id(first: Alert) -> str:
    """Stable id from the first alert's fingerprint and start (not Python's ``hash``)."""
    payload = f"{first.fingerprint}|{first.starts_at.isoformat()}"
    return "inc-" + hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def incident_id_for_split(first: Alert, parent: str) -> str:
    """Id of an incident split off ``parent``: stable, and distinct from ``incident_id(first)``."""
    payload = f"{parent}|split|{first.fingerprint}|{first.starts_at.isoformat()}"
    return "inc-" + hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def alert_services(alert: Alert) -> frozenset[str]:
    """The alert's ``service`` plus both ends of its ``edge`` ("caller->callee")."""
    found = {alert.service} if alert.service else set()
    edge = alert.labels.get("edge", "")
    if "->" in edge:
        caller, callee = edge.split("->", 1)
        found.update(s for s in (caller.strip(), callee.strip()) if s)
    return frozenset(found)


_TOKEN = re.compile(r"(?u)\b\w[\w.]*\b")


def _terms(text: str) -> Counter[str]:
    """Lower-cased word tokens, dots allowed inside (``service.version``): scikit-learn's analyzer."""
    return Counter(_TOKEN.findall(text.lower()))


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
        self.occurrences = 0  # alert occurrences grouped here (re-fires count, duplicates don't)
        self.services: set[str] = set()
        self.resources: set[tuple[str, str]] = set()
        self.versions: dict[str, str] = {}
        self.texts: list[str] = []
        self.decisions: list[GroupDecision] = []
        self.resolved_at: datetime | None = None
        self.acknowledged_by = ""
        self.flapping: set[str] = set()
        self.reopen_count = 0

    def absorb(self, alert: Alert) -> None:
        self.alerts[alert.fingerprint] = alert
        self.occurrences += 1
        self.services |= alert_services(alert)
        self.resources |= _resources(alert)
        version = alert.labels.get("service.version")
        if version and alert.service:
            self.versions[alert.service] = version
        self.texts.append(_text(alert))
        touched = max(alert.starts_at, alert.updated_at or alert.starts_at)
        self.last_alert_at = max(self.last_alert_at, touched)

    def rebuild(self) -> None:
        """Recompute the derived sets from the member alerts (after a merge or split)."""
        members = list(self.alerts.values())
        self.services, self.resources, self.versions, self.texts = set(), set(), {}, []
        for alert in members:
            self.services |= alert_services(alert)
            self.resources |= _resources(alert)
            version = alert.labels.get("service.version")
            if version and alert.service:
                self.versions[alert.service] = version
            self.texts.append(_text(alert))
        if members:
            self.started_at = min(a.starts_at for a in members)
            self.last_alert_at = max(max(a.starts_at, a.updated_at or a.starts_at) for a in members)
            self.title = min(members, key=lambda a: (a.starts_at, a.fingerprint)).title

    @property
    def status(self) -> IncidentStatus:
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_by else "open"

    @property
    def all_resolved(self) -> bool:
        """Every member alert has ended (the incident may still wait out its quiet period)."""
        return all(a.ends_at is not None for a in self.alerts.values())

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
            resolved_at=self.resolved_at,
            acknowledged_by=self.acknowledged_by,
            flapping=tuple(sorted(self.flapping)),
            reopen_count=self.reopen_count,
        )


class Grouper:
    """Streaming alert → incident grouping; feed alerts in start-time order.

    Besides :meth:`add`, the lifecycle (:mod:`correlate.lifecycle`) and people change incidents
    through :meth:`acknowledge`, :meth:`resolve`, :meth:`merge` and :meth:`split`; every such
    change is recorded as a decision so :meth:`explain` tells the whole story.
    """

    def __init__(self, topology: Topology | None = None, config: GroupingConfig | None = None) -> None:
        self.topology = topology
        self.config = config or GroupingConfig()
        self._incidents: dict[str, _State] = {}
        self._seen: dict[tuple[str, datetime], str] = {}
        self._owner: dict[str, str] = {}  # fingerprint → incident holding its latest occurrence
        self._bags: dict[str, tuple[int, Counter[str]]] = {}  # incident → (texts counted, term counts)
        self._hop_cache: dict[str, dict[str, int]] = {}  # service → undirected hops to the others

    # --- public surface ---------------------------------------------------------------------

    def add(self, alert: Alert) -> GroupDecision:
        """Run :data:`STAGES` on one alert and return the decision (also kept for :meth:`explain`)."""
        duplicate = self._dedup(alert)
        if duplicate is not None:
            return duplicate
        affine = self._affinity(alert)
        if affine is not None:
            return affine
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

    def knows(self, fingerprint: str, starts_at: datetime) -> bool:
        """True when this alert occurrence was grouped already (a new version is a duplicate)."""
        return (fingerprint, starts_at) in self._seen

    def occurrences(self, incident_id: str) -> int:
        """Alert occurrences grouped into the incident (re-fires count, duplicates do not)."""
        return self._incidents[incident_id].occurrences

    def all_resolved(self, incident_id: str) -> bool:
        return self._incidents[incident_id].all_resolved

    def mark_flapping(self, incident_id: str, fingerprint: str, flapping: bool) -> None:
        state = self._incidents[incident_id]
        if flapping:
            state.flapping.add(fingerprint)
        else:
            state.flapping.discard(fingerprint)

    def acknowledge(self, incident_id: str, actor: str) -> Incident:
        state = self._incidents[incident_id]
        state.acknowledged_by = actor or "unknown"
        return state.snapshot()

    def resolve(self, incident_id: str, at: datetime) -> Incident:
        state = self._incidents[incident_id]
        state.resolved_at = at
        return state.snapshot()

    def merge(self, target_id: str, source_id: str, actor: str, at: datetime) -> Incident:
        """Move every alert and decision of ``source_id`` into ``target_id``; the source is gone."""
        if target_id == source_id:
            raise ValueError("cannot merge an incident into itself")
        target, source = self._incidents[target_id], self._incidents.pop(source_id)
        target.alerts.update(source.alerts)
        target.occurrences += source.occurrences
        target.flapping |= source.flapping
        target.decisions.extend(source.decisions)
        target.decisions.sort(key=lambda d: d.at or d.starts_at)
        for key, owner in self._seen.items():
            if owner == source_id:
                self._seen[key] = target_id
        for fingerprint, owner in self._owner.items():
            if owner == source_id:
                self._owner[fingerprint] = target_id
        target.rebuild()
        target.decisions.append(
            GroupDecision(
                "", at, target_id, True, f"merged {source_id} into this incident", at=at, actor=actor
            )
        )
        return target.snapshot()

    def split(self, incident_id: str, fingerprints: Iterable[str], actor: str, at: datetime) -> Incident:
        """Move the alerts ``fingerprints`` of an incident into a new incident; returns the new one."""
        state = self._incidents[incident_id]
        moving = [f for f in dict.fromkeys(fingerprints)]
        unknown = [f for f in moving if f not in state.alerts]
        if unknown:
            raise KeyError(f"not members of {incident_id}: {', '.join(unknown)}")
        if len(moving) >= len(state.alerts):
            raise ValueError("a split must leave at least one alert in the incident")
        alerts = sorted((state.alerts.pop(f) for f in moving), key=lambda a: (a.starts_at, a.fingerprint))
        fresh = _State(alerts[0])
        fresh.id = incident_id_for_split(alerts[0], incident_id)
        for alert in alerts:
            fresh.absorb(alert)
            if alert.fingerprint in state.flapping:
                state.flapping.discard(alert.fingerprint)
                fresh.flapping.add(alert.fingerprint)
        fresh.occurrences = len(alerts)
        state.occurrences = max(len(state.alerts), state.occurrences - len(alerts))
        fresh.resolved_at, fresh.acknowledged_by = state.resolved_at, state.acknowledged_by
        moved = set(moving)
        for key, owner in self._seen.items():
            if owner == incident_id and key[0] in moved:
                self._seen[key] = fresh.id
        for fingerprint in moving:
            self._owner[fingerprint] = fresh.id
        state.rebuild()
        note = f"split {', '.join(moving)} from {incident_id} into {fresh.id}"
        state.decisions.append(GroupDecision("", at, incident_id, False, note, at=at, actor=actor))
        fresh.decisions.append(GroupDecision("", at, fresh.id, False, note, at=at, actor=actor))
        self._incidents[fresh.id] = fresh
        return fresh.snapshot()

    def forget(self, incident_id: str) -> None:
        """Drop a finished incident from memory (its rows live on in the incident store)."""
        self._incidents.pop(incident_id, None)
        self._seen = {k: v for k, v in self._seen.items() if v != incident_id}
        self._owner = {k: v for k, v in self._owner.items() if v != incident_id}

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

    def _affinity(self, alert: Alert) -> GroupDecision | None:
        owner = self._owner.get(alert.fingerprint)
        state = self._incidents.get(owner) if owner is not None else None
        if state is None:
            return None
        if state.resolved_at is None:
            if alert.starts_at - state.last_alert_at > self.config.window:
                return None
            reason, reopened = "joined: the same alert fired again while the incident is open", False
        else:
            since = alert.starts_at - state.resolved_at
            if since > self.config.reopen_window:
                return None
            seconds = max(0.0, since.total_seconds())
            reason, reopened = f"reopened: a member alert fired again {seconds:.0f}s after the resolve", True
            state.resolved_at = None
            state.reopen_count += 1
        state.absorb(alert)
        self._seen[(alert.fingerprint, alert.starts_at)] = state.id
        decision = GroupDecision(
            alert.fingerprint, alert.starts_at, state.id, True, reason, reopened=reopened
        )
        state.decisions.append(decision)
        return decision

    def _candidates(self, alert: Alert) -> list[_State]:
        horizon = alert.starts_at - self.config.window
        return [s for s in self._incidents.values() if s.resolved_at is None and s.last_alert_at >= horizon]

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
        self._owner[alert.fingerprint] = state.id
        decision = GroupDecision(alert.fingerprint, alert.starts_at, state.id, joined, reason, tuple(scored))
        state.decisions.append(decision)
        return decision

    # --- factors ------------------------------------------------------------------------------

    def _topology(self, alert: Alert, state: _State) -> float:
        mine = alert_services(alert)
        if mine & state.services:
            return 1.0  # the same service: zero hops, known without a topology
        if self.topology is None:
            return 0.0
        hops = [h for a in mine for b in state.services if (h := self._distances(a).get(b)) is not None]
        return 1.0 / (1.0 + min(hops)) if hops else 0.0

    def _distances(self, service: str) -> dict[str, int]:
        """Undirected hops from ``service`` to every reachable service; one BFS per service, cached
        (the topology is immutable), so a decision costs a lookup per candidate service."""
        cached = self._hop_cache.get(service)
        if cached is not None:
            return cached
        dist: dict[str, int] = {}
        if self.topology is not None and service in self.topology.services:
            dist[service] = 0
            queue = [service]
            for node in queue:
                for nxt in (*self.topology.callees(node), *self.topology.callers(node)):
                    if nxt not in dist:
                        dist[nxt] = dist[node] + 1
                        queue.append(nxt)
        self._hop_cache[service] = dist
        return dist

    def _time(self, alert: Alert, state: _State) -> float:
        minutes = max(0.0, (alert.starts_at - state.last_alert_at).total_seconds() / 60.0)
        half_life = self.config.time_half_life.total_seconds() / 60.0
        return float(0.5 ** (minutes / half_life)) if half_life > 0 else 0.0

    @staticmethod
    def _change(alert: Alert, state: _State) -> float:
        version = alert.labels.get("service.version")
        known = state.versions.get(alert.service)
        return 1.0 if version and known and version != known else 0.0

    def _text_similarity(self, alert: Alert, candidates: list[_State]) -> list[float]:
        """TF-IDF cosine (scikit-learn's defaults: raw counts, smooth IDF, l2) of the alert against
        each candidate, with IDF over these documents only. Each incident's term counts are kept
        and extended as alerts join, so a decision costs the candidates' vocabularies, not a refit
        over every member text."""
        mine = _terms(_text(alert))
        if not mine:
            return [0.0] * len(candidates)
        bags = [self._bag(state) for state in candidates]
        df: Counter[str] = Counter(mine.keys())
        for bag in bags:
            df.update(bag.keys())
        n = 1 + len(bags)
        idf = {t: math.log((1 + n) / (1 + d)) + 1.0 for t, d in df.items()}
        weights = {t: c * idf[t] for t, c in mine.items()}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        sims = []
        for bag in bags:
            other = math.sqrt(sum((c * idf[t]) ** 2 for t, c in bag.items()))
            dot = sum(w * bag[t] * idf[t] for t, w in weights.items() if t in bag)
            sims.append(min(1.0, max(0.0, dot / (norm * other))) if other > 0 else 0.0)
        return sims

    def _bag(self, state: _State) -> Counter[str]:
        """The incident's term counts, extended with the texts added since the last call."""
        seen, bag = self._bags.get(state.id, (0, Counter()))
        if seen > len(state.texts):  # rebuilt after a merge or split: start over
            seen, bag = 0, Counter()
        for text in state.texts[seen:]:
            bag.update(_terms(text))
        self._bags[state.id] = (len(state.texts), bag)
        return bag
