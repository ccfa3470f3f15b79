"""``/api/v1/remediations`` and ``/api/v1/catalog``: the approval workflow over HTTP.

Every change goes through :meth:`ApiContext.approvals` — the :class:`~summarize.approval.Approvals`
the CLI uses, with the roles of the config file's ``[roles]`` plus the API users — so the
workflow's own rules hold here too and come back in the error shape: approving your own proposal
or voting twice is 403 (``self_approval``, ``already_approved``), acting on an expired, rejected or
executed proposal is 409. The route's role comes first: proposing and executing (what approvers
approved: the on-call runs it) need a responder, approving and rejecting an approver.

Reads do not change anything: an overdue proposal is listed with ``"overdue": true`` rather than
being expired by the GET (the next change to it, or ``warroom remediation list``, records that).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.api.deps import MAX_PAGE, Approver, Ctx, Responder, Viewer
from app.api.shapes import audit_json
from summarize.approval import Proposal, State
from summarize.model import Remediation
from warroom.errors import InputError

__all__ = ["DecisionRequest", "ProposeRequest", "RejectRequest", "router"]

router = APIRouter(prefix="/api/v1", tags=["remediations"])

ProposalState = Literal[
    "proposed", "approved", "rejected", "expired", "queued", "executing", "succeeded", "failed"
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=2000)]


class ProposeRequest(BaseModel):
    """A person's proposal: catalog ``action`` with ``params`` for ``incident``, and why."""

    model_config = ConfigDict(extra="forbid")
    incident: Name
    action: Name
    params: dict[Name, str | int | float | bool] = Field(default_factory=dict, max_length=50)
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    evidence: list[Annotated[str, StringConstraints(min_length=1, max_length=32)]] = Field(
        default_factory=list, max_length=50
    )


class DecisionRequest(BaseModel):
    """An approval's optional reason (recorded in the audit log)."""

    model_config = ConfigDict(extra="forbid")
    reason: Text = ""


class RejectRequest(BaseModel):
    """A rejection's reason (required: the author should learn why)."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


def _view(p: Proposal, now: datetime) -> dict[str, Any]:
    overdue = p.state in (State.PROPOSED, State.APPROVED) and now >= p.expires_at
    return {**p.to_json(), "overdue": overdue}


@router.get("/remediations", tags=["remediations"])
def list_remediations(
    ctx: Ctx,
    _user: Viewer,
    state: ProposalState | None = None,
    incident: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
) -> dict[str, Any]:
    """Proposals, newest first, optionally of one state and/or one incident."""
    now = ctx.clock()
    found = ctx.approvals().list(state=state, incident=incident, limit=limit)
    return {"remediations": [_view(p, now) for p in found], "count": len(found)}


@router.get("/remediations/{proposal_id}")
def remediation_detail(proposal_id: str, ctx: Ctx, _user: Viewer) -> dict[str, Any]:
    """One proposal: the exact plan approvers see, its approvals, result and audit trail."""
    approvals = ctx.approvals()
    proposal = approvals.get(proposal_id)
    return {
        **_view(proposal, ctx.clock()),
        "audit": [audit_json(e) for e in approvals.trail(proposal_id)],
    }


@router.post("/remediations", status_code=201)
def propose_remediation(body: ProposeRequest, ctx: Ctx, user: Responder) -> dict[str, Any]:
    """Propose a catalog action by hand (source ``manual``, author the caller); 422 when the incident
    is unknown or the catalog refuses the action or its parameters."""
    try:
        ctx.incidents.get(body.incident)
    except InputError:
        raise InputError(f"incident: no incident {body.incident!r}", reason="unknown_reference") from None
    remedy = Remediation(body.action, dict(body.params), body.reason, tuple(body.evidence), source="manual")
    proposal = ctx.approvals().propose(body.incident, remedy, user.name, source="manual")
    return _view(proposal, ctx.clock())


@router.post("/remediations/{proposal_id}/approve")
def approve_remediation(
    proposal_id: str,
    ctx: Ctx,
    user: Approver,
    body: Annotated[DecisionRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Approve (not your own proposal; a high-risk one needs a second approver)."""
    proposal = ctx.approvals().approve(proposal_id, user.name, (body or DecisionRequest()).reason)
    return _view(proposal, ctx.clock())


@router.post("/remediations/{proposal_id}/reject")
def reject_remediation(proposal_id: str, body: RejectRequest, ctx: Ctx, user: Approver) -> dict[str, Any]:
    """Reject (before it runs); the reason is required."""
    return _view(ctx.approvals().reject(proposal_id, user.name, body.reason), ctx.clock())


@router.post("/remediations/{proposal_id}/execute")
def execute_remediation(
    proposal_id: str,
    ctx: Ctx,
    user: Responder,
    queue: Annotated[
        bool, Query(description="Hand it to the executor service instead of running it now.")
    ] = False,
) -> dict[str, Any]:
    """Run an approved proposal exactly once. 200 with state ``succeeded`` or ``failed`` (the action
    itself failing is a result, not an API error); 409 when it is not approved or already ran.

    With ``queue=true`` it is checked now and handed to the executor service (``warroom up``'s
    ``executor``, one leader across replicas), which runs it in the caller's name: 200 with state
    ``queued``; poll the proposal for the outcome. Long actions should not hold a request open."""
    approvals = ctx.approvals()
    if not queue:
        return _view(approvals.execute(proposal_id, user.name), ctx.clock())
    proposal = approvals.queue(proposal_id, user.name)
    if ctx.on_queued is not None:
        ctx.on_queued()
    return _view(proposal, ctx.clock())


@router.get("/catalog", tags=["remediations"])
def catalog(ctx: Ctx, _user: Viewer) -> dict[str, Any]:
    """The actions that may be proposed: parameters, risk, prechecks and executor."""
    return {"actions": ctx.catalog.to_json()}
