"""What every CLI command group reads from click's context: the settings loaded once by the root
command, and who is acting (for the audit log). Its own module so the command groups kept in
their own files (remediation, users) and the root CLI share one definition without importing
each other."""

from __future__ import annotations

import getpass

import click

from warroom.config import Settings

__all__ = ["ACTOR_OPTION", "actor_of", "settings_of"]

ACTOR_OPTION = click.option(
    "--actor", default=None, help="Who does this (default: WARROOM_ACTOR, else the login name)."
)


def settings_of(ctx: click.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def actor_of(ctx: click.Context, given: str | None) -> str:
    """``--actor`` when given, else the ``actor`` setting, else the login name."""
    return given or settings_of(ctx).actor or getpass.getuser()
