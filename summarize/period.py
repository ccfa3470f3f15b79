"""The periodic SRE digest (``--since 24h``): every incident of a period, how fast it was handled,
and which alerts made the most noise.

Built from plain inputs — the incidents, their lifecycle events (``store.events``: dicts with
``at``, ``recorded_at``, ``kind``, ``actor``, ``notify``, ``reasons``) and the alerts of the
period — so it needs neither ClickHouse nor the state store, and a test can hand-make all three.
:func:`summarize.render.render_period` turns the result into Markdown, HTML or Slack.

Conventions:

* **TTA** (time to acknowledge) is the first ``acknowledged`` event's ``at`` minus the incident's
  ``started_at``; **TTR** (time to resolve) is ``resolved_at`` minus ``started_at`` for an
  incident whose status is ``resolved``. Both are clamped at zero: an event recorded a little
  before the start it belongs to (clock skew between hosts) is "immediately", not negative.
* An incident merged into another has no TTR: its "resolution" was the merge, and its time goes on
  in the incident it joined. Its TTA counts, because someone did acknowledge it.
* MTTA/MTTR are the **median** and **p90** (linear interpolation between ranks, as numpy's
  default) over the incidents that have the figure; an incident still open does not count as
  zero or as the period's length, it is simply not in the sample (the ``count`` says how many are).
* Alerts with the same ``fingerprint`` and ``starts_at`` are versions of one firing (a re-send, a
  resolve): they count once. Firing time is clipped to the period, and a firing still open at the
  period's end counts up to the end.
* A **flapping signal** is a fingerprint correlation marked flapping on an incident of the period,
  or one that fired at least ``flap_fires`` times in the period.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from warroom.alert_json import time_from_text
from warroom.incident import Incident
from warroom.model import Alert, Severity

__all__ = [
    "DurationStats",
    "FlappingSignal",
    "IncidentRow",
    "NoisyAlert",
    "PeriodDigest",
    "build_period",
]

_SEVERITY_ORDER = ("critical", "warning", "info")
_STATUS_ORDER = ("open", "acknowledged", "resolved")


@dataclass(frozen=True, slots=True)
class DurationStats:
    """Median and p90 of one duration over the ``count`` incidents that have it (None when none)."""

    count: int
    median: timedelta | None
    p90: timedelta | None


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """One incident of the period as the digest lists it."""

    id: str
    title: str
    severity: str
    status: str
    services: tuple[str, ...]
    started_at: datetime
    resolved_at: datetime | None
    tta: timedelta | None
    ttr: timedelta | None
    root_cause: str  # the top-ranked root-cause service, "" when correlation named none
    acknowledged_by: str
    alert_count: int
    reopened: int  # how many times it was reopened after a resolve
    merged_into: str | None


@dataclass(frozen=True, slots=True)
class NoisyAlert:
    """One alert identity (fingerprint) and how much it fired in the period."""

    fingerprint: str
    title: str
    service: str
    severity: str  # the highest severity it fired with
    fires: int
    firing: timedelta


@dataclass(frozen=True, slots=True)
class FlappingSignal:
    """A signal that kept firing and clearing: a candidate for a threshold or hysteresis fix."""

    fingerprint: str
    title: str
    service: str
    fires: int
    incidents: tuple[str, ...]  # incidents on which correlation marked it flapping


@dataclass(frozen=True, slots=True)
class PeriodDigest:
    """The SRE digest of ``[start, end)``: counts, response times, per-incident rows, noise."""

    start: datetime
    end: datetime
    incidents: tuple[IncidentRow, ...]
    by_severity: tuple[tuple[str, int], ...]
    by_status: tuple[tuple[str, int], ...]
    tta: DurationStats
    ttr: DurationStats
    alert_count: int  # distinct firings (fingerprint, starts_at) among the alerts given
    alerts_by_severity: tuple[tuple[str, int], ...]
    noisiest: tuple[NoisyAlert, ...]
    flapping: tuple[FlappingSignal, ...]


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return time_from_text(value)
    return None


def _first(events: Iterable[Mapping[str, Any]], kind: str) -> datetime | None:
    times = [t for e in events if e.get("kind") == kind and (t := _moment(e.get("at"))) is not None]
    return min(times) if times else None


def _quantile(sorted_seconds: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on a sorted sample."""
    position = q * (len(sorted_seconds) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_seconds) - 1)
    fraction = position - below
    return sorted_seconds[below] + (sorted_seconds[above] - sorted_seconds[below]) * fraction


def _stats(durations: Iterable[timedelta | None]) -> DurationStats:
    sample = sorted(d.total_seconds() for d in durations if d is not None)
    if not sample:
        return DurationStats(0, None, None)
    return DurationStats(
        len(sample),
        timedelta(seconds=_quantile(sample, 0.5)),
        timedelta(seconds=_quantile(sample, 0.9)),
    )


def _ordered_counts(counts: Counter[str], order: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """Known keys in their natural order (even at zero, so tables keep their shape), then the rest."""
    known = [(key, counts.get(key, 0)) for key in order]
    rest = sorted((key, n) for key, n in counts.items() if key not in order)
    return tuple(known + rest)


def _row(incident: Incident, events: Sequence[Mapping[str, Any]]) -> IncidentRow:
    acked = _first(events, "acknowledged")
    tta = max(acked - incident.started_at, timedelta(0)) if acked is not None else None
    ttr = None
    if incident.status == "resolved" and incident.resolved_at is not None and not incident.merged_into:
        ttr = max(incident.resolved_at - incident.started_at, timedelta(0))
    causes = incident.root_causes
    return IncidentRow(
        id=incident.id,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        services=tuple(incident.services),
        started_at=incident.started_at,
        resolved_at=incident.resolved_at,
        tta=tta,
        ttr=ttr,
        root_cause=str(causes[0].get("service", "")) if causes else "",
        acknowledged_by=incident.acknowledged_by,
        alert_count=incident.alert_count,
        reopened=sum(1 for e in events if e.get("kind") == "reopened"),
        merged_into=incident.merged_into,
    )


@dataclass
class _Firings:
    """The distinct firings of one fingerprint: ``starts_at`` → ``ends_at`` and → severity."""

    title: str = ""
    service: str = ""
    ends: dict[datetime, datetime | None] = field(default_factory=dict)
    severities: dict[datetime, Severity] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return max(self.severities.values(), key=lambda s: s.rank, default=Severity.INFO)


def _firings(alerts: Iterable[Alert]) -> dict[str, _Firings]:
    """Fingerprint → its distinct firings, versions of one firing folded together.

    Alerts are folded in ``(starts_at, updated_at)`` order so the latest version's title wins; a
    firing is closed when any version of it carries ``ends_at`` (the latest such), and has the
    highest severity any version had.
    """

    def order(alert: Alert) -> tuple[datetime, datetime, str]:
        return (alert.starts_at, alert.updated_at or alert.ends_at or alert.starts_at, alert.fingerprint)

    out: dict[str, _Firings] = {}
    for alert in sorted(alerts, key=order):
        entry = out.setdefault(alert.fingerprint, _Firings())
        entry.title = alert.title or entry.title
        entry.service = alert.service or entry.service
        began = alert.starts_at
        known = entry.severities.get(began)
        if known is None or alert.severity.rank > known.rank:
            entry.severities[began] = alert.severity
        previous = entry.ends.get(began)
        if alert.ends_at is not None and (previous is None or alert.ends_at > previous):
            entry.ends[began] = alert.ends_at
        else:
            entry.ends.setdefault(began, previous)
    return out


def _firing_time(ends: Mapping[datetime, datetime | None], start: datetime, end: datetime) -> timedelta:
    total = timedelta(0)
    for began, ended in ends.items():
        lo, hi = max(began, start), min(ended or end, end)
        if hi > lo:
            total += hi - lo
    return total


def build_period(
    incidents: Iterable[Incident],
    events: Mapping[str, Sequence[Mapping[str, Any]]],
    alerts: Iterable[Alert],
    *,
    start: datetime,
    end: datetime,
    top: int = 10,
    flap_fires: int = 3,
) -> PeriodDigest:
    """The digest of ``[start, end)`` from the caller's selection of incidents and alerts.

    The caller chooses which incidents belong to the period (the store's query); this function
    does not filter them again, so the digest lists exactly what was asked about. ``events`` maps
    an incident id to its lifecycle events (missing ids have none). ``top`` bounds the noisiest
    list; ``flap_fires`` is the fire count from which an alert counts as flapping.
    """
    chosen = sorted(incidents, key=lambda i: (i.started_at, i.id))
    rows = tuple(_row(incident, events.get(incident.id, ())) for incident in chosen)

    firings = _firings(alerts)
    noisy = [
        NoisyAlert(
            fingerprint=fingerprint,
            title=entry.title,
            service=entry.service,
            severity=entry.severity.value,
            fires=len(entry.ends),
            firing=_firing_time(entry.ends, start, end),
        )
        for fingerprint, entry in firings.items()
    ]
    noisy.sort(key=lambda n: (-n.fires, -n.firing.total_seconds(), n.fingerprint))

    marked: dict[str, list[str]] = defaultdict(list)
    for incident in chosen:
        for fingerprint in incident.flapping:
            if incident.id not in marked[fingerprint]:
                marked[fingerprint].append(incident.id)
    by_fingerprint = {n.fingerprint: n for n in noisy}
    flapping = []
    for fingerprint in sorted(set(marked) | {n.fingerprint for n in noisy if n.fires >= flap_fires}):
        seen = by_fingerprint.get(fingerprint)
        flapping.append(
            FlappingSignal(
                fingerprint=fingerprint,
                title=seen.title if seen else "",
                service=seen.service if seen else "",
                fires=seen.fires if seen else 0,
                incidents=tuple(marked.get(fingerprint, ())),
            )
        )
    flapping.sort(key=lambda f: (-f.fires, f.fingerprint))

    alert_severities: Counter[str] = Counter()
    for entry in firings.values():
        alert_severities.update(severity.value for severity in entry.severities.values())

    return PeriodDigest(
        start=start,
        end=end,
        incidents=rows,
        by_severity=_ordered_counts(Counter(r.severity for r in rows), _SEVERITY_ORDER),
        by_status=_ordered_counts(Counter(r.status for r in rows), _STATUS_ORDER),
        tta=_stats(r.tta for r in rows),
        ttr=_stats(r.ttr for r in rows),
        alert_count=sum(n.fires for n in noisy),
        alerts_by_severity=_ordered_counts(alert_severities, _SEVERITY_ORDER),
        noisiest=tuple(noisy[:top]),
        flapping=tuple(flapping),
    )
