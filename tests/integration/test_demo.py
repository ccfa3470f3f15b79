"""`make demo` is the first thing a new user runs: it completes, shows detection, correlation and
the incident summaries, leaves its incidents and proposals where `warroom incidents list`,
`warroom remediation list` and the console look, prints a viewer's and an approver's token, and
runs again in the same home — through the local broker this time (a fresh broker reuses offsets;
the demo must not trip over its own exactly-once ledger or ClickHouse's insert deduplication).

Serving: the console comes up on the URL it prints and SIGTERM ends it with exit 0. A state
database that is not the home's own file is emptied only when asked to.

Demo runs are the expensive part (about a minute each): three in all.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from app import auth, demo, wiring
from correlate.store import INCIDENTS
from summarize.approval import Approvals
from summarize.model import Remediation
from tests.conftest import WARROOM, run_warroom
from tests.correlate.test_serve import free_port
from warroom.audit import verify
from warroom.config import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = re.compile(r"^\s+(viewer|approver)\s+role (viewer|approver)\s+(wr_\S+)$", re.MULTILINE)


def _env(tmp_path: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
    values["WARROOM_HOME"] = str(tmp_path / "home")
    return values


def _json_lines(args: list[str], env: dict[str, str]) -> list[dict[str, object]]:
    done = run_warroom([*args, "--json"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_demo_runs_twice_in_one_home_from_files_then_through_kafka(tmp_path: Path) -> None:
    env = _env(tmp_path)
    seen_tokens: set[str] = set()
    for run, flags in enumerate((["--no-serve"], ["--no-serve", "--kafka"])):
        done = run_warroom(["demo", "--duration", "2h", "--rate", "1.5", *flags], env, timeout=400)
        assert done.returncode == 0, (run, done.stderr[-3000:])
        out = done.stdout
        for step in (
            "[1/8] generating scenario 'bad_deploy'",
            "[4/8] what landed in ClickHouse",
            "[5/8] warroom detect run",
            "[6/8] warroom correlate run",
            "[7/8] warroom summarize",
            "[8/8] the console",
        ):
            assert step in out, (step, out[-3000:])
        assert ("local broker on" in out) == (run == 1), out[:2000]
        assert "dead letters                               0" in out
        assert "root cause checkout" in out, out[-3000:]  # the bad deploy's service
        assert "checkout: bad deploy" in out, out[-3000:]  # the digest names service and kind
        assert "proposed rollback_deployment" in out, out[-3000:]
        assert re.search(r"pipeline finished in \d+ s", out), out[-3000:]
        assert "not serving (--no-serve)" in out
        digest = tmp_path / "home" / "demo" / "summaries" / "digest.html"
        assert f"SRE digest of the period: {digest}" in out and digest.stat().st_size > 1000

        tokens = {name: token for name, _role, token in TOKEN.findall(out)}
        assert set(tokens) == {"viewer", "approver"}, out[-1000:]
        assert not seen_tokens & set(tokens.values())  # a second run rotates them
        seen_tokens |= set(tokens.values())

        # The same home's default state database holds exactly this run's incidents and proposals.
        incidents = _json_lines(["incidents", "list"], env)
        printed = set(re.findall(r"\b(inc-[0-9a-f]{16})\b", out))
        assert incidents and {i["id"] for i in incidents} == printed
        proposals = _json_lines(["remediation", "list"], env)
        assert {p["incident_id"] for p in proposals} <= printed
        assert "rollback_deployment" in {p["action"] for p in proposals}
    state = wiring.state_db(load_settings(env={}, home=str(tmp_path / "home")))
    users = {u.name: u.role for u in auth.users(state)}
    assert users == {"viewer": "viewer", "approver": "approver"}
    assert auth.authenticate(state, tokens["approver"]) is not None
    state.dispose()


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_demo_serves_the_console_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [WARROOM, "demo", "--duration", "1h", "--rate", "0.5", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, url, seen = _lines(proc), None, []
    try:
        deadline = time.monotonic() + 300
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            found = re.search(r"console: (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        assert url == f"http://127.0.0.1:{port}/", "".join(seen)[-3000:]
        assert httpx.get(f"{url}healthz", timeout=10).json() == {"status": "ok"}
        home = httpx.get(url, timeout=10, follow_redirects=True)
        assert home.status_code == 200
        assert "token" in home.text.lower()  # the console's sign-in page asks for one
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


# -- a state database the demo does not own --------------------------------------------------------


def test_demo_refuses_a_foreign_state_database_without_reset_state(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "WARROOM_STATE_DSN": f"sqlite:///{tmp_path / 'shared-state.db'}"}
    done = run_warroom(["demo", "--no-serve"], env, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "pass --reset-state to allow that" in done.stderr.lower(), done.stderr
    assert not (tmp_path / "home" / "demo").exists()  # refused before doing anything


def test_reset_state_empties_incidents_and_proposals_but_keeps_users_and_audit(state_dsn: str) -> None:
    settings = load_settings(env={}, state_dsn=state_dsn)
    state = wiring.state_db(settings)
    token = auth.add_user(state, "alice", "admin", actor="test")
    now = sa.func.now()
    with state.begin() as conn:
        conn.execute(
            sa.insert(INCIDENTS).values(
                id="inc-1",
                title="t",
                severity="critical",
                status="open",
                started_at=now,
                updated_at=now,
                acknowledged_by="",
                alert_count=1,
                services="[]",
                fingerprints="[]",
                flapping="[]",
                root_causes="[]",
            )
        )
    approvals = Approvals.from_settings(state, settings)
    approvals.propose(
        "inc-1",
        Remediation("toggle_feature_flag", {"flag": "new-checkout", "enabled": False}, "why", ()),
        author="test",
    )

    demo.reset_state(state)

    with state.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(INCIDENTS)).scalar() == 0
    assert approvals.list() == []
    assert auth.authenticate(state, token) is not None
    checked = verify(state)
    assert checked.ok and checked.entries >= 3  # user.add, the proposal, state.reset
    state.dispose()
