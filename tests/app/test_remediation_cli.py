"""``warroom remediation`` end to end, as a person uses it: subprocesses of the real entry point with
their own WARROOM_HOME and a config file holding ``[roles]`` and an ``[actions.x]`` override."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from app.remediation_cli import STATES
from summarize.approval import State
from tests.conftest import run_warroom

APPEND = """
import sys
with open(sys.argv[1], "a") as fh:
    fh.write(" ".join(sys.argv[2:]) + "\\n")
print("restarted", sys.argv[2])
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The state database is the default SQLite file under WARROOM_HOME; the workflow itself runs on
    SQLite and PostgreSQL in tests/summarize/test_approval.py (each subprocess costs a second)."""
    script = tmp_path / "restart.py"
    script.write_text(APPEND)
    argv = [sys.executable, str(script), str(tmp_path / "ran.txt"), "{service}", "{namespace}"]
    config = tmp_path / "warroom.toml"
    config.write_text(
        f"""
[roles]
approver = ["alice", "bob"]
operator = ["carol"]

[actions.restart_service.executor]
kind = "command"
argv = {json.dumps(argv)}
enabled = true
timeout_s = 20
"""
    )
    values = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
    values.update(
        {
            "WARROOM_HOME": str(tmp_path / "home"),
            "WARROOM_CONFIG": str(config),
            "WARROOM_ACTOR": "alice",  # the default --actor
        }
    )
    return values


def _ok(args: list[str], env: dict[str, str]) -> str:
    out = run_warroom(["remediation", *args], env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _refused(args: list[str], env: dict[str, str], code: int, text: str) -> None:
    out = run_warroom(["remediation", *args], env, timeout=60)
    assert out.returncode == code, (out.stdout, out.stderr)
    (line,) = out.stderr.splitlines()  # one line, no traceback
    assert line.startswith("error: ") and text in line, line


def test_propose_approve_execute_show(env: dict[str, str], tmp_path: Path) -> None:
    catalog = {a["name"]: a for a in json.loads(_ok(["catalog", "--json"], env))}
    assert catalog["restart_service"]["executor"]["kind"] == "command"
    assert catalog["failover_database"]["risk"] == "high"

    _refused(
        ["propose", "inc-7", "restart_service", "-p", "service=checkout; rm -rf /", "-p", "namespace=$(id)"]
        + ["--reason", "x"],
        env,
        3,
        "parameter 'service' must match",
    )
    proposal = json.loads(
        _ok(
            ["propose", "inc-7", "restart_service", "-p", "service=checkout", "-p", "namespace=prod"]
            + ["--reason", "memory leak since 09:00", "-e", "E3", "--json"],
            env,
        )
    )
    pid = proposal["id"]
    assert proposal["author"] == "alice" and proposal["source"] == "manual" and proposal["evidence"] == ["E3"]

    _refused(["approve", pid], env, 6, "cannot approve it")  # alice proposed it
    _refused(["approve", pid, "--actor", "mallory"], env, 6, "may not approve")
    _refused(["execute", pid, "--actor", "carol"], env, 7, "not approved yet")
    assert "approved by bob" in _ok(["approve", pid, "--actor", "bob", "--reason", "heap graph agrees"], env)
    assert (tmp_path / "ran.txt").exists() is False
    done = _ok(["execute", pid, "--actor", "carol"], env)
    assert f"{pid} succeeded: exit 0" in done and "| restarted checkout" in done
    assert (tmp_path / "ran.txt").read_text() == "checkout prod\n"
    _refused(["execute", pid, "--actor", "carol"], env, 7, "already executed")

    show = _ok(["show", pid], env)
    assert f"{pid}  succeeded  risk=medium  incident=inc-7" in show
    assert "  bob at " in show and "heap graph agrees" in show
    assert '"checkout", "prod"]' in show and "prechecks (the approver verifies" in show
    trail = [line.split()[2:4] for line in show.splitlines() if line.startswith("  #")]
    assert trail == [
        ["alice", "remediation.propose"],
        ["bob", "remediation.approve"],
        ["carol", "remediation.execute"],
        ["carol", "remediation.succeeded"],
    ]
    shown = json.loads(_ok(["show", pid, "--json"], env))
    assert [e["action"] for e in shown["audit"]][-1] == "remediation.succeeded"
    assert shown["result"]["ok"] is True and shown["approvals"][0]["actor"] == "bob"

    listed = _ok(["list", "--state", "succeeded", "--incident", "inc-7"], env)
    assert listed.startswith(pid) and "restart_service service=checkout namespace=prod" in listed
    assert _ok(["list", "--state", "proposed"], env) == ""
    verify = run_warroom(["audit", "verify"], env)
    assert verify.returncode == 0 and "4 entries" in verify.stdout


def test_state_choices_match_the_workflow() -> None:
    assert STATES == tuple(s.value for s in State)
