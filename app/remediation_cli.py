"""``warroom remediation``: the catalog, and proposals from proposal to execution, on the command line.

Every command acts as ``--actor`` (default: the ``WARROOM_ACTOR`` setting, else the login name);
that name is what the roles in ``[roles]`` are checked against and what the audit log records.
Refusals come out as one line with the error tree's exit code: Forbidden 6 (role, self-approval,
second vote), Conflict 7 (expired, already executed …), bad input 3, configuration 2.

This module does not import :mod:`app.cli` (which registers it), so either may be imported first.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from app.cli_context import ACTOR_OPTION, actor_of, settings_of
from warroom.errors import InputError

if TYPE_CHECKING:  # imported where used: `warroom --help` should not pay for SQLAlchemy and httpx
    from summarize.approval import Approvals, Proposal
    from summarize.catalog import Action, ParamSpec

__all__ = ["STATES", "remediation"]

STATES = ("proposed", "approved", "rejected", "expired", "queued", "executing", "succeeded", "failed")
"""The values of :class:`summarize.approval.State`, spelled out for ``--state`` (a test keeps them equal)."""


def _when(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _approvals(ctx: click.Context) -> Approvals:
    from app import wiring
    from summarize.approval import Approvals

    settings = settings_of(ctx)
    return Approvals.from_settings(wiring.state_db(settings), settings, wiring.catalog(settings))


_ACTOR = ACTOR_OPTION
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group("remediation")
def remediation() -> None:
    """Remediation proposals: catalog, propose, approve (two people for high risk), execute."""


def _line(p: Proposal) -> str:
    params = " ".join(f"{k}={v}" for k, v in p.params.items())
    return (
        f"{p.id}  {p.state.value:<9} {p.risk:<6} {p.incident_id}  {p.action} {params}  "
        f"approvals={len(p.approvals)}/{p.approvals_needed} by={p.author}  {p.created_at:%Y-%m-%d %H:%M}"
    )


@remediation.command("list")
@click.option("--state", type=click.Choice(STATES), default=None)
@click.option("--incident", default=None, help="Only this incident's proposals.")
@_JSON
@_ACTOR
@click.pass_context
def list_cmd(
    ctx: click.Context, state: str | None, incident: str | None, as_json: bool, actor: str | None
) -> None:
    """Proposals, newest first (overdue ones are expired first, so states are current)."""
    approvals = _approvals(ctx)
    approvals.expire_due()
    for p in approvals.list(state=state, incident=incident):
        click.echo(json.dumps(p.to_json()) if as_json else _line(p))


@remediation.command("show")
@click.argument("proposal_id")
@_JSON
@_ACTOR
@click.pass_context
def show_cmd(ctx: click.Context, proposal_id: str, as_json: bool, actor: str | None) -> None:
    """One proposal: the exact plan, prechecks, risk, approvals so far and its audit trail."""
    approvals = _approvals(ctx)
    approvals.expire_due()
    p, trail = approvals.get(proposal_id), approvals.trail(proposal_id)
    if as_json:
        entries = [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "reason": e.reason,
                "before": e.before,
                "after": e.after,
            }
            for e in trail
        ]
        click.echo(json.dumps({**p.to_json(), "audit": entries}))
        return
    click.echo(f"{p.id}  {p.state.value}  risk={p.risk}  incident={p.incident_id}")
    click.echo(f"proposed by {p.author} ({p.source}) at {_when(p.created_at)}")
    click.echo(f"expires at {_when(p.expires_at)}")
    click.echo(f"why: {p.text}")
    if p.evidence:
        click.echo(f"evidence: {', '.join(p.evidence)}")
    click.echo(f"approvals ({len(p.approvals)} of {p.approvals_needed} needed):")
    for a in p.approvals:
        click.echo(f"  {a.actor} at {_when(a.at)}" + (f": {a.reason}" if a.reason else ""))
    if p.state == "rejected":
        click.echo(f"rejected by {p.decided_by}: {p.decision_reason}")
    if p.executed_by:
        click.echo(f"executed by {p.executed_by}")
    if p.result is not None:
        click.echo(f"result: {'ok' if p.result.ok else 'FAILED'} — {p.result.detail}")
        for text in p.result.output.splitlines():
            click.echo(f"  | {text}")
    click.echo("plan:")
    for text in p.plan.splitlines():
        click.echo(f"  {text}")
    click.echo("audit trail:")
    for e in trail:
        before = (e.before or {}).get("state", "-")
        after = (e.after or {}).get("state", "-")
        why = f": {e.reason}" if e.reason else ""
        click.echo(f"  #{e.seq} {_when(e.at)} {e.actor} {e.action} ({before} → {after}){why}")


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"-p {pair!r}: expected key=value")
        if key in out:
            raise InputError(f"-p {key}: given twice")
        out[key] = value
    return out


@remediation.command("propose")
@click.argument("incident_id")
@click.argument("action")
@click.option("-p", "--param", "pairs", multiple=True, metavar="KEY=VALUE", help="A parameter (repeat).")
@click.option("--reason", required=True, help="Why this fixes the incident (shown to approvers).")
@click.option("-e", "--evidence", multiple=True, help="Evidence id backing the proposal (repeat).")
@_JSON
@_ACTOR
@click.pass_context
def propose_cmd(
    ctx: click.Context,
    incident_id: str,
    action: str,
    pairs: tuple[str, ...],
    reason: str,
    evidence: tuple[str, ...],
    as_json: bool,
    actor: str | None,
) -> None:
    """Propose catalog ACTION for INCIDENT_ID by hand; prints the plan approvers will see."""
    from summarize.model import Remediation

    remedy = Remediation(action, _params(pairs), reason, tuple(evidence), source="manual")
    p = _approvals(ctx).propose(incident_id, remedy, actor_of(ctx, actor), source="manual")
    if as_json:
        click.echo(json.dumps(p.to_json()))
        return
    need = p.approvals_needed
    click.echo(f"proposed {p.id}: needs {need} approval{'s' if need > 1 else ''} by {_when(p.expires_at)}")
    click.echo(p.plan)


@remediation.command("approve")
@click.argument("proposal_id")
@click.option("--reason", default="", help="Why (recorded in the audit log).")
@_ACTOR
@click.pass_context
def approve_cmd(ctx: click.Context, proposal_id: str, reason: str, actor: str | None) -> None:
    """Approve a proposal (not your own; high risk needs a second approver)."""
    p = _approvals(ctx).approve(proposal_id, actor_of(ctx, actor), reason)
    if p.state == "approved":
        click.echo(f"{p.id} approved by {', '.join(p.approvers)}: ready to execute")
    else:
        click.echo(f"{p.id}: approval recorded ({len(p.approvals)} of {p.approvals_needed}); still proposed")


@remediation.command("reject")
@click.argument("proposal_id")
@click.option("--reason", required=True, help="Why not (recorded in the audit log).")
@_ACTOR
@click.pass_context
def reject_cmd(ctx: click.Context, proposal_id: str, reason: str, actor: str | None) -> None:
    """Reject a proposal (before it runs)."""
    p = _approvals(ctx).reject(proposal_id, actor_of(ctx, actor), reason)
    click.echo(f"{p.id} rejected by {p.decided_by}")


@remediation.command("execute")
@click.argument("proposal_id")
@_ACTOR
@click.option(
    "--queue",
    is_flag=True,
    help="Check it now and hand it to the executor service (`warroom up`) instead of running it here.",
)
@click.pass_context
def execute_cmd(ctx: click.Context, proposal_id: str, actor: str | None, queue: bool) -> None:
    """Run an approved proposal (exactly once); exit 1 if the action itself failed."""
    if queue:
        p = _approvals(ctx).queue(proposal_id, actor_of(ctx, actor))
        click.echo(f"{p.id} queued by {p.executed_by}: the executor service runs it")
        return
    p = _approvals(ctx).execute(proposal_id, actor_of(ctx, actor))
    assert p.result is not None
    click.echo(f"{p.id} {p.state.value}: {p.result.detail}")
    for text in p.result.output.splitlines():
        click.echo(f"  | {text}")
    if p.state != "succeeded":
        ctx.exit(1)


def _param_text(spec: ParamSpec) -> str:
    text = f"{spec.name}:{spec.type}"
    if spec.choices:
        text += "{" + "|".join(str(c) for c in spec.choices) + "}"
    if spec.min is not None or spec.max is not None:
        low = "" if spec.min is None else f"{spec.min:g}"
        high = "" if spec.max is None else f"{spec.max:g}"
        text += f"[{low}..{high}]"
    if spec.default is not None:
        text += f"={spec.default}"
    elif not spec.required:
        text += "?"
    return text


def _action_lines(a: Action) -> list[str]:
    executor: Any = a.executor.kind
    if a.executor.kind == "command" and not a.executor.enabled:
        executor += " (disabled)"
    return [
        f"{a.name:<22} risk={a.risk:<6} {executor:<10} {a.title}",
        f"{'':<22} params: {' '.join(_param_text(p) for p in a.params) or '-'}",
    ]


@remediation.command("catalog")
@_JSON
@_ACTOR
@click.pass_context
def catalog_cmd(ctx: click.Context, as_json: bool, actor: str | None) -> None:
    """The catalog's actions with their parameters, risk and executor."""
    from app import wiring

    catalog = wiring.catalog(settings_of(ctx))
    if as_json:
        click.echo(json.dumps(catalog.to_json()))
        return
    for action in catalog.values():
        for text in _action_lines(action):
            click.echo(text)
