"""``warroom users``: the API's users, their roles and tokens, on the command line.

``add`` and ``token`` print the new token once — alone on stdout, so ``TOKEN=$(warroom users add
…)`` captures it — and say on stderr that it will not be shown again: the state database keeps
only its hash. Every change is in the audit log with ``--actor`` (default: the ``WARROOM_ACTOR``
setting, else the login name) as the actor. Roles: viewer < responder < approver < admin.

This module does not import :mod:`app.cli` (which registers it), so either may be imported first.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from app.cli_context import ACTOR_OPTION, actor_of, settings_of

if TYPE_CHECKING:  # imported where used: `warroom --help` should not pay for SQLAlchemy
    from warroom.statedb import StateDB

__all__ = ["ROLE_NAMES", "users"]

ROLE_NAMES = ("viewer", "responder", "approver", "admin")
""":data:`app.auth.ROLES`, spelled out so ``--help`` needs no database modules (a test keeps them equal)."""

_ROLE = click.Choice(ROLE_NAMES)
_ACTOR = ACTOR_OPTION
_ONCE = "This token will not be shown again: store it now (e.g. in Alertmanager's http_config)."


def _db(ctx: click.Context) -> StateDB:
    from app import wiring

    return wiring.state_db(settings_of(ctx))


def _show_token(token: str, what: str) -> None:
    click.echo(what, err=True)
    click.echo(token)
    click.echo(_ONCE, err=True)


@click.group("users")
def users() -> None:
    """API users and tokens: add, list, rotate a token, revoke (roles viewer < responder < approver
    < admin)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=_ROLE, required=True, help="What the user may do.")
@_ACTOR
@click.pass_context
def add_cmd(ctx: click.Context, name: str, role: str, actor: str | None) -> None:
    """Create user NAME with --role; prints its API token once."""
    from app import auth

    token = auth.add_user(_db(ctx), name, role, actor_of(ctx, actor))
    _show_token(token, f"created {name} ({role}); API token:")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_ACTOR
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool, actor: str | None) -> None:
    """Every user: role, token hint (its first characters), created, revoked."""
    from app import auth

    for user in auth.users(_db(ctx)):
        if as_json:
            click.echo(json.dumps(user.to_json()))
            continue
        created = f"{user.created_at:%Y-%m-%d %H:%M}" if user.created_at else "-"
        state = "revoked" if user.revoked else "active"
        click.echo(f"{user.name:<24} {user.role:<10} {state:<8} {user.token_hint}…  created {created}")


@users.command("token")
@click.argument("name")
@click.option("--role", type=_ROLE, default=None, help="Also change the role.")
@_ACTOR
@click.pass_context
def token_cmd(ctx: click.Context, name: str, role: str | None, actor: str | None) -> None:
    """Give NAME a new token (the old one stops working; a revoked user is active again)."""
    from app import auth

    token = auth.rotate(_db(ctx), name, actor_of(ctx, actor), role)
    _show_token(token, f"new API token for {name}" + (f" (now {role})" if role else "") + ":")


@users.command("revoke")
@click.argument("name")
@_ACTOR
@click.pass_context
def revoke_cmd(ctx: click.Context, name: str, actor: str | None) -> None:
    """Revoke NAME's token at once (`warroom users token NAME` issues a new one)."""
    from app import auth

    auth.revoke(_db(ctx), name, actor_of(ctx, actor))
    click.echo(f"revoked {name}")
