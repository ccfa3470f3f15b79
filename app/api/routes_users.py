"""``/api/v1/users``: API users and their tokens, for admins (the HTTP twin of ``warroom users``).

A token is in the answer that makes it (create, rotate) and nowhere else: the state database keeps
only its hash. Every change is in the audit log with the admin as the actor (:mod:`app.auth`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from app import auth
from app.api.deps import Admin, Ctx

__all__ = ["NewUser", "Rotation", "router"]

router = APIRouter(prefix="/api/v1/users", tags=["users"])

Role = Literal["viewer", "responder", "approver", "admin"]

_ONCE = "store this token now: it is not shown again"


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, description="Letters, digits and . _ @ -")
    role: Role


class Rotation(BaseModel):
    """A new token, optionally with a new role; the old token stops working."""

    model_config = ConfigDict(extra="forbid")
    role: Role | None = None


@router.get("")
def list_users(ctx: Ctx, _admin: Admin) -> dict[str, Any]:
    """Every user with role, token hint (its first characters) and whether it is revoked."""
    return {"users": [u.to_json() for u in auth.users(ctx.state)]}


@router.post("", status_code=201)
def add_user(body: NewUser, ctx: Ctx, admin: Admin) -> dict[str, Any]:
    """Create a user; the answer holds its token, the only time it is shown. 409 if the name exists."""
    token = auth.add_user(ctx.state, body.name, body.role, admin.name)
    return {"user": auth.get_user(ctx.state, body.name).to_json(), "token": token, "note": _ONCE}


@router.post("/{name}/token")
def rotate_token(
    name: str, ctx: Ctx, admin: Admin, body: Annotated[Rotation | None, Body()] = None
) -> dict[str, Any]:
    """A new token for ``name`` (and a new role if given); also re-activates a revoked user."""
    token = auth.rotate(ctx.state, name, admin.name, (body or Rotation()).role)
    return {"user": auth.get_user(ctx.state, name).to_json(), "token": token, "note": _ONCE}


@router.post("/{name}/revoke")
def revoke_user(name: str, ctx: Ctx, admin: Admin) -> dict[str, Any]:
    """Revoke ``name``'s token at once (its next request is 401)."""
    auth.revoke(ctx.state, name, admin.name)
    return {"user": auth.get_user(ctx.state, name).to_json()}
