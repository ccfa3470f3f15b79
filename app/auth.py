"""API users, their tokens and roles: who may read, respond, approve or administer.

A token is shown once, when it is made (``warroom users add NAME --role approver``); the state
database keeps only its SHA-256, so a copy of the database does not leak credentials. A token is
high-entropy random (256 bits), so a plain hash is enough: there is nothing to brute-force.

Roles are ordered — ``viewer`` < ``responder`` < ``approver`` < ``admin`` — and a route asks for
the least role it needs (:func:`allows`). The approval workflow's own rules (no self-approval, two
approvers for high risk) still apply on top: :func:`approval_roles` tells it who holds which role.
Every change to users is appended to the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from summarize.approval import Roles
from warroom import audit
from warroom.errors import Conflict, InputError
from warroom.statedb import StateDB, UTCDateTime

__all__ = [
    "METADATA",
    "ROLES",
    "User",
    "add_user",
    "allows",
    "approval_roles",
    "authenticate",
    "get_user",
    "revoke",
    "rotate",
    "users",
]

ROLES = ("viewer", "responder", "approver", "admin")
"""Least to most privileged: each role may do everything the ones before it may."""

TOKEN_PREFIX = "wr_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

METADATA = sa.MetaData()
USERS = sa.Table(
    "api_users",
    METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("token_hint", sa.String(16), nullable=False),  # the first characters, to tell tokens apart
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    token_hint: str = ""
    created_at: datetime | None = None
    revoked: bool = False

    def allows(self, role: str) -> bool:
        return not self.revoked and allows(self.role, role)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "token_hint": self.token_hint,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "revoked": self.revoked,
        }


def allows(held: str, needed: str) -> bool:
    """Whether a user holding ``held`` may do what needs ``needed``."""
    return ROLES.index(held) >= ROLES.index(needed)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _check(name: str, role: str) -> None:
    if not _NAME.fullmatch(name):
        raise InputError(
            f"invalid user name {name!r}: letters, digits and . _ @ - only, up to 64", reason="invalid_name"
        )
    if role not in ROLES:
        raise InputError(f"unknown role {role!r} (known: {', '.join(ROLES)})", reason="invalid_role")


def add_user(db: StateDB, name: str, role: str, actor: str) -> str:
    """Create ``name`` with ``role``; returns the token (the only time it is shown)."""
    _check(name, role)
    token = _new_token()
    now = datetime.now(UTC)
    with db.begin() as conn:
        if conn.execute(sa.select(USERS.c.name).where(USERS.c.name == name)).first() is not None:
            raise Conflict(f"user {name!r} exists; `warroom users token {name}` makes a new token")
        conn.execute(
            sa.insert(USERS).values(
                name=name,
                role=role,
                token_sha256=_digest(token),
                token_hint=token[:8],
                created_at=now,
                created_by=actor,
                revoked_at=None,
            )
        )
        audit.append(
            conn, actor=actor, action="user.add", subject=f"user:{name}", after={"role": role}, at=now
        )
    return token


def rotate(db: StateDB, name: str, actor: str, role: str | None = None) -> str:
    """A new token (and optionally a new role) for ``name``; the old token stops working."""
    if role is not None:
        _check(name, role)
    token = _new_token()
    with db.begin() as conn:
        row = conn.execute(sa.select(USERS).where(USERS.c.name == name)).first()
        if row is None:
            raise InputError(f"no user {name!r}", reason="unknown_user")
        values = {"token_sha256": _digest(token), "token_hint": token[:8], "revoked_at": None}
        if role is not None:
            values["role"] = role
        conn.execute(sa.update(USERS).where(USERS.c.name == name).values(**values))
        audit.append(
            conn,
            actor=actor,
            action="user.token",
            subject=f"user:{name}",
            before={"role": row.role, "revoked": row.revoked_at is not None},
            after={"role": role or row.role, "revoked": False},
        )
    return token


def revoke(db: StateDB, name: str, actor: str) -> None:
    with db.begin() as conn:
        row = conn.execute(sa.select(USERS).where(USERS.c.name == name)).first()
        if row is None:
            raise InputError(f"no user {name!r}", reason="unknown_user")
        conn.execute(sa.update(USERS).where(USERS.c.name == name).values(revoked_at=datetime.now(UTC)))
        audit.append(
            conn, actor=actor, action="user.revoke", subject=f"user:{name}", before={"role": row.role}
        )


def users(db: StateDB) -> list[User]:
    with db.begin() as conn:
        rows = conn.execute(sa.select(USERS).order_by(USERS.c.name)).all()
    return [User(r.name, r.role, r.token_hint, r.created_at, r.revoked_at is not None) for r in rows]


def get_user(db: StateDB, name: str) -> User:
    """The user ``name`` (revoked or not); InputError ``unknown_user`` when there is none."""
    with db.begin() as conn:
        r = conn.execute(sa.select(USERS).where(USERS.c.name == name)).first()
    if r is None:
        raise InputError(f"no user {name!r}", reason="unknown_user")
    return User(r.name, r.role, r.token_hint, r.created_at, r.revoked_at is not None)


def authenticate(db: StateDB, token: str) -> User | None:
    """The user holding ``token``, or None (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    digest = _digest(token)
    with db.begin() as conn:
        row = conn.execute(sa.select(USERS).where(USERS.c.token_sha256 == digest)).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_sha256, digest):
        return None
    return User(row.name, row.role, row.token_hint, row.created_at)


def approval_roles(db: StateDB, configured: Roles) -> Roles:
    """The approval workflow's roles: the config file's ``[roles]`` plus the API users — approvers
    and admins approve; they and responders may execute what was approved."""
    active = [u for u in users(db) if not u.revoked]
    approvers = {u.name for u in active if allows(u.role, "approver")}
    operators = {u.name for u in active if allows(u.role, "responder")}
    return Roles(configured.approvers | approvers, configured.operators | operators)
