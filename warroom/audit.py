"""An append-only, hash-chained audit log in the state database: who did what to which subject,
when, why, and the state before and after.

Each entry stores ``hash = sha256(previous hash + canonical JSON of the entry)``. Editing, deleting
or reordering any row breaks the chain from that row on, and :func:`verify` names the first
broken sequence number — so an approval that was quietly rewritten in the database is detectable
(``warroom audit verify``). Appends serialise on the chain head (the row with the highest ``seq``),
so two writers never fork the chain: ``seq`` is the primary key, and on PostgreSQL appends take a
transaction-scoped advisory lock before reading the head; on SQLite a no-op write takes the
database's write lock first, so the second writer waits for the first (up to the busy timeout).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from warroom.statedb import StateDB, UTCDateTime

__all__ = ["METADATA", "AuditEntry", "Verification", "append", "entries", "verify"]

METADATA = sa.MetaData()
"""The audit table; the composition root passes this to :func:`warroom.statedb.migrate`."""

AUDIT = sa.Table(
    "audit_log",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("before", sa.Text, nullable=False),  # canonical JSON
    sa.Column("after", sa.Text, nullable=False),  # canonical JSON
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

GENESIS = "0" * 64
_PG_LOCK_KEY = 0x57524D41  # "WRMA": serialises audit appends on PostgreSQL


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    reason: str
    before: Any
    after: Any
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str = ""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _digest(prev: str, seq: int, at: datetime, fields: tuple[str, ...]) -> str:
    """``fields``: actor, action, subject, reason and the canonical JSON of before and after."""
    body = _canonical([seq, at.astimezone(UTC).isoformat(), *fields])
    return hashlib.sha256((prev + body).encode()).hexdigest()


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str,
    reason: str = "",
    before: Any = None,
    after: Any = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's transaction (so it commits with the change it records)."""
    if conn.dialect.name == "postgresql":
        # The head row's lock alone is not enough under READ COMMITTED: a writer that waited for it
        # re-reads the same (old) head and collides on ``seq``. A transaction-scoped advisory lock
        # taken before the read makes the read see the previous appender's committed row.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    else:
        # SQLite: a write statement takes the database's write lock now (waiting out the busy
        # timeout), so the head read next cannot be stale. A no-op when the caller holds it already.
        conn.execute(sa.update(AUDIT).where(sa.false()).values(seq=AUDIT.c.seq))
    head = conn.execute(
        sa.select(AUDIT.c.seq, AUDIT.c.hash).order_by(AUDIT.c.seq.desc()).limit(1).with_for_update()
    ).first()
    seq, prev = (head.seq + 1, head.hash) if head is not None else (1, GENESIS)
    when = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    before_text, after_text = _canonical(before), _canonical(after)
    digest = _digest(prev, seq, when, (actor, action, subject, reason, before_text, after_text))
    conn.execute(
        sa.insert(AUDIT).values(
            seq=seq,
            at=when,
            actor=actor,
            action=action,
            subject=subject,
            reason=reason,
            before=before_text,
            after=after_text,
            prev_hash=prev,
            hash=digest,
        )
    )
    return AuditEntry(seq, when, actor, action, subject, reason, before, after, prev, digest)


def entries(
    db: StateDB,
    subject: str | None = None,
    *,
    before: int | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[AuditEntry]:
    """Entries (of one ``subject``), oldest first — or a page of them newest first, below ``seq``
    ``before``, which stays stable while new entries are appended."""
    order = AUDIT.c.seq.desc() if newest_first else AUDIT.c.seq
    query = sa.select(AUDIT).order_by(order)
    if subject is not None:
        query = query.where(AUDIT.c.subject == subject)
    if before is not None:
        query = query.where(AUDIT.c.seq < before)
    if limit is not None:
        query = query.limit(limit)
    with db.begin() as conn:
        rows = conn.execute(query).all()
    return [
        AuditEntry(
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
        for r in rows
    ]


def verify(db: StateDB) -> Verification:
    """Recompute the chain; the first row whose link or hash does not match is reported."""
    with db.begin() as conn:
        rows = conn.execute(sa.select(AUDIT).order_by(AUDIT.c.seq)).all()
    prev, expected_seq = GENESIS, 1
    for r in rows:
        if r.seq != expected_seq:
            return Verification(False, len(rows), expected_seq, f"entry {expected_seq} is missing")
        if r.prev_hash != prev:
            return Verification(False, len(rows), r.seq, "does not link to the entry before it")
        digest = _digest(prev, r.seq, r.at, (r.actor, r.action, r.subject, r.reason, r.before, r.after))
        if digest != r.hash:
            return Verification(False, len(rows), r.seq, "content does not match its hash")
        prev, expected_seq = r.hash, expected_seq + 1
    return Verification(True, len(rows))
