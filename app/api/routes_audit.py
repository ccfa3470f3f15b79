"""``/api/v1/audit``: the hash-chained audit log, for admins — who did what to which subject.

Newest first, a page at a time: ``before`` is the ``seq`` to continue below (the answer's
``next_before``), so paging is stable while new entries are appended. ``/verify`` recomputes the
whole chain like ``warroom audit verify``; a broken chain is a 200 whose body says where.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import MAX_PAGE, Admin, Ctx
from app.api.shapes import audit_json
from warroom import audit

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("")
def audit_entries(
    ctx: Ctx,
    _user: Admin,
    subject: Annotated[
        str | None, Query(max_length=255, description="An incident, proposal or user:NAME.")
    ] = None,
    before: Annotated[int | None, Query(ge=1, description="Only entries with a lower seq.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, Any]:
    """Audit entries, newest first."""
    page = audit.entries(ctx.state, subject, before=before, limit=limit + 1, newest_first=True)
    more = len(page) > limit
    shown = page[:limit]
    return {"entries": [audit_json(e) for e in shown], "next_before": shown[-1].seq if more else None}


@router.get("/verify")
def audit_verify(ctx: Ctx, _user: Admin) -> dict[str, Any]:
    """Recompute the chain: ``ok`` false names the first entry altered, removed or reordered."""
    result = audit.verify(ctx.state)
    return {
        "ok": result.ok,
        "entries": result.entries,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem or None,
    }
