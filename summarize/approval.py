"""The human approval workflow for remediations: propose → approve → execute, in the state DB.

Nothing a summary proposes runs by itself. A :class:`~summarize.model.Remediation` becomes a
*proposal* (:meth:`Approvals.propose`), validated against the catalog and stored with the exact plan
the approvers see. Its life::

    proposed ──approve (1, or 2 distinct for high risk)──▶ approved ──execute──▶ executing ─┬─▶ succeeded
       │  └──────────────reject───────────────┐             │  │                           └─▶ failed
       │                                      ▼             │  └──reject──▶ rejected
       └──────────── past expires_at ──▶ expired ◀──────────┘

Rules, each enforced inside the transaction that changes the row:

- Roles come from the config file's ``[roles]`` table (:class:`Roles`). Only an ``approver``
  approves or rejects (Forbidden ``not_approver``); an ``operator`` or ``approver`` executes
  (Forbidden ``not_operator``). Nobody holds a role by default: warroom will not guess who may
  change production.
- The author of a proposal cannot approve it (Forbidden ``self_approval``), nobody approves twice
  (Forbidden ``already_approved``), and a high-risk action needs two distinct approvers: the first
  approval is recorded and the proposal stays ``proposed``.
- A proposal not executed by ``expires_at`` (created + ``WARROOM_PROPOSAL_TTL_S``) expires, approved
  or not: a plan approved for the system as it was an hour ago is not approved for the system now.
  Approving or executing an overdue proposal records the expiry (actor ``warroom``) and raises
  Conflict ``expired``; :meth:`Approvals.expire_due` sweeps them.
- Execution is claimed by a compare-and-set ``UPDATE … WHERE id AND state = 'approved' AND version
  = v`` after the row is locked, so of any number of concurrent callers exactly one runs the action;
  the others get Conflict ``already_executing`` / ``already_executed``. The executor runs *outside*
  the transaction (a slow webhook must not hold database locks), and the outcome is recorded in a
  second one. A process that dies in between leaves the proposal ``executing`` — visible in
  ``warroom remediation list``, and never re-run automatically, because warroom cannot know whether
  the action took effect; a person checks the target and proposes again if needed.
- The plan is rendered at proposal time and stored with its :meth:`~summarize.catalog.Action.effect`
  (the exact argv or URL). If the catalog has changed by the time of execution so that the same
  parameters would now run something else, execution refuses (Conflict ``plan_changed``): what runs
  is exactly what was approved. Enabling a disabled command, or rewording prechecks, is no change.

Every transition, the proposal included, appends to the hash-chained audit log
(:mod:`warroom.audit`) in the same transaction: actor, ``remediation.<verb>``, the proposal id, the
reason, and the state and approvers before and after.

Locking: each change locks the proposal's row before reading it — ``SELECT … FOR UPDATE`` on
PostgreSQL; on SQLite, which has no row locks, a no-op ``UPDATE`` as the transaction's first
statement takes the database's write lock up front (waiting out the busy timeout) so that a read
never goes stale before the write that depends on it. On PostgreSQL the workflow's transactions
also take one transaction-scoped advisory lock first: the audit log's head-row lock alone lets two
concurrent appends read the same head under READ COMMITTED, and remediation changes are rare
enough to serialise. A transaction that still loses a race inside the database (SQLite "database
is locked", PostgreSQL serialization failures, or an audit append colliding with another stage's)
is retried a few times from the start.
"""

from __future__ import annotations

import builtins
import json
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DBAPIError

from summarize import executors
from summarize.catalog import Action, Catalog, Scalar, approvals_needed
from summarize.executors import ExecutionContext, ExecutionResult
from summarize.model import Remediation
from warroom import audit
from warroom.config import Settings
from warroom.errors import ConfigError, Conflict, Forbidden, InputError, StoreError, WarroomError
from warroom.statedb import StateDB, UTCDateTime

__all__ = [
    "METADATA",
    "PROPOSALS",
    "ROLE_NAMES",
    "SOURCES",
    "SYSTEM_ACTOR",
    "Approval",
    "Approvals",
    "Proposal",
    "Roles",
    "State",
]

log = logging.getLogger("warroom")

T = TypeVar("T")

METADATA = sa.MetaData()
"""The proposals table; the composition root passes this to :func:`warroom.statedb.migrate`."""

PROPOSALS = sa.Table(
    "remediation_proposals",
    METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("incident_id", sa.String(255), nullable=False, index=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON object, normalised by the catalog
    sa.Column("risk", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),  # JSON list of evidence ids
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("plan", sa.Text, nullable=False),  # Action.plan() as shown to approvers
    sa.Column("effect", sa.Text, nullable=False),  # Action.effect(): what execution must still run
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("approvals", sa.Text, nullable=False),  # JSON list of {actor, at, reason}
    sa.Column("decided_by", sa.String(255)),
    sa.Column("decision_reason", sa.Text),
    sa.Column("executed_by", sa.String(255)),
    sa.Column("result", sa.Text),  # JSON ExecutionResult
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # +1 per transition: compare-and-set
)

SOURCES = ("rule", "llm", "manual")
"""Who wrote a proposal: the deterministic digest, an LLM narrative, or a person."""

SYSTEM_ACTOR = "warroom"
"""The audit log's actor for transitions nobody asked for (expiry)."""

_ATTEMPTS = 8
_PG_LOCK_KEY = 0x57524D31  # "WRM1": the advisory lock serialising this workflow's writers
_MAX_NAME = 255


class State(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    QUEUED = "queued"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_OPEN = (State.PROPOSED, State.APPROVED, State.QUEUED)  # the states that expire


@dataclass(frozen=True, slots=True)
class Approval:
    """One approver's vote."""

    actor: str
    at: datetime
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"actor": self.actor, "at": self.at.isoformat(), "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Approval:
        return cls(str(data["actor"]), datetime.fromisoformat(str(data["at"])), str(data.get("reason", "")))


@dataclass(frozen=True, slots=True)
class Proposal:
    """A stored proposal as read (immutable; changes go through :class:`Approvals`)."""

    id: str
    incident_id: str
    action: str
    params: Mapping[str, Scalar]
    risk: str
    text: str
    evidence: tuple[str, ...]
    source: str
    author: str
    state: State
    plan: str
    created_at: datetime
    expires_at: datetime
    approvals: tuple[Approval, ...]
    decided_by: str | None
    decision_reason: str | None
    executed_by: str | None
    result: ExecutionResult | None
    updated_at: datetime
    version: int

    @property
    def approvals_needed(self) -> int:
        return approvals_needed(self.risk)

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(a.actor for a in self.approvals)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "action": self.action,
            "params": dict(self.params),
            "risk": self.risk,
            "text": self.text,
            "evidence": list(self.evidence),
            "source": self.source,
            "author": self.author,
            "state": self.state.value,
            "plan": self.plan,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "approvals": [a.to_json() for a in self.approvals],
            "approvals_needed": self.approvals_needed,
            "decided_by": self.decided_by,
            "decision_reason": self.decision_reason,
            "executed_by": self.executed_by,
            "result": self.result.to_json() if self.result else None,
            "updated_at": self.updated_at.isoformat(),
            "version": self.version,
        }


def _proposal(row: Row[Any]) -> Proposal:
    return Proposal(
        id=row.id,
        incident_id=row.incident_id,
        action=row.action,
        params=json.loads(row.params),
        risk=row.risk,
        text=row.text,
        evidence=tuple(json.loads(row.evidence)),
        source=row.source,
        author=row.author,
        state=State(row.state),
        plan=row.plan,
        created_at=row.created_at,
        expires_at=row.expires_at,
        approvals=tuple(Approval.from_json(a) for a in json.loads(row.approvals)),
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        executed_by=row.executed_by,
        result=ExecutionResult.from_json(json.loads(row.result)) if row.result else None,
        updated_at=row.updated_at,
        version=row.version,
    )


# --- roles --------------------------------------------------------------------------------------

ROLE_NAMES = ("approver", "operator")


@dataclass(frozen=True, slots=True)
class Roles:
    """Who may approve/reject (``approver``) and execute (``operator``; approvers may too)::

    [roles]
    approver = ["alice", "bob"]
    operator = ["carol"]
    """

    approvers: frozenset[str] = frozenset()
    operators: frozenset[str] = frozenset()

    @classmethod
    def load(cls, tables: Mapping[str, Any]) -> Roles:
        raw = tables.get("roles")
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError("roles", "must be a table: role = [names]")
        members: dict[str, frozenset[str]] = {}
        for role, names in raw.items():
            if role not in ROLE_NAMES:
                raise ConfigError(f"roles.{role}", f"unknown role (known: {', '.join(ROLE_NAMES)})")
            if not isinstance(names, list) or not all(
                isinstance(n, str) and n and n == n.strip() and len(n) <= _MAX_NAME for n in names
            ):
                raise ConfigError(f"roles.{role}", f"must be a list of names, not {names!r}")
            members[role] = frozenset(names)
        return cls(members.get("approver", frozenset()), members.get("operator", frozenset()))

    @classmethod
    def from_settings(cls, settings: Settings) -> Roles:
        return cls.load(settings.tables)

    def require_approver(self, actor: str) -> None:
        if actor in self.approvers:
            return
        if not self.approvers:
            raise Forbidden(
                f"{actor} may not approve or reject: nobody holds the approver role yet; grant it in "
                'the config file: [roles] approver = ["<name>", ...]',
                reason="not_approver",
            )
        raise Forbidden(
            f"{actor} may not approve or reject: not in [roles] approver of the config file",
            reason="not_approver",
        )

    def require_operator(self, actor: str) -> None:
        if actor in self.operators or actor in self.approvers:
            return
        raise Forbidden(
            f"{actor} may not execute remediations: add them to [roles] operator (or approver) in "
            "the config file",
            reason="not_operator",
        )


def _name(value: str, what: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > _MAX_NAME or not text.isprintable():
        raise InputError(f"{what} must be a printable name of 1 to {_MAX_NAME} characters, not {value!r}")
    return text


# --- retries ------------------------------------------------------------------------------------


def _transient(exc: StoreError) -> bool:
    """True for a lost race inside the database, which a fresh attempt of the transaction resolves."""
    cause = exc.__cause__
    if not isinstance(cause, DBAPIError):
        return False
    orig = cause.orig
    text = str(orig)
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in text or "busy" in text
    if isinstance(orig, sqlite3.IntegrityError):
        return "audit_log" in text
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):  # serialization failure, deadlock, lock not available
        return True
    return sqlstate == "23505" and "audit_log" in text  # two audit appends took the same seq


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- the workflow -------------------------------------------------------------------------------


class Approvals:
    """The workflow over one state database; thread-safe (each call is its own transaction)."""

    def __init__(
        self,
        db: StateDB,
        catalog: Catalog,
        roles: Roles,
        ttl: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.roles = roles
        self.ttl = ttl
        self.clock = clock

    @classmethod
    def from_settings(
        cls,
        db: StateDB,
        settings: Settings,
        catalog: Catalog | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> Approvals:
        return cls(
            db,
            catalog if catalog is not None else Catalog.from_settings(settings),
            Roles.from_settings(settings),
            timedelta(seconds=settings.proposal_ttl_s),
            clock,
        )

    # -- reading ---------------------------------------------------------------------------------

    def get(self, proposal_id: str) -> Proposal:
        with self.db.begin() as conn:
            row = conn.execute(sa.select(PROPOSALS).where(PROPOSALS.c.id == proposal_id)).first()
        if row is None:
            raise InputError(f"no remediation proposal {proposal_id!r}", reason="not_found")
        return _proposal(row)

    def list(
        self, state: str | None = None, incident: str | None = None, limit: int = 200
    ) -> builtins.list[Proposal]:
        """Proposals, newest first, optionally of one state and/or one incident."""
        query = sa.select(PROPOSALS).order_by(PROPOSALS.c.created_at.desc(), PROPOSALS.c.id).limit(limit)
        if state is not None:
            try:
                query = query.where(PROPOSALS.c.state == State(state).value)
            except ValueError:
                raise InputError(
                    f"unknown state {state!r} (known: {', '.join(s.value for s in State)})"
                ) from None
        if incident is not None:
            query = query.where(PROPOSALS.c.incident_id == incident)
        with self.db.begin() as conn:
            return [_proposal(r) for r in conn.execute(query)]

    def trail(self, proposal_id: str) -> builtins.list[audit.AuditEntry]:
        """The audit log's entries about this proposal, oldest first."""
        return audit.entries(self.db, subject=proposal_id)

    # -- changing --------------------------------------------------------------------------------

    def propose(
        self, incident_id: str, remediation: Remediation, author: str, source: str | None = None
    ) -> Proposal:
        """Store ``remediation`` as a proposal for ``incident_id``; InputError when the catalog
        rejects it (unknown action, bad parameters)."""
        author = _name(author, "author")
        incident_id = _name(incident_id, "incident id")
        source = source or remediation.source
        if source not in SOURCES:
            raise InputError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        action = self.catalog.action(remediation.action)
        params = action.validate(remediation.params)
        plan, effect = action.plan(params), action.effect(params)
        proposal_id = "P-" + uuid.uuid4().hex[:12]

        def work(conn: Connection) -> Proposal:
            now = self.clock()
            conn.execute(
                sa.insert(PROPOSALS).values(
                    id=proposal_id,
                    incident_id=incident_id,
                    action=action.name,
                    params=json.dumps(params),
                    risk=action.risk,
                    text=remediation.text,
                    evidence=json.dumps(list(remediation.evidence)),
                    source=source,
                    author=author,
                    state=State.PROPOSED.value,
                    plan=plan,
                    effect=effect,
                    created_at=now,
                    expires_at=now + self.ttl,
                    approvals="[]",
                    updated_at=now,
                    version=1,
                )
            )
            row = conn.execute(sa.select(PROPOSALS).where(PROPOSALS.c.id == proposal_id)).one()
            after = {
                **_view(row),
                "incident": incident_id,
                "action": action.name,
                "params": params,
                "risk": action.risk,
                "source": source,
            }
            audit.append(
                conn,
                actor=author,
                action="remediation.propose",
                subject=proposal_id,
                reason=remediation.text,
                before=None,
                after=after,
                at=now,
            )
            return _proposal(row)

        return self._transact(work)

    def approve(self, proposal_id: str, actor: str, reason: str = "") -> Proposal:
        """Record ``actor``'s approval; the proposal becomes ``approved`` once enough distinct
        approvers agree (two for high risk)."""
        actor = _name(actor, "actor")
        self.roles.require_approver(actor)

        def work(conn: Connection) -> Proposal:
            row, now = _lock(conn, proposal_id), self.clock()
            expired = self._expire_if_due(conn, row, now)
            if expired is not None:
                return expired
            votes = [Approval.from_json(a) for a in json.loads(row.approvals)]
            if actor == row.author:
                raise Forbidden(
                    f"{actor} proposed {row.id} and cannot approve it; another approver must",
                    reason="self_approval",
                )
            if any(v.actor == actor for v in votes):
                raise Forbidden(f"{actor} has already approved {row.id}", reason="already_approved")
            if row.state != State.PROPOSED:
                raise _state_conflict(row)
            votes.append(Approval(actor, now, reason))
            values: dict[str, Any] = {"approvals": json.dumps([v.to_json() for v in votes])}
            if len(votes) >= approvals_needed(row.risk):
                values.update(state=State.APPROVED.value, decided_by=actor, decision_reason=reason)
            return _transition(conn, row, now, actor, "approve", reason, values)

        return _raise_if_expired(self._transact(work))

    def reject(self, proposal_id: str, actor: str, reason: str) -> Proposal:
        """Turn a proposal down (also after approval, until it runs); a reason is required."""
        actor = _name(actor, "actor")
        if not reason or not reason.strip():
            raise InputError("a rejection needs a reason", reason="reason_required")
        self.roles.require_approver(actor)

        def work(conn: Connection) -> Proposal:
            row, now = _lock(conn, proposal_id), self.clock()
            expired = self._expire_if_due(conn, row, now)
            if expired is not None:
                return expired
            if row.state not in _OPEN:
                raise _state_conflict(row)
            values = {"state": State.REJECTED.value, "decided_by": actor, "decision_reason": reason}
            return _transition(conn, row, now, actor, "reject", reason, values)

        return _raise_if_expired(self._transact(work))

    def execute(self, proposal_id: str, actor: str) -> Proposal:
        """Run an approved proposal exactly once, now; returns it ``succeeded`` or ``failed``.

        Raises before anything runs when the proposal is not approved (Conflict), the actor may
        not execute (Forbidden), the catalog no longer yields the approved plan (Conflict
        ``plan_changed``) or the executor is not usable as configured (ConfigError).
        """
        actor = _name(actor, "actor")
        self.roles.require_operator(actor)

        def claim(conn: Connection) -> tuple[Proposal, Action | None, dict[str, Scalar]]:
            return self._claim(conn, proposal_id, actor, State.APPROVED, State.EXECUTING, "execute")

        return self._run(*self._transact(claim), actor)

    def queue(self, proposal_id: str, actor: str) -> Proposal:
        """Ask the executor service to run an approved proposal; returns it ``queued``.

        The same checks as :meth:`execute` (role, expiry, unchanged plan, usable executor) are made
        now, so a request that would fail fails while its requester is still there. The leader of
        the ``executor`` role (:meth:`run_queued`) runs it soon after, in the requester's name;
        a queued proposal not run by ``expires_at`` expires like an approved one.
        """
        actor = _name(actor, "actor")
        self.roles.require_operator(actor)

        def work(conn: Connection) -> Proposal:
            return self._claim(conn, proposal_id, actor, State.APPROVED, State.QUEUED, "queue")[0]

        return _raise_if_expired(self._transact(work))

    def run_queued(self, limit: int = 10) -> builtins.list[Proposal]:
        """Run up to ``limit`` queued proposals, oldest request first; returns them finished.

        Each is claimed by compare-and-set (``queued`` → ``executing``) before it runs, so two
        executors — a leader and one that lost its lock a moment ago — never run the same one.
        """
        with self.db.begin() as conn:
            ids = builtins.list(
                conn.execute(
                    sa.select(PROPOSALS.c.id)
                    .where(PROPOSALS.c.state == State.QUEUED.value)
                    .order_by(PROPOSALS.c.updated_at, PROPOSALS.c.id)
                    .limit(limit)
                ).scalars()
            )
        done = [self._run_queued_one(pid) for pid in ids]
        return [p for p in done if p is not None]

    def _run_queued_one(self, proposal_id: str) -> Proposal | None:
        def claim(conn: Connection) -> tuple[Proposal, Action | None, dict[str, Scalar]]:
            requester = _lock(conn, proposal_id).executed_by
            self.roles.require_operator(requester)  # still allowed to, now that it runs
            return self._claim(conn, proposal_id, requester, State.QUEUED, State.EXECUTING, "execute")

        def refuse(conn: Connection) -> Proposal:
            result = ExecutionResult(False, "", f"not run: {problem}")
            return _record_result(conn, _lock(conn, proposal_id), self.clock(), SYSTEM_ACTOR, result)

        try:
            proposal, action, params = self._transact(claim)
        except StoreError:
            raise
        except WarroomError as exc:
            if isinstance(exc, Conflict) and exc.reason != "plan_changed":
                # taken by another executor, or changed meanwhile: nothing of ours to run
                log.info("queued remediation not run", extra={"proposal": proposal_id, "reason": exc.reason})
                return None
            problem = exc  # the plan, the executor or the requester's role no longer holds
            return self._transact(refuse)
        if action is None:  # expired while queued (recorded by the claim)
            return proposal
        return self._run(proposal, action, params, proposal.executed_by or SYSTEM_ACTOR)

    def _claim(
        self, conn: Connection, proposal_id: str, actor: str, source: State, target: State, verb: str
    ) -> tuple[Proposal, Action | None, dict[str, Scalar]]:
        """Move a ``source`` proposal to ``target`` after every check; the action to run with it
        (None when the proposal turned out expired: that is recorded and returned instead)."""
        row, now = _lock(conn, proposal_id), self.clock()
        expired = self._expire_if_due(conn, row, now)
        if expired is not None:
            return expired, None, {}
        if row.state != source:
            raise _state_conflict(row)
        action = self.catalog.action(row.action)
        params = action.validate(json.loads(row.params))
        if action.effect(params) != row.effect:
            raise Conflict(
                f"the catalog's {row.action} changed since {row.id} was approved, so it would no "
                "longer run what was approved; propose it again",
                reason="plan_changed",
            )
        executors.preflight(action)
        values = {"state": target.value, "executed_by": actor}
        return _transition(conn, row, now, actor, verb, "", values), action, params

    def _run(
        self, proposal: Proposal, action: Action | None, params: dict[str, Scalar], actor: str
    ) -> Proposal:
        """Run a claimed (``executing``) proposal outside any transaction and record the outcome."""
        _raise_if_expired(proposal)
        assert action is not None
        context = ExecutionContext(proposal.id, proposal.incident_id, actor, proposal.approvers, self.clock())
        try:
            result = executors.execute(action, params, context)
        except Exception as exc:  # a bug in an executor must still end the run as failed
            log.exception("remediation executor crashed", extra={"proposal": proposal.id})
            result = ExecutionResult(False, "", f"executor crashed: {type(exc).__name__}: {exc}")

        def finish(conn: Connection) -> Proposal:
            row = _lock(conn, proposal.id)
            if row.state != State.EXECUTING or row.version != proposal.version:
                raise Conflict(f"{row.id} changed while it was executing (now {row.state})")
            return _record_result(conn, row, self.clock(), actor, result)

        return self._transact(finish)

    def expire_due(self, now: datetime | None = None) -> builtins.list[Proposal]:
        """Expire every open proposal past its ``expires_at``; returns them."""
        at = now or self.clock()

        def work(conn: Connection) -> builtins.list[Proposal]:
            due = conn.execute(
                sa.select(PROPOSALS.c.id)
                .where(PROPOSALS.c.state.in_([s.value for s in _OPEN]), PROPOSALS.c.expires_at <= at)
                .order_by(PROPOSALS.c.id)
            ).scalars()
            out = []
            for proposal_id in builtins.list(due):
                expired = self._expire_if_due(conn, _lock(conn, proposal_id), at)
                if expired is not None:
                    out.append(expired)
            return out

        return self._transact(work)

    # -- internals -------------------------------------------------------------------------------

    def _expire_if_due(self, conn: Connection, row: Row[Any], now: datetime) -> Proposal | None:
        if row.state not in _OPEN or now < row.expires_at:
            return None
        waiting_for = "approved" if row.state == State.PROPOSED else "executed"
        reason = f"not {waiting_for} by {row.expires_at.isoformat()} (ttl {int(self.ttl.total_seconds())}s)"
        values = {"state": State.EXPIRED.value}
        return _transition(conn, row, now, SYSTEM_ACTOR, "expire", reason, values)

    def _transact(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a transaction, again from the start when it lost a race in the database."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self.db.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
                    return work(conn)
            except StoreError as exc:
                if attempt == _ATTEMPTS or not _transient(exc):
                    raise
                log.debug("state database busy, retrying", extra={"attempt": attempt, "error": str(exc)})
            time.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")


def _lock(conn: Connection, proposal_id: str) -> Row[Any]:
    """The proposal's row, locked until the transaction ends (see the module doc)."""
    if conn.dialect.name == "sqlite":
        conn.execute(
            sa.update(PROPOSALS).where(PROPOSALS.c.id == proposal_id).values(version=PROPOSALS.c.version)
        )
    row = conn.execute(sa.select(PROPOSALS).where(PROPOSALS.c.id == proposal_id).with_for_update()).first()
    if row is None:
        raise InputError(f"no remediation proposal {proposal_id!r}", reason="not_found")
    return row


def _view(row: Row[Any]) -> dict[str, Any]:
    """What the audit log records before and after a transition."""
    return {"state": row.state, "approvals": [a["actor"] for a in json.loads(row.approvals)]}


def _transition(
    conn: Connection,
    row: Row[Any],
    now: datetime,
    actor: str,
    verb: str,
    reason: str,
    values: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Proposal:
    """Compare-and-set ``row`` to ``values`` and audit it; Conflict if it changed meanwhile."""
    changed = conn.execute(
        sa.update(PROPOSALS)
        .where(
            PROPOSALS.c.id == row.id,
            PROPOSALS.c.state == row.state,
            PROPOSALS.c.version == row.version,
        )
        .values(**values, updated_at=now, version=row.version + 1)
    ).rowcount
    if changed != 1:
        raise Conflict(f"{row.id} was changed by someone else at the same time; try again", reason="raced")
    new = conn.execute(sa.select(PROPOSALS).where(PROPOSALS.c.id == row.id)).one()
    audit.append(
        conn,
        actor=actor,
        action=f"remediation.{verb}",
        subject=row.id,
        reason=reason,
        before=_view(row),
        after={**_view(new), **(extra or {})},
        at=now,
    )
    return _proposal(new)


def _record_result(
    conn: Connection, row: Row[Any], now: datetime, actor: str, result: ExecutionResult
) -> Proposal:
    """End ``row`` ``succeeded`` or ``failed`` with ``result``, audited (a run, or a refusal to run)."""
    state = State.SUCCEEDED if result.ok else State.FAILED
    values = {"state": state.value, "result": json.dumps(result.to_json())}
    extra = {"ok": result.ok, "detail": result.detail}
    return _transition(conn, row, now, actor, state.value, result.detail, values, extra)


def _raise_if_expired(proposal: Proposal) -> Proposal:
    """The expiry was committed by the transaction that noticed it; now refuse the request."""
    if proposal.state == State.EXPIRED:
        raise Conflict(
            f"{proposal.id} expired at {proposal.expires_at.isoformat()}; propose it again",
            reason="expired",
        )
    return proposal


def _state_conflict(row: Row[Any]) -> Conflict:
    state, pid = State(row.state), row.id
    if state == State.PROPOSED:
        have = len(json.loads(row.approvals))
        need = approvals_needed(row.risk)
        return Conflict(f"{pid} is not approved yet ({have} of {need} approvals)", reason="not_approved")
    if state == State.APPROVED:
        return Conflict(f"{pid} is already approved (by {row.decided_by})", reason="already_approved")
    if state == State.REJECTED:
        return Conflict(f"{pid} was rejected by {row.decided_by}: {row.decision_reason}", reason="rejected")
    if state == State.EXPIRED:
        return Conflict(f"{pid} expired at {row.expires_at.isoformat()}; propose it again", reason="expired")
    if state == State.QUEUED:
        return Conflict(
            f"{pid} is already queued for execution (by {row.executed_by})", reason="already_queued"
        )
    if state == State.EXECUTING:
        return Conflict(
            f"{pid} is being executed by {row.executed_by} (if that run died, it stays executing: "
            "check the target by hand and propose again)",
            reason="already_executing",
        )
    return Conflict(
        f"{pid} was already executed by {row.executed_by}: {state.value}", reason="already_executed"
    )
