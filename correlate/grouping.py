"""Group alerts into incidents, one streaming decision per alert, each with its reasons.

A :class:`Grouper` takes alerts in start-time order. Every :meth:`Grouper.add` runs the stages in
:data:`STAGES`, in that order:

1. **dedup** — an alert already seen as ``(fingerprint, starts_at)`` updates its incident (a
   re-send, a resolve) and never opens one;
2. **affinity** — a new occurrence of a member's fingerprint (the same entity and signal firing
   again at most ``reopen_window`` after its previous occurrence ended) joins that incident, and
   reopens it when it was resolved; a series firing again later is scored like any new alert
   (the same series can fire for another fault);
3. **candidates** — unresolved incidents that gained a new member series at most ``window``
   before this alert, or still have a (non-flapping) member firing;
4. **score** — per candidate, five factors in [0, 1], all stored in the decision:

   * ``topology``: direction-aware proximity to the incident's *roots* (its services that call no
     other service of it): ``1/(1+h)`` for an alert ``h`` hops upstream of a root (symptoms spread
     from callees to callers), less for one below a root or beside it; 1 on a root itself with a
     symptom family it already shows (errors, latency, resources), 0.5 with a new one; 1 for a
     machine and the workloads on it. Saturation (a resource metric) does not spread along calls,
     and a service running another build than the incident saw counts as a different service. See
     :meth:`Grouper._topology`;
   * ``resources``: a pod or release (``service.version``) shared with *another* service of the
     incident, or a machine when one side is about the machine itself (a node alert);
   * ``text``: TF-IDF cosine between the alert's text (its title without the measured values, plus
     its ``template`` label) and the incident's text (one text per member series), with
     scikit-learn's weighting (raw counts, smooth IDF, l2). IDF is computed per decision over the
     candidates' texts plus the alert's: deterministic, no global state to persist. Each incident
     keeps its term counts and extends them as series join, so a decision costs the candidates'
     vocabularies rather than a refit over every member text (1,000 alerts/min with hundreds of
     open incidents);
   * ``time``: ``0.5 ** (minutes since the incident's onset / time_half_life)``: one fault's
     symptoms arrive in a burst after its onset;
   * ``change``: 1 when the alert runs a build its service got recently (a deploy seen in the
     stream) and the incident already holds alerts of that build;

   the candidate's score is the weighted sum (weights sum to 1);
5. **decide** — join the best candidate when its score is at least ``join_threshold``, else open a
   new incident. When the alert also scores at least ``merge_threshold`` with other incidents
   opened within ``burst`` of it, they were one fault seen out of order (callers' alerts before
   the one that ties them): they are merged into the oldest. The :class:`GroupDecision` records
   the verdict, a one-line reason and every candidate's factors; :meth:`Grouper.explain` returns
   an incident's decisions.

The defaults are tuned on the alert streams of ``warroom bench correlate`` (seeds 1 and 2; the
bench's default seed 0 is held out): see that bench for the figures.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from correlate.signals import HOST_KEYS, alert_services, hosts, is_infrastructure, symptom
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


@dataclass(frozen=True, slots=True)
class GroupingConfig:
    """Knobs of :class:`Grouper`; the five weights must sum to 1."""

    window: timedelta = timedelta(minutes=15)
    burst: timedelta = timedelta(minutes=5)
    merge_threshold: float = 0.55
    reopen_window: timedelta = timedelta(minutes=10)
    join_threshold: float = 0.32
    time_half_life: timedelta = timedelta(minutes=10)
    w_topology: float = 0.45
    w_resources: float = 0.05
    w_text: float = 0.2
    w_time: float = 0.2
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
    merged: tuple[str, ...] = ()  # incidents this alert tied to its own, merged into it
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


_TOKEN = re.compile(r"(?u)\b\w[\w.]*\b")


def _terms(text: str) -> Counter[str]:
    """Lower-cased word tokens, dots allowed inside (``service.version``): scikit-learn's analyzer."""
    return Counter(_TOKEN.findall(text.lower()))


_VALUES = re.compile(r"\([^)]*\)|\S*\d\S*")


def _text(alert: Alert) -> str:
    """What the alert is about, without its measurements: ``checkout error ratio 6.6% (baseline
    0.3%)`` reads ``checkout error ratio``, so two alerts are not similar for sharing numbers."""
    title = " ".join(_VALUES.sub(" ", alert.title).split())
    return f"{title} {alert.labels.get('template', '')}".strip()


_DOWNSTREAM = 0.75  # a callee alert: may be the cause, often detected a little later
_SIDEWAYS = 0.5  # related only through a shared caller or callee
_NEW_SYMPTOM = 0.5  # a service of the incident showing a new kind of symptom


def _placed_together(alert: Alert, state: _State) -> bool:
    """A node alert beside the incident's workloads on that node, or a workload on a node the
    incident holds a node alert for: the machine is zero hops from what runs on it."""
    machines = hosts(alert)
    if not machines:
        return False
    if is_infrastructure(alert):
        return any(kind == "machine" and value in machines for kind, value, _ in state.resources)
    return bool(machines & state.infra_hosts)


Resource = tuple[str, str, str]  # (kind: machine | pod | version, value, the service it belongs to)


def _resources(alert: Alert) -> set[Resource]:
    service = alert.service
    found = {("machine", alert.labels[k], service) for k in HOST_KEYS if alert.labels.get(k)}
    if pod := alert.labels.get("k8s.pod.name"):
        found.add(("pod", pod, service))
    if version := alert.labels.get("service.version"):
        found.add(("version", version, service))
    return found


def _resource_overlap(alert: Alert, incident: set[Resource], infra_hosts: set[str]) -> float:
    """1 when the alert shares a pod or a release (the same ``service.version``) with *another*
    service of the incident — for its own service that is the same-service proximity already — or
    a machine, when one side is about the machine itself (a node alert beside the incident's
    workloads on that node, or a workload on a node the incident has a node alert for); half for a
    resource metric on a shared machine (a noisy neighbour). In a cluster services share nodes by
    scheduling, not by fault, so a shared node alone says little."""
    mine = _resources(alert)
    values = {(kind, value) for kind, value, owner in incident if owner != alert.service}
    if any((kind, value) in values for kind, value, _ in mine if kind != "machine"):
        return 1.0
    machines = {value for kind, value, _ in mine if kind == "machine"}
    shared = machines & {value for kind, value, _ in incident if kind == "machine"}
    if not shared:
        return 0.0
    if is_infrastructure(alert) or shared & infra_hosts:
        return 1.0
    return 0.5 if alert.labels.get("signal") == "metric" else 0.0


class _State:
    """Mutable working state of one incident (the public view is :class:`Incident`)."""

    def __init__(self, first: Alert) -> None:
        self.id = incident_id(first)
        self.title = first.title
        self.started_at = first.starts_at
        self.last_alert_at = first.starts_at
        self.last_growth_at = first.starts_at  # when a new member series last joined
        self.last_fire_at = first.starts_at  # the latest occurrence start (updates do not count)
        self.alerts: dict[str, Alert] = {}  # latest alert per fingerprint, in arrival order
        self.firing: set[str] = set()  # members whose latest version has not ended
        self.occurrences = 0  # alert occurrences grouped here (re-fires count, duplicates don't)
        self.services: set[str] = set()
        self.resources: set[Resource] = set()
        self.infra_hosts: set[str] = set()  # machines the incident has a node/host alert for
        self.symptoms: dict[str, set[str]] = {}  # service → symptom families seen on it
        self.onsets: dict[str, datetime] = {}  # service → its first alert in the incident
        self.versions: dict[str, str] = {}
        self.texts: list[str] = []
        self.decisions: list[GroupDecision] = []
        self.resolved_at: datetime | None = None
        self.acknowledged_by = ""
        self.flapping: set[str] = set()
        self.reopen_count = 0

    def absorb(self, alert: Alert) -> None:
        if alert.fingerprint not in self.alerts:
            self.texts.append(_text(alert))  # one text per member series: re-fires add no weight
            self.last_growth_at = max(self.last_growth_at, alert.starts_at)
        self.put(alert)
        self.occurrences += 1
        self._index(alert)
        touched = max(alert.starts_at, alert.updated_at or alert.starts_at)
        self.last_alert_at = max(self.last_alert_at, touched)
        self.last_fire_at = max(self.last_fire_at, alert.starts_at)

    def _index(self, alert: Alert) -> None:
        """Fold a member into the derived views scoring reads: services, resources, machines,
        symptoms and onsets per service, builds."""
        self.services |= alert_services(alert)
        self.resources |= _resources(alert)
        if is_infrastructure(alert):
            self.infra_hosts |= hosts(alert)
        for service in alert_services(alert):
            self.symptoms.setdefault(service, set()).add(symptom(alert))
            if service not in self.onsets or alert.starts_at < self.onsets[service]:
                self.onsets[service] = alert.starts_at
        version = alert.labels.get("service.version")
        if version and alert.service:
            self.versions[alert.service] = version

    def rebuild(self) -> None:
        """Recompute the derived views from the member alerts (after a merge or split)."""
        members = list(self.alerts.values())
        self.services, self.resources, self.versions = set(), set(), {}
        self.infra_hosts, self.symptoms, self.onsets = set(), {}, {}
        self.firing = {fp for fp, a in self.alerts.items() if a.ends_at is None}
        self.texts = [_text(a) for a in members]
        for alert in members:
            self._index(alert)
        if members:
            self.started_at = min(a.starts_at for a in members)
            self.last_alert_at = max(max(a.starts_at, a.updated_at or a.starts_at) for a in members)
            self.last_growth_at = max(a.starts_at for a in members)
            self.last_fire_at = max(self.last_fire_at, self.last_growth_at)
            self.title = min(members, key=lambda a: (a.starts_at, a.fingerprint)).title

    @property
    def status(self) -> IncidentStatus:
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_by else "open"

    def put(self, alert: Alert) -> None:
        """Store the latest version of a member alert, tracking which members still fire."""
        self.alerts[alert.fingerprint] = alert
        if alert.ends_at is None:
            self.firing.add(alert.fingerprint)
        else:
            self.firing.discard(alert.fingerprint)

    @property
    def ongoing(self) -> bool:
        """A member that is not flapping still fires: the fault goes on, new symptoms may join."""
        return bool(self.firing - self.flapping)

    @property
    def all_resolved(self) -> bool:
        """Every member alert has ended (the incident may still wait out its quiet period)."""
        return not self.firing

    def snapshot(self) -> Incident:
        severity = max((a.severity for a in self.alerts.values()), key=lambda s: s.rank)
        return self._view(severity)

    def _view(self, severity: Severity) -> Incident:
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
        self._gone: dict[str, Incident] = {}  # merged-away incidents, until the lifecycle reports them
        self._builds: dict[str, str] = {}  # service → the build its latest alert ran
        self._deploys: dict[str, tuple[str, str, datetime]] = {}  # service → (old, new, first seen)
        self._bags: dict[str, tuple[int, Counter[str]]] = {}  # incident → (texts counted, term counts)
        self._hop_cache: dict[str, tuple[dict[str, int], dict[str, int], dict[str, int]]] = {}

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
        decision = self._decide(alert, scored)
        self._observe_version(alert)
        return decision

    def add_all(self, alerts: Iterable[Alert]) -> list[GroupDecision]:
        return [self.add(a) for a in sorted(alerts, key=lambda a: a.starts_at)]

    def explain(self, incident_id: str) -> list[GroupDecision]:
        """Every decision that touched ``incident_id``, oldest first (KeyError if unknown)."""
        return list(self._incidents[incident_id].decisions)

    def has(self, incident_id: str) -> bool:
        return incident_id in self._incidents

    def ids(self) -> list[str]:
        """Every incident id in the working set, oldest first (cheap: no snapshots)."""
        return list(self._incidents)

    def resolved_at(self, incident_id: str) -> datetime | None:
        return self._incidents[incident_id].resolved_at

    def incident(self, incident_id: str) -> Incident:
        return self._incidents[incident_id].snapshot()

    def incidents(self) -> list[Incident]:
        """All incidents, oldest first."""
        return [s.snapshot() for s in self._incidents.values()]

    def alerts(self, incident_id: str) -> list[Alert]:
        """The latest version of each member alert, in arrival order."""
        return list(self._incidents[incident_id].alerts.values())

    def take_merged(self, incident_id: str) -> Incident | None:
        """The last snapshot of an incident merged into another (once), to report it resolved."""
        return self._gone.pop(incident_id, None)

    def owner(self, fingerprint: str, starts_at: datetime) -> str | None:
        """The incident an alert occurrence belongs to now (after merges and splits), if known."""
        return self._seen.get((fingerprint, starts_at))

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

    def merge(self, target_id: str, source_id: str, actor: str, at: datetime, reason: str = "") -> Incident:
        """Move every alert and decision of ``source_id`` into ``target_id``; the source is gone."""
        if target_id == source_id:
            raise ValueError("cannot merge an incident into itself")
        target, source = self._incidents[target_id], self._incidents.pop(source_id)
        self._gone[source_id] = replace(source.snapshot(), status="resolved", resolved_at=at)
        target.alerts.update(source.alerts)
        target.occurrences += source.occurrences
        target.flapping |= source.flapping
        target.last_fire_at = max(target.last_fire_at, source.last_fire_at)
        target.decisions.extend(source.decisions)
        target.decisions.sort(key=lambda d: d.at or d.starts_at)
        for key, owner in self._seen.items():
            if owner == source_id:
                self._seen[key] = target_id
        for fingerprint, owner in self._owner.items():
            if owner == source_id:
                self._owner[fingerprint] = target_id
        target.rebuild()
        self._bags.pop(target_id, None)
        self._bags.pop(source_id, None)
        note = f"merged {source_id} into this incident" + (f": {reason}" if reason else "")
        target.decisions.append(GroupDecision("", at, target_id, True, note, at=at, actor=actor))
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
        self._bags.pop(incident_id, None)
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
        state.put(alert)
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
        previous = state.alerts.get(alert.fingerprint)
        quiet_since = previous.ends_at if previous is not None else None
        if quiet_since is not None and alert.starts_at - quiet_since > self.config.reopen_window:
            return None  # the series fires again long after: maybe another fault, so score it
        if state.resolved_at is None:
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
        return [
            s
            for s in self._incidents.values()
            if s.resolved_at is None
            and (s.last_growth_at >= horizon or s.ongoing)
            and not s.flapping.issuperset(s.alerts)  # a flapper alone explains nothing else
        ]

    def _score(self, alert: Alert, candidates: list[_State]) -> list[CandidateScore]:
        if not candidates:
            return []
        texts = self._text_similarity(alert, candidates)
        scored = []
        for state, text in zip(candidates, texts, strict=True):
            factors = Factors(
                topology=self._topology(alert, state),
                resources=_resource_overlap(alert, state.resources, state.infra_hosts),
                text=text,
                time=self._time(alert, state),
                change=self._change(alert, state),
            )
            scored.append(CandidateScore(state.id, factors, round(factors.weighted(self.config), 6)))
        return scored

    def _decide(self, alert: Alert, scored: list[CandidateScore]) -> GroupDecision:
        best = max(scored, key=lambda c: (c.score, c.incident_id), default=None)
        threshold = self.config.join_threshold
        merged: list[str] = []
        if best is not None and best.score >= threshold:
            state = self._incidents[best.incident_id]
            reason = f"joined: best score {best.score:.3f} >= threshold {threshold:.3f}"
            joined = True
            state, merged = self._merge_burst(alert, state, scored)
            if merged:
                reason += f"; it also ties {', '.join(merged)} opened in the same burst: merged"
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
        decision = GroupDecision(
            alert.fingerprint, alert.starts_at, state.id, joined, reason, tuple(scored), merged=tuple(merged)
        )
        state.decisions.append(decision)
        return decision

    def _merge_burst(
        self, alert: Alert, state: _State, scored: list[CandidateScore]
    ) -> tuple[_State, list[str]]:
        """Symptoms of one fault arrive in a burst, in no useful order: callers' alerts can open
        incidents before the alert that ties them (their shared callee) arrives. When this alert
        scores above the threshold with several incidents that all started within ``burst`` of
        it, they are one incident: merge them into the oldest."""
        burst = self.config.burst
        young = [
            self._incidents[c.incident_id]
            for c in scored
            if c.score >= self.config.merge_threshold
            and alert.starts_at - self._incidents[c.incident_id].started_at <= burst
        ]
        if len(young) < 2 or state not in young:
            return state, []
        young.sort(key=lambda s: (s.started_at, s.id))
        target, merged = young[0], []
        for other in young[1:]:
            self.merge(target.id, other.id, "warroom", alert.starts_at, reason="tied by a later alert")
            merged.append(other.id)
        return target, merged

    # --- factors ------------------------------------------------------------------------------

    def _topology(self, alert: Alert, state: _State) -> float:
        """Direction-aware proximity to what the incident is *about*: its roots, the services of
        the incident that call no other service of it (where its symptoms come from). Symptoms
        spread from a callee to its callers, so an alert *upstream* of a root (``h`` hops up)
        scores ``1/(1+h)``; one below a root (a deeper cause) ``DOWNSTREAM/(1+h)``; a caller of a
        dependency the root also uses, ``d`` hops in all, ``1/(1+d/2)``; anything else connected
        ``SIDEWAYS/(1+h)`` on undirected hops. Measuring to the roots rather than to every
        member keeps a busy entry service (in every incident as a symptom) from pulling unrelated
        faults together. A root's own service scores 1 with a symptom it already shows (or one its
        saturation explains) and ``NEW_SYMPTOM`` with a new kind."""
        mine = alert_services(alert) - self._rebuilt(alert, state)
        roots = self._roots(state)
        kind = symptom(alert)
        compatible = {kind, "any", "resources"}
        same = mine & roots
        if any(kind == "any" or state.symptoms.get(s, set()) & compatible for s in same):
            return 1.0  # a root itself, with a symptom it already shows or its saturation explains
        if same:
            return _NEW_SYMPTOM  # the same service, another symptom: maybe another fault on it
        if _placed_together(alert, state):
            return 1.0  # a machine and the workloads on it
        if kind == "resources":
            return 0.0  # saturation is local: it does not spread along calls
        if self.topology is None:
            return 1.0 if mine & state.services else 0.0
        best = 0.0
        # A callee turning anomalous well after the incident began neither caused it (it started
        # later) nor was caused by it (faults spread to callers): only early ones may be the cause.
        early = alert.starts_at - state.started_at <= self.config.burst
        horizon = alert.starts_at - self.config.window
        recent = [b for b in roots if state.onsets.get(b, state.started_at) >= horizon]
        for a in mine:
            up, down, any_way = self._distances(a)
            for b in recent:
                if (h := down.get(b)) is not None:  # b is a callee of a: a is upstream of b
                    best = max(best, 1.0 / (1.0 + h))
                elif (h := up.get(b)) is not None and early:
                    best = max(best, _DOWNSTREAM / (1.0 + h))
                elif (d := self._shared_callee(down, b)) is not None:
                    best = max(best, 1.0 / (1.0 + d / 2.0))
                elif (h := any_way.get(b)) is not None:
                    best = max(best, _SIDEWAYS / (1.0 + h))
        return best

    def _roots(self, state: _State) -> set[str]:
        """Services of the incident that call no other service of it (all of them without a topology)."""
        if self.topology is None:
            return set(state.services)
        known = set(self.topology.services)
        roots = {s for s in state.services if not (set(self.topology.callees(s)) & state.services)}
        return roots | (state.services - known)

    def _shared_callee(self, down: dict[str, int], other: str) -> int | None:
        """Fewest hops from both services to a callee they share (a common dependency is a common
        cause: two callers of a slow database are one incident), or None."""
        theirs = self._distances(other)[1]
        common = [down[c] + theirs[c] for c in down.keys() & theirs.keys()]
        return min(common) if common else None

    @staticmethod
    def _rebuilt(alert: Alert, state: _State) -> set[str]:
        """The alert's service when it runs another build than the incident saw for it: after a
        deploy the same name is a different program, and its alerts a candidate new cause."""
        version = alert.labels.get("service.version")
        seen = state.versions.get(alert.service)
        return {alert.service} if version and seen and version != seen else set()

    def _distances(self, service: str) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Hops from ``service`` to its callers (up), its callees (down) and any service
        (undirected); one BFS each per service, cached (the topology is immutable)."""
        cached = self._hop_cache.get(service)
        if cached is not None:
            return cached
        topology = self.topology
        known = topology is not None and service in topology.services

        def bfs(step: Callable[[str], Iterable[str]]) -> dict[str, int]:
            dist: dict[str, int] = {service: 0} if known else {}
            queue = list(dist)
            for node in queue:
                for nxt in step(node):
                    if nxt not in dist:
                        dist[nxt] = dist[node] + 1
                        queue.append(nxt)
            dist.pop(service, None)
            return dist

        assert topology is not None
        found = (
            bfs(topology.callers),
            bfs(topology.callees),
            bfs(lambda n: (*topology.callees(n), *topology.callers(n))),
        )
        self._hop_cache[service] = found
        return found

    def _time(self, alert: Alert, state: _State) -> float:
        minutes = max(0.0, (alert.starts_at - state.started_at).total_seconds() / 60.0)
        half_life = self.config.time_half_life.total_seconds() / 60.0
        return float(0.5 ** (minutes / half_life)) if half_life > 0 else 0.0

    def _change(self, alert: Alert, state: _State) -> float:
        """1 when the alert runs a build its service got recently (a deploy) and the incident
        already holds alerts of that build: both are effects of the same change."""
        version = alert.labels.get("service.version")
        deploy = self._deploys.get(alert.service)
        if not version or deploy is None or deploy[1] != version:
            return 0.0
        recent = alert.starts_at - deploy[2] <= self.config.window * 4
        return 1.0 if recent and state.versions.get(alert.service) == version else 0.0

    def _observe_version(self, alert: Alert) -> None:
        """Remember each service's build; a new one is a deploy ``(old, new, first seen)``."""
        version = alert.labels.get("service.version")
        if not version or not alert.service:
            return
        current = self._builds.get(alert.service)
        if current is not None and current != version:
            self._deploys[alert.service] = (current, version, alert.starts_at)
        self._builds[alert.service] = version

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
