"""``warroom users`` in-process (click's runner, own WARROOM_HOME): the token is printed once and
alone on stdout, every change is audited with ``--actor``, and mistakes are one line with the error
tree's exit code."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app import auth, wiring
from app.cli import cli
from app.users_cli import ROLE_NAMES
from warroom import audit
from warroom.config import load_settings
from warroom.statedb import StateDB


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """The CLI points warroom's log handler at the runner's stderr, which closes after each run."""
    logger = logging.getLogger("warroom")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def run(home: Path, *args: str, actor: str | None = "ops") -> Result:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("WARROOM_")}
    env["WARROOM_HOME"] = str(home)
    if actor is not None:
        env["WARROOM_ACTOR"] = actor
    return CliRunner().invoke(cli, ["users", *args], env=env)


def state(home: Path) -> StateDB:
    return wiring.state_db(load_settings(env={}, home=str(home)))


def test_add_prints_the_token_once_on_stdout(home: Path) -> None:
    result = run(home, "add", "alertmanager", "--role", "responder")
    assert result.exit_code == 0, result.output
    (token,) = result.stdout.split()
    assert token.startswith("wr_")
    assert "will not be shown again" in result.stderr and token not in result.stderr
    user = auth.authenticate(state(home), token)
    assert user is not None and (user.name, user.role) == ("alertmanager", "responder")

    listed = run(home, "list")
    assert listed.exit_code == 0 and "alertmanager" in listed.stdout and "responder" in listed.stdout
    assert token not in listed.stdout and token[:8] in listed.stdout
    as_json = [json.loads(line) for line in run(home, "list", "--json").stdout.splitlines()]
    assert as_json == [{**as_json[0], "name": "alertmanager", "role": "responder", "revoked": False}]


def test_rotate_and_revoke_are_audited_with_the_actor(home: Path) -> None:
    old = run(home, "add", "bob", "--role", "viewer").stdout.strip()
    rotated = run(home, "token", "bob", "--role", "approver", "--actor", "carol")
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip()
    db = state(home)
    assert auth.authenticate(db, old) is None and auth.get_user(db, "bob").role == "approver"
    revoked = run(home, "revoke", "bob", actor=None)  # default actor: the login name
    assert revoked.exit_code == 0 and revoked.stdout.strip() == "revoked bob"
    assert auth.authenticate(db, new) is None
    actors = [(e.actor, e.action) for e in audit.entries(db, subject="user:bob")]
    assert actors[:2] == [("ops", "user.add"), ("carol", "user.token")]
    assert actors[2][1] == "user.revoke" and actors[2][0] not in ("", "ops", "carol")
    assert "revoked" in run(home, "list").stdout


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["add", "dup", "--role", "viewer"], 7, "exists"),
        (["add", "bad name", "--role", "viewer"], 3, "invalid user name"),
        (["revoke", "nobody"], 3, "no user 'nobody'"),
        (["token", "nobody"], 3, "no user 'nobody'"),
    ],
)
def test_mistakes_are_one_line_and_an_exit_code(home: Path, args: list[str], code: int, text: str) -> None:
    assert run(home, "add", "dup", "--role", "viewer").exit_code == 0
    result = run(home, *args)
    assert result.exit_code == code, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and text in line


def test_role_choices_match_auth_and_help_lists_the_commands(home: Path) -> None:
    assert ROLE_NAMES == auth.ROLES
    bad = run(home, "add", "x", "--role", "root")
    assert bad.exit_code == 2 and "'root' is not one of" in bad.stderr
    helped = CliRunner().invoke(cli, ["users", "--help"])
    assert helped.exit_code == 0
    assert all(command in helped.output for command in ("add", "list", "token", "revoke"))
