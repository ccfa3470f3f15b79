"""Who is calling and what they may do: the FastAPI dependencies every ``/api/v1`` route states.

A route names the least role it needs in its signature — ``user: Responder`` — so it cannot run
without the check, and the check runs before the route touches anything:

1. :func:`current_user`: ``Authorization: Bearer <token>`` → :class:`~app.auth.User`. No token, an
   unknown one or a revoked one is 401 with ``WWW-Authenticate: Bearer`` (RFC 6750); unknown and
   revoked get the same answer, so a caller cannot probe which tokens once existed.
2. :func:`require`: the user's role is at least the route's (``viewer`` < ``responder`` <
   ``approver`` < ``admin``), else 403 ``{"error": "... needs role approver", "reason": "forbidden"}``.

What the workflows refuse on top (self-approval, a second vote) is theirs to raise, as Forbidden or
Conflict, from the same call. The user's name is the actor every change records.

Order: FastAPI parses a JSON body before it resolves dependencies, so a body that is not JSON is a
400 even without a token; everything else (validation included) is refused only after the token
and the role pass, so a caller without the role learns nothing about what exists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.context import ApiContext
from app.api.errors import Unauthorized
from app.auth import ROLES, User
from warroom.errors import Forbidden, InputError
from warroom.timeparse import parse_duration, parse_time

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PAGE",
    "Admin",
    "Approver",
    "Ctx",
    "Responder",
    "Viewer",
    "context",
    "current_user",
    "parse_since",
    "parse_until",
    "require",
]

MAX_BODY_BYTES = 64 * 1024
"""Largest body a command route reads (its JSON is a few ids); more is 413 before it is parsed."""

MAX_PAGE = 1000
"""Most items one list request returns (``limit`` is bounded by it)."""

_bearer = HTTPBearer(
    auto_error=False,  # our own 401 body and challenge instead of FastAPI's
    scheme_name="token",
    description="An API token from `warroom users add NAME --role ROLE` (or POST /api/v1/users).",
)


def context(request: Request) -> ApiContext:
    """The :class:`ApiContext` that :func:`app.api.server.create_app` stored on the application."""
    ctx = request.app.state.warroom
    assert isinstance(ctx, ApiContext)
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]


def current_user(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> User:
    """The token's user (a sync dependency: FastAPI runs its state-DB lookup in the thread pool)."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized(
            "missing API token: send `Authorization: Bearer <token>` (`warroom users add` makes one)",
            reason="missing_token",
        )
    user = ctx.authenticate(credentials.credentials)
    if user is None:
        raise Unauthorized("invalid or revoked API token", reason="invalid_token")
    return user


def require(role: str) -> Callable[..., User]:
    """A dependency that yields the caller when their role is at least ``role``, else 403."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")

    def dependency(request: Request, user: Annotated[User, Depends(current_user)]) -> User:
        if not user.allows(role):
            route = getattr(request.scope.get("route"), "path", request.url.path)  # the template, no ids
            raise Forbidden(
                f"{user.name} has role {user.role}; {request.method} {route} needs role {role}",
                reason="forbidden",
            )
        return user

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[User, Depends(require("viewer"))]
Responder = Annotated[User, Depends(require("responder"))]
Approver = Annotated[User, Depends(require("approver"))]
Admin = Annotated[User, Depends(require("admin"))]


# --- time parameters ------------------------------------------------------------------------------


def parse_since(text: str, now: datetime, name: str = "since") -> datetime:
    """A look-back (``24h``, ``90m``, ``7d``) or a time (``now-2h``, ISO-8601); 422 naming ``name``."""
    try:
        return now - parse_duration(text)
    except (InputError, OverflowError):
        pass
    try:
        return parse_time(text, now)
    except (InputError, OverflowError):  # OverflowError: "99999999d" reaches past year 1
        raise InputError(
            f"{name}: {text[:64]!r} is neither a duration (24h, 90m, 7d) nor a time (ISO-8601, now-2h)",
            reason="invalid_time",
        ) from None


def parse_until(text: str, now: datetime, name: str = "until") -> datetime:
    """A time: ``now``, ``now-2h`` or ISO-8601; 422 naming ``name``."""
    try:
        return parse_time(text, now)
    except (InputError, OverflowError):
        raise InputError(
            f"{name}: {text[:64]!r} is not a time (ISO-8601, now, now-2h)", reason="invalid_time"
        ) from None
