"""``GET /api/v1/alerts``: the alerts table, as ``warroom alerts list`` shows it (viewer).

Posting alerts is the intake's (:mod:`app.api.intake`, same path, POST). The window is bounded
(``MAX_WINDOW``) because every alert that started in it is read before the filters apply.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from app.api.deps import MAX_PAGE, Ctx, Viewer, parse_since, parse_until
from app.api.shapes import json_response
from warroom import alerts as alert_table
from warroom.alert_json import alert_to_json
from warroom.errors import InputError
from warroom.model import Severity

__all__ = ["MAX_WINDOW", "router"]

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

MAX_WINDOW = timedelta(days=31)
"""Widest ``[since, until)`` one request reads."""


@router.get("", response_class=Response)
def list_alerts(
    ctx: Ctx,
    _user: Viewer,
    since: Annotated[str, Query(max_length=64, description="24h, 90m, now-2h or ISO-8601.")] = "24h",
    until: Annotated[str, Query(max_length=64, description="now, now-1h or ISO-8601.")] = "now",
    service: Annotated[str | None, Query(max_length=255)] = None,
    severity: Severity | None = None,
    firing: Annotated[bool | None, Query(description="true: still firing; false: resolved.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
) -> Response:
    """Alerts that started in ``[since, until)`` (the latest version of each), newest first."""
    now = ctx.clock()
    end = parse_until(until, now)
    start = parse_since(since, now)
    if start >= end:
        raise InputError(
            f"since ({start.isoformat()}) must be before until ({end.isoformat()})", "invalid_time"
        )
    if end - start > MAX_WINDOW:
        raise InputError(f"since..until spans more than {MAX_WINDOW.days} days", "window_too_long")
    found = [
        a
        for a in alert_table.read(ctx.store, start, end, firing_only=firing is True)
        if (service is None or a.service == service)
        and (severity is None or a.severity is severity)
        and (firing is None or a.firing == firing)
    ]
    found.reverse()
    return json_response(
        {
            "alerts": [alert_to_json(a) for a in found[:limit]],
            "count": min(len(found), limit),
            "truncated": len(found) > limit,
        }
    )
