"""``GET /api/v1/topology``: the service call graph correlation uses, as last learned from traces.

The snapshot is the one in effect at ``at`` (default now) — the same one the correlator reads — with
each edge's calls, rate, error ratio and p95 latency over its window, and each node's callers and
callees. Before any traces were seen there is no snapshot: 200 with ``"snapshot": false`` and empty
lists, so a console can draw "nothing learned yet" without treating it as an error.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from app.api.deps import Ctx, Viewer, parse_until
from app.api.shapes import json_response
from correlate.topology import load_latest

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/topology", tags=["topology"])


@router.get("", response_class=Response)
def topology(
    ctx: Ctx,
    _user: Viewer,
    at: Annotated[str, Query(max_length=64, description="now, now-1h or ISO-8601.")] = "now",
) -> Response:
    """Nodes (services) and edges (caller → callee with call counts, errors and latency)."""
    learned = load_latest(ctx.store, parse_until(at, ctx.clock(), "at"))
    if learned is None:
        return json_response({"snapshot": False, "start": None, "end": None, "nodes": [], "edges": []})
    nodes = [
        {"name": s, "callers": list(learned.callers(s)), "callees": list(learned.callees(s))}
        for s in learned.services
    ]
    return json_response(
        {
            "snapshot": True,
            "start": learned.start.isoformat(),
            "end": learned.end.isoformat(),
            "nodes": nodes,
            "edges": [e.to_json() for e in learned.edges],
        }
    )
