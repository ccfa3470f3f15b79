"""``/api/v1/incidents``: read incidents (viewer) and change them (responder).

Changes go through the correlator — the object ``warroom incidents ack …`` uses — so each one runs
in the incident store's locked transaction, appends to the audit log with the token's user as the
actor, and queues its notices in the same transaction; the dispatcher of ``warroom serve`` delivers
them (PagerDuty gets the acknowledge on the same dedup key as the page).

Every path id is looked up in the store first: an unknown one is 404 before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.api.deps import MAX_PAGE, Ctx, Responder, Viewer, parse_since
from app.api.shapes import audit_json, change_json
from correlate.lifecycle import Change
from correlate.service import Correlator
from warroom import audit
from warroom.errors import InputError
from warroom.incident import Incident
from warroom.model import Severity

__all__ = ["MergeRequest", "SplitRequest", "router"]

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])

SCAN = 10_000
"""Newest incidents a list filtered by service, severity or since looks through (the store filters
only by status)."""

IncidentStatus = Literal["open", "acknowledged", "resolved"]
IncidentRef = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class MergeRequest(BaseModel):
    """Fold ``sources`` into the incident of the path; they resolve as "merged into"."""

    model_config = ConfigDict(extra="forbid")
    sources: list[IncidentRef] = Field(min_length=1, max_length=100)


class SplitRequest(BaseModel):
    """Move the alerts ``fingerprints`` of the incident of the path into a new incident."""

    model_config = ConfigDict(extra="forbid")
    fingerprints: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] = Field(
        min_length=1, max_length=1000
    )


@router.get("")
def list_incidents(
    ctx: Ctx,
    _user: Viewer,
    status: IncidentStatus | None = None,
    service: Annotated[str | None, Query(max_length=255, description="Incidents touching it.")] = None,
    severity: Severity | None = None,
    since: Annotated[
        str | None,
        Query(max_length=64, description="Active since: 24h, 7d, now-2h or ISO-8601 (open ones count)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """Incidents, newest first (merged-away ones are left out: they live on in their target)."""
    if service is None and severity is None and since is None:
        chosen = ctx.incidents.incidents(status, limit)
    else:
        start = parse_since(since, ctx.clock()) if since is not None else None

        def wanted(i: Incident) -> bool:
            return (
                (service is None or service in i.services)
                and (severity is None or i.severity == severity.value)
                and (
                    start is None or i.resolved_at is None or i.resolved_at >= start or i.started_at >= start
                )
            )

        chosen = [i for i in ctx.incidents.incidents(status, SCAN) if wanted(i)][:limit]
    return {"incidents": [i.to_json() for i in chosen], "count": len(chosen)}


@router.get("/{incident_id}")
def incident_detail(incident_id: str, ctx: Ctx, _user: Viewer) -> dict[str, Any]:
    """One incident with its root causes, lifecycle events, audit entries, notification attempts and
    remediation proposals."""
    record = ctx.incidents.get(incident_id)
    notifier = ctx.correlator.notifier
    attempts = notifier.outbox.attempts(incident_id) if notifier is not None else []
    return {
        **record.to_json(),
        "events": ctx.incidents.events(incident_id),
        "audit": [audit_json(e) for e in audit.entries(ctx.state, subject=incident_id)],
        "notifications": [a.to_json() for a in attempts],
        "remediations": [p.to_json() for p in ctx.approvals().list(incident=incident_id)],
    }


@router.get("/{incident_id}/explain")
def explain_incident(incident_id: str, ctx: Ctx, _user: Viewer) -> dict[str, Any]:
    """Why each alert was grouped here: every grouping decision with its per-factor scores."""
    return {"incident": incident_id, "decisions": ctx.incidents.explain(incident_id)}


def _command(ctx: Ctx, incident_id: str, run: Callable[[Correlator], list[Change]]) -> dict[str, Any]:
    ctx.incidents.get(incident_id)  # 404 for an unknown id, before the working set is loaded
    changes = run(ctx.correlator)
    return {
        "incident": ctx.incidents.get(incident_id).to_json(),
        "changes": [change_json(c) for c in changes],
    }


@router.post("/{incident_id}/ack")
def acknowledge_incident(incident_id: str, ctx: Ctx, user: Responder) -> dict[str, Any]:
    """Acknowledge (PagerDuty gets an acknowledge for the same dedup key); 409 once resolved."""
    return _command(ctx, incident_id, lambda c: c.acknowledge(incident_id, user.name))


@router.post("/{incident_id}/resolve")
def resolve_incident(incident_id: str, ctx: Ctx, user: Responder) -> dict[str, Any]:
    """Resolve by hand; 409 when it is resolved already."""
    return _command(ctx, incident_id, lambda c: c.resolve(incident_id, user.name))


@router.post("/{incident_id}/merge")
def merge_incidents(incident_id: str, body: MergeRequest, ctx: Ctx, user: Responder) -> dict[str, Any]:
    """Merge ``sources`` into this incident; an unknown source is a 422 naming it."""
    ctx.incidents.get(incident_id)
    for i, source in enumerate(body.sources):
        try:
            ctx.incidents.get(source)
        except InputError:
            raise InputError(f"sources[{i}]: no incident {source!r}", reason="unknown_reference") from None
    return _command(ctx, incident_id, lambda c: c.merge(incident_id, list(body.sources), user.name))


@router.post("/{incident_id}/split")
def split_incident(incident_id: str, body: SplitRequest, ctx: Ctx, user: Responder) -> dict[str, Any]:
    """Move ``fingerprints`` into a new incident (announced); one not in the incident is a 422."""
    return _command(ctx, incident_id, lambda c: c.split(incident_id, list(body.fingerprints), user.name))
