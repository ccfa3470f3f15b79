"""The persisted form of a :class:`~correlate.grouping.Grouper`: versioned JSON, never pickle.

A long-running correlator saves its working set (open and recently resolved incidents, the alerts
and decisions in them, the dedup index) after every batch and resumes from it after a restart, so a
restart neither re-pages nor forgets what was grouped. Floats are kept exact here; rounding is for
display (``digits``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from correlate.grouping import CandidateScore, Factors, GroupDecision, Grouper, GroupingConfig, _State
from correlate.topology import Topology
from warroom.alert_json import alert_from_json, alert_to_json, time_from_text, time_text
from warroom.errors import InputError

__all__ = ["STATE_VERSION", "decision_from_json", "decision_to_json", "grouper_from_json", "grouper_to_json"]

STATE_VERSION = 1

_FACTORS = ("topology", "resources", "text", "time", "change")


def _num(value: float, digits: int | None) -> float:
    return float(value) if digits is None else round(float(value), digits)


def _time(value: str | None) -> datetime | None:
    return None if value is None else time_from_text(value)


def decision_to_json(d: GroupDecision, digits: int | None = None) -> dict[str, Any]:
    """One decision ("why grouped here") as JSON; ``digits`` rounds the scores for display."""
    out: dict[str, Any] = {
        "fingerprint": d.fingerprint,
        "starts_at": time_text(d.starts_at),
        "incident_id": d.incident_id,
        "joined": d.joined,
        "duplicate": d.duplicate,
        "reopened": d.reopened,
        "reason": d.reason,
        "candidates": [
            {
                "incident_id": c.incident_id,
                "score": _num(c.score, digits),
                "factors": {name: _num(getattr(c.factors, name), digits) for name in _FACTORS},
            }
            for c in d.candidates
        ],
    }
    if d.at is not None:
        out["at"] = time_text(d.at)
    if d.actor:
        out["actor"] = d.actor
    return out


def decision_from_json(data: dict[str, Any]) -> GroupDecision:
    starts_at = _time(data["starts_at"])
    assert starts_at is not None
    return GroupDecision(
        fingerprint=data["fingerprint"],
        starts_at=starts_at,
        incident_id=data["incident_id"],
        joined=bool(data["joined"]),
        reason=data["reason"],
        candidates=tuple(
            CandidateScore(c["incident_id"], Factors(**c["factors"]), float(c["score"]))
            for c in data.get("candidates", [])
        ),
        duplicate=bool(data.get("duplicate", False)),
        reopened=bool(data.get("reopened", False)),
        at=_time(data.get("at")),
        actor=data.get("actor", ""),
    )


def _state_to_json(s: _State) -> dict[str, Any]:
    return {
        "id": s.id,
        "title": s.title,
        "started_at": time_text(s.started_at),
        "last_alert_at": time_text(s.last_alert_at),
        "last_growth_at": time_text(s.last_growth_at),
        "last_fire_at": time_text(s.last_fire_at),
        "alerts": [alert_to_json(a) for a in s.alerts.values()],
        "occurrences": s.occurrences,
        "texts": list(s.texts),
        "decisions": [decision_to_json(d) for d in s.decisions],
        "resolved_at": time_text(s.resolved_at) if s.resolved_at else None,
        "acknowledged_by": s.acknowledged_by,
        "flapping": sorted(s.flapping),
        "reopen_count": s.reopen_count,
    }


def _state_from_json(data: dict[str, Any]) -> _State:
    alerts = [alert_from_json(a, i) for i, a in enumerate(data["alerts"], start=1)]
    state = _State(alerts[0])
    for alert in alerts:
        state.absorb(alert)
    state.id = data["id"]
    state.title = data["title"]
    state.started_at = _time(data["started_at"]) or state.started_at
    state.last_alert_at = _time(data["last_alert_at"]) or state.last_alert_at
    state.last_growth_at = _time(data["last_growth_at"]) or state.last_growth_at
    state.last_fire_at = _time(data["last_fire_at"]) or state.last_fire_at
    state.occurrences = int(data["occurrences"])
    state.texts = list(data["texts"])
    state.decisions = [decision_from_json(d) for d in data["decisions"]]
    state.resolved_at = _time(data.get("resolved_at"))
    state.acknowledged_by = data.get("acknowledged_by", "")
    state.flapping = set(data.get("flapping", []))
    state.reopen_count = int(data.get("reopen_count", 0))
    return state


def grouper_to_json(grouper: Grouper) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "incidents": [_state_to_json(s) for s in grouper._incidents.values()],
        "seen": [[fp, time_text(at), owner] for (fp, at), owner in grouper._seen.items()],
        "owner": dict(grouper._owner),
        "builds": dict(sorted(grouper._builds.items())),
        "deploys": {s: [old, new, time_text(at)] for s, (old, new, at) in sorted(grouper._deploys.items())},
    }


def grouper_from_json(
    data: dict[str, Any], topology: Topology | None = None, config: GroupingConfig | None = None
) -> Grouper:
    """Rebuild a Grouper saved by :func:`grouper_to_json` (InputError on a foreign version)."""
    if data.get("version") != STATE_VERSION:
        raise InputError(
            f"grouping state version {data.get('version')!r} is not {STATE_VERSION}", reason="bad_state"
        )
    grouper = Grouper(topology, config)
    for item in data["incidents"]:
        state = _state_from_json(item)
        grouper._incidents[state.id] = state
    for fp, at, owner in data["seen"]:
        when = _time(at)
        assert when is not None
        grouper._seen[(fp, when)] = owner
    grouper._owner = dict(data["owner"])
    grouper._builds = dict(data.get("builds", {}))
    for service, (old, new, at) in data.get("deploys", {}).items():
        when = _time(at)
        assert when is not None
        grouper._deploys[service] = (old, new, when)
    return grouper
