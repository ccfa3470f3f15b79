"""Incident lifecycle on top of grouping, and which changes deserve a message to the on-call.

:class:`IncidentBook` owns a :class:`~correlate.grouping.Grouper` and adds what a pager needs:

* **flapping** — an alert that fires ``flap_threshold`` times within ``flap_window`` is marked
  flapping on its incident: its re-fires join silently (no new page) and the incident is held open
  until the flapping alerts have been quiet for a whole ``flap_window``;
* **resolve** — an incident resolves when all its member alerts have ended and stayed ended for
  ``quiet`` (data time, so replays are deterministic); a member firing again within the grouping's
  ``reopen_window`` reopens it (see the grouper's *affinity* stage);
* **people** — acknowledge, manual resolve, merge and split, each recorded with its actor;
* **significance** — every change is returned as a :class:`Change`; ``notify`` is true only for
  what the on-call must hear: opened, reopened (unless flapping), acknowledged, resolved, and an
  update when the severity rose, a new service joined or the top root cause changed (the reasons
  say which). Everything else is recorded, not sent.

Per alert the book runs :data:`STAGES` in order. State is versioned JSON (:meth:`to_json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from correlate.grouping import GroupDecision, Grouper, GroupingConfig, Incident
from correlate.grouping_state import grouper_from_json, grouper_to_json
from correlate.rootcause import Candidate, rank
from correlate.topology import Topology
from warroom.alert_json import time_from_text, time_text
from warroom.errors import InputError
from warroom.model import Alert, Severity

__all__ = ["STAGES", "Change", "ChangeKind", "IncidentBook", "LifecycleConfig"]

STAGES: tuple[str, ...] = ("group", "flap", "rank", "significance")
"""The order :meth:`IncidentBook.ingest` runs its stages in."""

STATE_VERSION = 1
ROOT_CAUSES = 3
_RERANK_EVERY = 10  # new member series between re-rankings when services and severity stay put

ChangeKind = Literal["opened", "updated", "acknowledged", "resolved", "reopened", "merged", "split"]


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    quiet: timedelta = timedelta(minutes=10)
    flap_window: timedelta = timedelta(minutes=30)
    flap_threshold: int = 3
    keep: timedelta = timedelta(hours=6)  # resolved incidents stay in memory this long (for reopen)

    def __post_init__(self) -> None:
        if self.flap_threshold < 2:
            raise ValueError("flap_threshold must be at least 2")


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one incident; ``notify`` says whether the on-call should hear about it."""

    kind: ChangeKind
    incident: Incident
    at: datetime
    notify: bool
    reasons: tuple[str, ...]
    root_causes: tuple[Candidate, ...] = ()
    actor: str = ""
    decision: GroupDecision | None = None
    alert_count: int = 0


@dataclass(slots=True)
class _Sent:
    """What the on-call was last told about an incident (to judge significance)."""

    severity: Severity
    services: frozenset[str]
    root_cause: str | None
    open: bool = True


@dataclass(slots=True)
class _Clock:
    latest: datetime | None = None

    def see(self, at: datetime) -> None:
        self.latest = at if self.latest is None else max(self.latest, at)


@dataclass
class IncidentBook:
    """Alerts in, incident changes out; feed alerts in time order and call :meth:`tick` as time passes."""

    topology: Topology | None = None
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    config: LifecycleConfig = field(default_factory=LifecycleConfig)

    def __post_init__(self) -> None:
        self.grouper = Grouper(self.topology, self.grouping)
        self._fires: dict[str, list[datetime]] = {}  # fingerprint → recent occurrence starts
        self._sent: dict[str, _Sent] = {}
        self._clock = _Clock()
        self._pruned: datetime | None = None  # when old fire times were last dropped
        self._causes: dict[str, tuple[Any, tuple[Candidate, ...]]] = {}  # incident → (key, ranking)

    # --- alerts ---------------------------------------------------------------------------------

    def ingest(self, alert: Alert) -> list[Change]:
        """Group one alert (stages :data:`STAGES`) and return what changed."""
        decision = self.grouper.add(alert)  # group
        at = alert.updated_at or alert.ends_at or alert.starts_at if decision.duplicate else alert.starts_at
        self._clock.see(at)
        incident_id = decision.incident_id
        changes = [self._merged_away(gone, incident_id, at) for gone in decision.merged]
        flapping, split_off = self._flap(alert, decision)
        incident = self.grouper.incident(incident_id)
        causes = self._ranked(incident)
        reasons: list[str] = [decision.reason]
        if flapping:
            reasons.append(flapping)
        kind: ChangeKind
        if not decision.joined:
            kind, notify = "opened", True
        elif decision.reopened:
            kind = "reopened"
            notify = alert.fingerprint not in incident.flapping
            if not notify:
                reasons.append("not paged again: the alert is flapping")
        else:
            kind = "updated"
            significant = self._significance(incident, causes)
            notify = bool(significant)
            reasons.extend(significant)
        if notify:
            self._remember(incident, causes)
        changes.append(self._change(kind, incident, at, notify, reasons, causes, decision=decision))
        if split_off is not None:
            note = f"flapping alert {alert.title!r} split off {incident_id}: held open, not paged"
            changes.append(self._change("opened", self.grouper.incident(split_off), at, False, [note]))
        return changes

    def _ranked(self, incident: Incident) -> tuple[Candidate, ...]:
        """Root causes of ``incident``, re-ranked when its services or severity changed: another
        alert of a service already in it rarely moves the ranking, and ranking a large incident
        on every alert would cost more than the decision itself."""
        key = (incident.services, incident.severity, len(incident.fingerprints) // _RERANK_EVERY)
        cached = self._causes.get(incident.id)
        if cached is None or cached[0] != key:
            cached = (key, tuple(self.root_causes(incident.id)))
            self._causes[incident.id] = cached
        return cached[1]

    def _merged_away(self, gone_id: str, into: str, at: datetime) -> Change:
        """An incident the grouper merged into ``into``: reported resolved ("merged into …")."""
        gone = self.grouper.take_merged(gone_id)
        assert gone is not None, gone_id
        notify = self._sent.pop(gone_id, None) is not None
        return Change("resolved", gone, at, notify, (f"merged into {into} by warroom",), (), "warroom")

    def _flap(self, alert: Alert, decision: GroupDecision) -> tuple[str, str | None]:
        """Mark a flapping alert; one that joined another fault's incident is split into its own
        (a flapper explains nothing else). Returns the note and the split-off incident, if any."""
        if decision.duplicate:
            return "", None
        horizon = alert.starts_at - self.config.flap_window
        fires = [t for t in self._fires.get(alert.fingerprint, []) if t >= horizon]
        fires.append(alert.starts_at)
        self._fires[alert.fingerprint] = fires
        incident = self.grouper.incident(decision.incident_id)
        if len(fires) < self.config.flap_threshold or alert.fingerprint in incident.flapping:
            return "", None
        self.grouper.mark_flapping(decision.incident_id, alert.fingerprint, True)
        minutes = self.config.flap_window.total_seconds() / 60
        note = f"alert {alert.title!r} fired {len(fires)} times in {minutes:.0f} min: flapping, held open"
        if len(incident.fingerprints) > 1:
            fresh = self.grouper.split(decision.incident_id, [alert.fingerprint], "warroom", alert.starts_at)
            return f"{note}; split into its own incident {fresh.id}", fresh.id
        return note, None

    def _significance(self, incident: Incident, causes: tuple[Candidate, ...]) -> list[str]:
        sent = self._sent.get(incident.id)
        if sent is None:
            return []
        found = []
        if incident.severity.rank > sent.severity.rank:
            found.append(f"severity rose from {sent.severity.value} to {incident.severity.value}")
        new = sorted(set(incident.services) - sent.services)
        if new:
            found.append(f"new service(s): {', '.join(new)}")
        top = causes[0].service if causes else None
        if top != sent.root_cause and top is not None:
            found.append(f"root cause changed from {sent.root_cause or 'none'} to {top}")
        return found

    def _remember(self, incident: Incident, causes: tuple[Candidate, ...]) -> None:
        self._sent[incident.id] = _Sent(
            incident.severity,
            frozenset(incident.services),
            causes[0].service if causes else None,
            incident.status != "resolved",
        )

    def _change(
        self,
        kind: ChangeKind,
        incident: Incident,
        at: datetime,
        notify: bool,
        reasons: list[str],
        causes: tuple[Candidate, ...] | None = None,
        *,
        actor: str = "",
        decision: GroupDecision | None = None,
    ) -> Change:
        if causes is None:
            causes = tuple(self.root_causes(incident.id)) if self.grouper.has(incident.id) else ()
        count = self.grouper.occurrences(incident.id) if self.grouper.has(incident.id) else 0
        return Change(kind, incident, at, notify, tuple(reasons), causes, actor, decision, count)

    # --- time -----------------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[Change]:
        """Resolve incidents whose alerts have all been quiet long enough; forget old resolved ones."""
        self._clock.see(now)
        changes = []
        for incident_id in self.grouper.ids():
            resolved_at = self.grouper.resolved_at(incident_id)
            if resolved_at is not None:
                if now - resolved_at > self._retention():
                    self.grouper.forget(incident_id)
                    self._sent.pop(incident_id, None)
                    self._causes.pop(incident_id, None)
                continue
            if not self.grouper.all_resolved(incident_id):
                continue
            incident = self.grouper.incident(incident_id)
            due = self._resolve_due(incident)
            if due is None or now < due:
                continue
            resolved = self.grouper.resolve(incident.id, due)
            flap = " (flapping alerts quiet for the flap window)" if incident.flapping else ""
            reason = f"all {len(incident.fingerprints)} alert(s) resolved and quiet{flap}"
            notify = incident.id in self._sent
            if notify:
                self._sent[incident.id].open = False
            changes.append(self._change("resolved", resolved, due, notify, [reason]))
        if self._pruned is None or now - self._pruned >= self.config.flap_window / 4:
            horizon = now - self.config.flap_window
            self._fires = {
                fp: kept for fp, times in self._fires.items() if (kept := [t for t in times if t >= horizon])
            }
            self._pruned = now
        return changes

    def _resolve_due(self, incident: Incident) -> datetime | None:
        if not self.grouper.all_resolved(incident.id):
            return None
        alerts = self.grouper.alerts(incident.id)
        ends = [a.ends_at for a in alerts if a.ends_at is not None]
        due = max(ends) + self.config.quiet
        flapping = [a.ends_at for a in alerts if a.fingerprint in incident.flapping and a.ends_at]
        if flapping:
            due = max(due, max(flapping) + max(self.config.quiet, self.config.flap_window))
        return due

    def _retention(self) -> timedelta:
        return max(self.config.keep, self.grouping.reopen_window)

    # --- people ---------------------------------------------------------------------------------

    def _get(self, incident_id: str) -> Incident:
        try:
            return self.grouper.incident(incident_id)
        except KeyError:
            raise InputError(
                f"no incident {incident_id!r} in the working set", reason="unknown_incident"
            ) from None

    def acknowledge(self, incident_id: str, actor: str, at: datetime) -> Change:
        incident = self._get(incident_id)
        if incident.status == "resolved":
            raise InputError(f"incident {incident_id} is resolved; nothing to acknowledge", reason="conflict")
        acked = self.grouper.acknowledge(incident_id, actor)
        return self._change("acknowledged", acked, at, True, [f"acknowledged by {actor}"], actor=actor)

    def resolve(self, incident_id: str, actor: str, at: datetime) -> Change:
        incident = self._get(incident_id)
        if incident.status == "resolved":
            raise InputError(f"incident {incident_id} is already resolved", reason="conflict")
        resolved = self.grouper.resolve(incident_id, at)
        if incident_id in self._sent:
            self._sent[incident_id].open = False
        return self._change("resolved", resolved, at, True, [f"resolved by {actor}"], actor=actor)

    def merge(self, target_id: str, source_ids: list[str], actor: str, at: datetime) -> list[Change]:
        """Fold ``source_ids`` into ``target_id``: sources resolve ("merged into …"), the target updates."""
        self._get(target_id)
        sources = [self._get(s) for s in dict.fromkeys(source_ids) if s != target_id]
        if not sources:
            raise InputError("merge needs at least one other incident", reason="bad_merge")
        changes = []
        for source in sources:
            gone = Incident(**{**_fields(source), "status": "resolved", "resolved_at": at})
            note = f"merged into {target_id} by {actor}"
            changes.append(Change("resolved", gone, at, source.id in self._sent, (note,), (), actor))
            self.grouper.merge(target_id, source.id, actor, at)
            self._sent.pop(source.id, None)
        merged = self.grouper.incident(target_id)
        reason = f"merged {', '.join(s.id for s in sources)} by {actor}"
        causes = tuple(self.root_causes(target_id))
        self._remember(merged, causes)
        changes.append(self._change("merged", merged, at, True, [reason], causes, actor=actor))
        return changes

    def split(self, incident_id: str, fingerprints: list[str], actor: str, at: datetime) -> list[Change]:
        """Move alerts into a new incident, which is announced; the rest updates."""
        self._get(incident_id)
        try:
            fresh = self.grouper.split(incident_id, fingerprints, actor, at)
        except (KeyError, ValueError) as exc:
            raise InputError(str(exc).strip("'\""), reason="bad_split") from None
        rest = self.grouper.incident(incident_id)
        changes = []
        for incident, kind in ((rest, "split"), (fresh, "opened")):
            causes = tuple(self.root_causes(incident.id))
            self._remember(incident, causes)
            note = f"split by {actor}: {', '.join(fingerprints)} moved to {fresh.id}"
            changes.append(self._change(kind, incident, at, True, [note], causes, actor=actor))  # type: ignore[arg-type]
        return changes

    # --- queries --------------------------------------------------------------------------------

    def root_causes(self, incident_id: str, k: int = ROOT_CAUSES) -> list[Candidate]:
        return rank(self.grouper.alerts(incident_id), self.topology, k)

    def incidents(self) -> list[Incident]:
        return self.grouper.incidents()

    @property
    def clock(self) -> datetime | None:
        """The latest time the book has seen (alert or tick)."""
        return self._clock.latest

    # --- state ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "grouper": grouper_to_json(self.grouper),
            "fires": {fp: [time_text(t) for t in times] for fp, times in sorted(self._fires.items())},
            "sent": {
                i: {
                    "severity": s.severity.value,
                    "services": sorted(s.services),
                    "root_cause": s.root_cause,
                    "open": s.open,
                }
                for i, s in sorted(self._sent.items())
            },
            "clock": time_text(self._clock.latest) if self._clock.latest else None,
        }

    @classmethod
    def from_json(
        cls,
        data: dict[str, Any],
        topology: Topology | None = None,
        grouping: GroupingConfig | None = None,
        config: LifecycleConfig | None = None,
    ) -> IncidentBook:
        if data.get("version") != STATE_VERSION:
            raise InputError(
                f"incident book state version {data.get('version')!r} is not {STATE_VERSION}",
                reason="bad_state",
            )
        book = cls(topology, grouping or GroupingConfig(), config or LifecycleConfig())
        book.grouper = grouper_from_json(data["grouper"], topology, book.grouping)
        book._fires = {fp: [time_from_text(t) for t in times] for fp, times in data["fires"].items()}
        book._sent = {
            i: _Sent(Severity(s["severity"]), frozenset(s["services"]), s["root_cause"], bool(s["open"]))
            for i, s in data["sent"].items()
        }
        book._clock = _Clock(time_from_text(data["clock"]) if data.get("clock") else None)
        return book


def _fields(incident: Incident) -> dict[str, Any]:
    return {name: getattr(incident, name) for name in Incident.__dataclass_fields__}
