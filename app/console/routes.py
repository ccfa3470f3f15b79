"""The console's pages and form actions.

Reads go to the same stores as the CLI and the API; every change goes through the same objects —
the correlator for ack/resolve, :meth:`ApiContext.approvals` for approve/reject/execute — so the
workflow's own rules (no self-approval, two approvers for high risk, expiry, exactly-once
execution) and the audit log apply unchanged. On top of them the console checks the role a form
needs before calling anything:

=============================  =========  =====================================================
action                         role       notes
=============================  =========  =====================================================
any page                       viewer
ack / resolve an incident      responder
approve                        approver   the "I checked the pre-checks" box must be ticked
reject                         approver   a reason is required
execute (an approved plan)     responder  the workflow lets operators run what approvers approved
=============================  =========  =====================================================

A refused action (self-approval, already decided, expired …) comes back as a flash message on the
page the form was on, never as a 500. A role check that fails is a 403 page: the form was not
offered to that user, so only a crafted request gets there.

This module does not use ``from __future__ import annotations``: FastAPI reads the routes'
``Annotated`` dependencies at runtime, and they are local to :func:`console_router`.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from markupsafe import Markup
from starlette.responses import Response

from app.console.servicemap import layout
from app.console.web import Console, Posted, Visit, console_route_class, local_path
from app.summaries import evidence_pack, incident_alerts, period_digest
from correlate.topology import load_latest
from summarize import digest
from summarize.approval import Approvals, Proposal, State
from summarize.charts import line_chart
from summarize.model import Claim, EvidenceItem, Hypothesis, Summary
from warroom import alerts as alert_table
from warroom.alert_json import time_from_text
from warroom.audit import AuditEntry
from warroom.errors import Conflict, Forbidden, InputError
from warroom.incident import Incident
from warroom.model import Alert
from warroom.timeparse import parse_duration

__all__ = ["STATUS_FILTERS", "console_router"]

log = logging.getLogger("warroom.console")

STATUS_FILTERS = ("active", "open", "acknowledged", "resolved", "all")
"""The incident list's status filter; ``active`` (the default) is open or acknowledged."""

_LIST_LIMIT = 200  # rows on the incident list
_ALERT_LIMIT = 500  # rows in the alert explorer
_KEY_SERIES = 6  # charts at the top of an incident page
_MAX_WINDOW = timedelta(days=31)
_ANOMALY_WINDOW = timedelta(hours=24)  # firing alerts that started this recently mark a service
_REFRESH_MS = 10_000


@dataclass(frozen=True)
class Card:
    """A remediation proposal as its card shows it to the user looking at it."""

    proposal: Proposal
    title: str
    prechecks: tuple[str, ...]
    dry_run: bool
    trail: tuple[AuditEntry, ...]
    overdue: bool
    can_approve: bool
    can_reject: bool
    can_execute: bool
    note: str  # why the approve button is not offered to this approver, if it is not


def _card(approvals: Approvals, proposal: Proposal, visit: Visit, now: datetime) -> Card:
    try:
        action = approvals.catalog.action(proposal.action)
        title, prechecks, dry_run = action.title, action.prechecks, action.executor.kind == "dry_run"
    except InputError:  # the action left the catalog since: the stored plan still says what it was
        title, prechecks, dry_run = proposal.action, (), False
    open_ = proposal.state in (State.PROPOSED, State.APPROVED)
    overdue = open_ and now >= proposal.expires_at
    name = visit.user.name if visit.user else ""
    approver = visit.allows("approver") and not overdue
    note = ""
    can_approve = approver and proposal.state == State.PROPOSED
    if can_approve and name == proposal.author:
        can_approve, note = False, "You proposed this, so another approver must approve it."
    elif can_approve and name in proposal.approvers:
        can_approve = False
        note = f"You approved this; it needs {proposal.approvals_needed} distinct approvers."
    return Card(
        proposal=proposal,
        title=title,
        prechecks=prechecks,
        dry_run=dry_run,
        trail=tuple(approvals.trail(proposal.id)),
        overdue=overdue,
        can_approve=can_approve,
        can_reject=approver and open_,
        can_execute=visit.allows("responder") and proposal.state == State.APPROVED and not overdue,
        note=note,
    )


def _window(text: str, default: str = "24h") -> tuple[str, timedelta, str]:
    """(the text to show in the form, the window, an error to show) for a ``since`` parameter."""
    try:
        window = parse_duration(text or default)
    except InputError as exc:
        return text, parse_duration(default), str(exc)
    if window <= timedelta(0) or window > _MAX_WINDOW:
        return text, parse_duration(default), f"since must be between 1s and {_MAX_WINDOW.days}d"
    return text or default, window, ""


def _charts(summary: Summary) -> tuple[dict[str, Markup], list[EvidenceItem]]:
    """Every evidence item's chart, and the key series: the cited items that have data."""
    pack = summary.pack
    incident = pack.incident
    start = int(incident.started_at.timestamp())
    end = int(incident.resolved_at.timestamp()) if incident.resolved_at else None
    charts = {
        item.id: Markup(line_chart(item.points, title=f"{item.id}: {item.title}", start=start, end=end))
        for item in pack.items
        if item.points
    }
    cited: list[str] = []
    claims: list[Claim | Hypothesis] = [*summary.impact, *summary.hypotheses]
    for claim in claims:
        cited += [i for i in claim.evidence if i not in cited]
    key = [
        item
        for item in (pack.get(i) for i in cited)
        if item is not None and item.id in charts and any(v is not None for _, v in item.points)
    ]
    return charts, key[:_KEY_SERIES]


def console_router(console: Console) -> APIRouter:
    """Every console route, bound to ``console``."""
    ctx = console.ctx
    router = APIRouter(route_class=console_route_class(console), include_in_schema=False)
    Page = Annotated[Visit, Depends(console.signed_in)]
    Form = Annotated[Posted, Depends(console.posted)]

    def incident_list(status: str, service: str) -> list[Incident]:
        exact = status if status in ("open", "acknowledged", "resolved") else None
        found = ctx.incidents.incidents(exact, limit=_LIST_LIMIT * 5 if service else _LIST_LIMIT)
        if status == "active":
            found = [i for i in found if i.status != "resolved"]
        if service:
            found = [i for i in found if service in i.services]
        return found[:_LIST_LIMIT]

    def list_query(status: str, service: str) -> str:
        return urlencode({k: v for k, v in (("status", status), ("service", service)) if v})

    def back_to(proposal: Proposal) -> str:
        """Where a remediation form returns: its incident's page, or its own when that is gone."""
        try:
            ctx.incidents.get(proposal.incident_id)
        except InputError:
            return f"/remediations/{quote(proposal.id)}"
        return f"/incidents/{quote(proposal.incident_id)}#proposal-{quote(proposal.id)}"

    def known_services() -> list[str]:
        found = {s for i in ctx.incidents.incidents(limit=_LIST_LIMIT) for s in i.services}
        return sorted(s for s in found if s)

    # --- signing in and out -----------------------------------------------------------------------

    @router.get("/")
    def home(request: Request) -> Response:
        visit = console.visit(request)
        return console.redirect(visit, "/incidents" if visit.user else "/login")

    @router.get("/login")
    def login_page(request: Request, next: str = "") -> Response:
        visit = console.visit(request)
        if visit.user is not None:
            return console.redirect(visit, local_path(next))
        return console.render(visit, "login.html.j2", next=local_path(next), error="")

    @router.post("/login")
    def login(posted: Form) -> Response:
        visit = posted.visit
        target = local_path(posted.text("next"))
        user = ctx.authenticate(posted.text("token", 200))
        if user is None:
            log.info("console sign-in refused", extra={"client": _client(visit.request)})
            error = "That token is not valid: it is unknown, revoked or mistyped."
            return console.render(visit, "login.html.j2", http_status=401, next=target, error=error)
        visit.session.login(user, console.wall_clock())
        visit.user = user
        visit.session.flash("ok", f"Signed in as {user.name} ({user.role}).")
        log.info("console sign-in", extra={"user": user.name, "client": _client(visit.request)})
        return console.redirect(visit, target)

    @router.get("/logout")
    def logout_page(visit: Page) -> Response:
        return console.render(visit, "logout.html.j2")

    @router.post("/logout")
    def logout(posted: Form) -> Response:
        posted.visit.session.logout()
        posted.visit.session.flash("info", "Signed out.")
        return console.redirect(posted.visit, "/login")

    # --- incidents --------------------------------------------------------------------------------

    @router.get("/incidents")
    def incidents(visit: Page, status: str = "active", service: str = "") -> Response:
        status = status if status in STATUS_FILTERS else "active"
        return console.render(
            visit,
            "incidents.html.j2",
            incidents=incident_list(status, service),
            status=status,
            service=service,
            statuses=STATUS_FILTERS,
            services=known_services(),
            rows_url="/incidents/rows?" + list_query(status, service),
            refresh_ms=_REFRESH_MS,
            now=ctx.clock(),
        )

    @router.get("/incidents/rows")
    def incident_rows(visit: Page, status: str = "active", service: str = "") -> Response:
        """The incident list's table body, for the page's script to swap in every few seconds."""
        status = status if status in STATUS_FILTERS else "active"
        return console.fragment(visit, "_incident_rows.html.j2", incidents=incident_list(status, service))

    @router.get("/incidents/{incident_id}")
    def incident(incident_id: str, visit: Page) -> Response:
        now = ctx.clock()
        found = ctx.incidents.get(incident_id)
        events = ctx.incidents.events(incident_id)
        members = incident_alerts(ctx.store, found, now)
        pack = evidence_pack(ctx.store, ctx.incidents, incident_id, now, alerts=members, events=events)
        summary = digest.build(pack, ctx.catalog)
        charts, key_series = _charts(summary)
        approvals = ctx.approvals()
        cards = [_card(approvals, p, visit, now) for p in approvals.list(incident=incident_id)]
        return console.render(
            visit,
            "incident.html.j2",
            inc=found,
            events=[{**e, "at": time_from_text(str(e["at"]))} for e in events],
            members=sorted(members, key=lambda a: (a.starts_at, a.fingerprint), reverse=True),
            summary=summary,
            known=pack.ids,
            causes=found.root_causes,  # ranked by correlation, most probable first
            charts=charts,
            key_series=key_series,
            cards=cards,
            duration=(found.resolved_at or now) - found.started_at,
            now=now,
        )

    @router.post("/incidents/{incident_id}/ack")
    def acknowledge(incident_id: str, posted: Form) -> Response:
        user = posted.visit.require("responder")
        ctx.incidents.get(incident_id)
        try:
            ctx.correlator.acknowledge(incident_id, user.name)
        except (InputError, Conflict, Forbidden) as exc:
            posted.visit.session.flash("error", str(exc))
        else:
            posted.visit.session.flash("ok", f"{incident_id} acknowledged by {user.name}.")
        return console.redirect(posted.visit, f"/incidents/{quote(incident_id)}")

    @router.post("/incidents/{incident_id}/resolve")
    def resolve(incident_id: str, posted: Form) -> Response:
        user = posted.visit.require("responder")
        ctx.incidents.get(incident_id)
        try:
            ctx.correlator.resolve(incident_id, user.name)
        except (InputError, Conflict, Forbidden) as exc:
            posted.visit.session.flash("error", str(exc))
        else:
            posted.visit.session.flash("ok", f"{incident_id} resolved by {user.name}.")
        return console.redirect(posted.visit, f"/incidents/{quote(incident_id)}")

    # --- remediations -----------------------------------------------------------------------------

    @router.get("/remediations")
    def remediations(visit: Page, state: str = "proposed") -> Response:
        states = ("all", *(s.value for s in State))
        state = state if state in states else "proposed"
        listed = ctx.approvals().list(None if state == "all" else state, limit=_LIST_LIMIT)
        return console.render(
            visit, "remediations.html.j2", proposals=listed, state=state, states=states, now=ctx.clock()
        )

    @router.get("/remediations/{proposal_id}")
    def remediation(proposal_id: str, visit: Page) -> Response:
        approvals = ctx.approvals()
        card = _card(approvals, approvals.get(proposal_id), visit, ctx.clock())
        # Its evidence is on the incident's page: citations link there.
        evidence_page = f"/incidents/{quote(card.proposal.incident_id)}"
        return console.render(visit, "remediation.html.j2", card=card, evidence_page=evidence_page)

    @router.post("/remediations/{proposal_id}/approve")
    def approve(proposal_id: str, posted: Form) -> Response:
        visit = posted.visit
        user = visit.require("approver")
        approvals = ctx.approvals()
        back = back_to(approvals.get(proposal_id))
        if posted.text("confirm") != "yes":
            visit.session.flash(
                "error", f"{proposal_id} not approved: tick “I checked the pre-checks” to approve."
            )
            return console.redirect(visit, back)
        try:
            done = approvals.approve(proposal_id, user.name, posted.text("reason"))
        except (InputError, Conflict, Forbidden) as exc:
            visit.session.flash("error", f"{proposal_id} not approved: {exc}")
        else:
            if done.state == State.APPROVED:
                visit.session.flash("ok", f"{proposal_id} approved by {user.name}; it can be executed now.")
            else:
                have, need = len(done.approvals), done.approvals_needed
                visit.session.flash(
                    "ok",
                    f"Approval recorded ({have} of {need}): {proposal_id} is high risk and needs "
                    "another approver.",
                )
        return console.redirect(visit, back)

    @router.post("/remediations/{proposal_id}/reject")
    def reject(proposal_id: str, posted: Form) -> Response:
        visit = posted.visit
        user = visit.require("approver")
        approvals = ctx.approvals()
        back = back_to(approvals.get(proposal_id))
        reason = posted.text("reason")
        if not reason:
            visit.session.flash("error", f"{proposal_id} not rejected: give a reason.")
            return console.redirect(visit, back)
        try:
            approvals.reject(proposal_id, user.name, reason)
        except (InputError, Conflict, Forbidden) as exc:
            visit.session.flash("error", f"{proposal_id} not rejected: {exc}")
        else:
            visit.session.flash("ok", f"{proposal_id} rejected by {user.name}.")
        return console.redirect(visit, back)

    @router.post("/remediations/{proposal_id}/execute")
    def execute(proposal_id: str, posted: Form) -> Response:
        visit = posted.visit
        user = visit.require("responder")
        approvals = ctx.approvals()
        back = back_to(approvals.get(proposal_id))
        try:
            done = approvals.execute(proposal_id, user.name)
        except (InputError, Conflict, Forbidden) as exc:
            visit.session.flash("error", f"{proposal_id} not executed: {exc}")
        else:
            detail = done.result.detail if done.result else ""
            kind = "ok" if done.state == State.SUCCEEDED else "error"
            visit.session.flash(kind, f"{proposal_id} {done.state.value}: {detail}")
        return console.redirect(visit, back)

    # --- alerts, map, digest ----------------------------------------------------------------------

    @router.get("/alerts")
    def alerts(visit: Page, since: str = "24h", service: str = "", firing: str = "") -> Response:
        since, window, error = _window(since)
        now = ctx.clock()
        found = alert_table.read(
            ctx.store, now - window, now + timedelta(seconds=1), firing_only=bool(firing)
        )
        services = sorted({a.service for a in found if a.service} | ({service} if service else set()))
        if service:
            found = [a for a in found if a.service == service]
        found.reverse()  # newest first
        owners: dict[str, str] = {}
        for inc in ctx.incidents.incidents(limit=_ALERT_LIMIT):  # newest first: the latest owner wins
            for fingerprint in inc.fingerprints:
                owners.setdefault(fingerprint, inc.id)
        return console.render(
            visit,
            "alerts.html.j2",
            alerts=found[:_ALERT_LIMIT],
            total=len(found),
            limit=_ALERT_LIMIT,
            since=since,
            error=error,
            service=service,
            firing=bool(firing),
            services=services,
            owners=owners,
            now=now,
        )

    @router.get("/map")
    def service_map(visit: Page) -> Response:
        now = ctx.clock()
        topology = load_latest(ctx.store, now)
        firing = alert_table.read(ctx.store, now - _ANOMALY_WINDOW, now + timedelta(seconds=1), True)
        active = [i for i in ctx.incidents.incidents(limit=_LIST_LIMIT) if i.status != "resolved"]
        anomalies = _anomalies(firing, active)
        drawn = layout(topology, anomalies) if topology is not None else None
        mapped = set(topology.services) if topology is not None else set()
        return console.render(
            visit,
            "map.html.j2",
            topology=topology,
            drawn=drawn,
            anomalies=anomalies,
            unmapped=sorted(s for s in anomalies if s not in mapped),
            now=now,
        )

    @router.get("/digest")
    def period(visit: Page, since: str = "24h") -> Response:
        since, window, error = _window(since)
        now = ctx.clock()
        found = period_digest(ctx.store, ctx.incidents, window, now)
        return console.render(visit, "digest.html.j2", d=found, since=since, error=error, now=now)

    return router


def _anomalies(firing: Sequence[Alert], active: Sequence[Incident]) -> dict[str, list[str]]:
    """Why each service is highlighted on the map: its firing alerts and the open incidents it is in."""
    out: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for alert in firing:
        if alert.service:
            counts[alert.service] = counts.get(alert.service, 0) + 1
    for name, count in sorted(counts.items()):
        out.setdefault(name, []).append(f"{count} firing alert{'s' if count != 1 else ''}")
    for inc in active:
        top = str(inc.root_causes[0].get("service", "")) if inc.root_causes else ""
        for name in inc.services:
            why = f"probable root cause of {inc.id}" if name == top else f"in {inc.status} incident {inc.id}"
            out.setdefault(name, []).append(why)
        if top and top not in inc.services:
            out.setdefault(top, []).append(f"probable root cause of {inc.id}")
    return out


def _client(request: Request) -> str:
    return request.client.host if request.client else ""
