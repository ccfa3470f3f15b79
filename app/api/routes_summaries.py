"""Evidence, incident summaries and the SRE digest — the same functions as ``warroom summarize`` and
``warroom digest`` (:mod:`app.summaries`), so the API, the CLI and the console agree.

The GETs are deterministic reads: no LLM call, no proposal recorded, nothing written; asking twice
gives the same answer for the same data. ``POST …/summarize`` is the one that may call the
configured LLM and records the summary's remediations as proposals awaiting approval, so it needs
a responder and is audited with the caller as the actor.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from app import summaries
from app.api.deps import Ctx, Responder, Viewer, parse_since, parse_until
from app.api.shapes import json_response, period_json
from summarize.model import Summary
from summarize.render import render, render_period
from warroom import audit
from warroom.errors import InputError

__all__ = ["SummarizeRequest", "router"]

router = APIRouter(prefix="/api/v1", tags=["summaries"])

MAX_PERIOD = timedelta(days=92)
"""Longest digest period: a quarter (every alert of the period is read)."""

Format = Literal["json", "md", "html", "slack"]
_AT = Query(
    max_length=64, description="Data time that ends an open incident's window: now, now-2h, ISO-8601."
)


class SummarizeRequest(BaseModel):
    """Options of ``POST …/summarize``; the body may be left out for the defaults.

    ``use_llm``: ask the configured LLM for a narrative (a no-op without one); ``propose``: record
    the summary's remediations as proposals; ``at``: the data time that ends an open incident's
    window (now, now-2h, ISO-8601).
    """

    model_config = ConfigDict(extra="forbid")
    use_llm: bool = True
    propose: bool = True
    at: Annotated[str, Field(max_length=64)] = "now"


def _text(text: str, fmt: str) -> Response:
    if fmt == "html":
        return HTMLResponse(text)
    if fmt == "slack":  # Block Kit JSON text, as Slack's API takes it
        return Response(text, media_type="application/json")
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


def _summary_response(summary: Summary, fmt: str) -> Response:
    return json_response(summary.to_json()) if fmt == "json" else _text(render(summary, fmt), fmt)


@router.get("/incidents/{incident_id}/evidence", response_class=Response)
def incident_evidence(incident_id: str, ctx: Ctx, _user: Viewer, at: Annotated[str, _AT] = "now") -> Response:
    """The numbered evidence pack: every fact a summary may cite, each with the query behind it."""
    now = parse_until(at, ctx.clock(), "at")
    return json_response(summaries.evidence_pack(ctx.store, ctx.incidents, incident_id, now).to_json())


@router.get("/incidents/{incident_id}/summary", response_class=Response)
def incident_summary(
    incident_id: str,
    ctx: Ctx,
    _user: Viewer,
    fmt: Annotated[Format, Query(alias="format")] = "json",
    at: Annotated[str, _AT] = "now",
) -> Response:
    """The deterministic digest (no LLM, nothing recorded) as JSON, Markdown, HTML or Slack blocks."""
    run = summaries.summarize_incident(
        ctx.settings,
        ctx.store,
        ctx.state,
        ctx.incidents,
        incident_id,
        now=parse_until(at, ctx.clock(), "at"),
        use_llm=False,
        propose=False,
        catalog=ctx.catalog,
    )
    return _summary_response(run.summary, fmt)


@router.post("/incidents/{incident_id}/summarize", response_class=Response)
def summarize_incident(
    incident_id: str,
    ctx: Ctx,
    user: Responder,
    body: Annotated[SummarizeRequest | None, Body()] = None,
) -> Response:
    """Summarize with the LLM narrative when one is configured, and record the remediations as
    proposals (standing ones are not repeated). Returns the summary, the LLM outcome and the
    proposals this call created."""
    options = body or SummarizeRequest()
    now = parse_until(options.at, ctx.clock(), "at")
    ctx.incidents.get(incident_id)  # 404 before any LLM call
    run = summaries.summarize_incident(
        ctx.settings,
        ctx.store,
        ctx.state,
        ctx.incidents,
        incident_id,
        now=now,
        use_llm=options.use_llm,
        propose=options.propose,
        catalog=ctx.catalog,
    )
    outcome = run.outcome.to_json() if run.outcome is not None else None
    with ctx.state.begin() as conn:
        audit.append(
            conn,
            actor=user.name,
            action="incident.summarize",
            subject=incident_id,
            after={
                "llm_status": run.summary.llm_status,
                "proposals": [p.id for p in run.proposals],
            },
        )
    return json_response(
        {
            "summary": run.summary.to_json(),
            "llm": {k: v for k, v in outcome.items() if k != "narrative"} if outcome else None,
            "proposals": [p.to_json() for p in run.proposals],
        }
    )


@router.get("/digest", response_class=Response)
def period_digest(
    ctx: Ctx,
    _user: Viewer,
    since: Annotated[str, Query(max_length=64, description="Period length: 30m, 24h, 7d.")] = "24h",
    to: Annotated[str, Query(max_length=64, description="End of the period: now, ISO-8601.")] = "now",
    fmt: Annotated[Format, Query(alias="format")] = "json",
) -> Response:
    """The SRE digest of a period: every incident, time to acknowledge and resolve, the noisiest
    alerts and the flapping signals."""
    now = ctx.clock()
    end = parse_until(to, now, "to")
    start = parse_since(since, end)
    if start >= end:
        raise InputError(f"since: {since!r} gives an empty period ending {end.isoformat()}", "invalid_time")
    if end - start > MAX_PERIOD:
        raise InputError(f"since: a digest covers at most {MAX_PERIOD.days} days", "period_too_long")
    digest = summaries.period_digest(ctx.store, ctx.incidents, end - start, end)
    if fmt == "json":
        return json_response(period_json(digest))
    return _text(render_period(digest, fmt), fmt)
