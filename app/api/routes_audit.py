"""``/api/v1/audit``: the hash-chained audit log, for admins — who did what to which subject.

Newest first, a page at a time: ``before`` is the ``seq`` to continue below (the answer's
``next_before``), so paging is stable while new entries are appended. ``/verify`` recomputes the
whole chain like ``warroom audit verify``; a broken chain is a 200 whose body says where.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import sqlalchemy as sa
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
    table = audit.AUDIT
    query = sa.select(table).order_by(table.c.seq.desc()).limit(limit + 1)
    if subject is not None:
        query = query.where(table.c.subject == subject)
    if before is not None:
        query = query.where(table.c.seq < before)
    with ctx.state.begin() as conn:
        rows = conn.execute(query).all()
    entries = [
        audit.AuditEntry(
            r.seq,
            r.at,
            r.actor,
            r.action,
            r.subject,
            r.reason,
            json.loads(r.before),
            json.loads(r.after),
            r.prev_hash,
            r.hash,
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return {"entries": [audit_json(e) for e in entries], "next_before": entries[-1].seq if more else None}


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
