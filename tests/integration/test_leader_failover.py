"""Kill the leader, the standby continues: real ``warroom up`` processes electing through a real
PostgreSQL state database.

- correlate: the leader dies (``correlate.before_commit``: like SIGKILL, at the worst moment — the
  alerts grouped, the transaction not committed) → the standby takes over within seconds, opens
  the store the dead leader held and groups the same alerts once; then that leader is SIGKILLed
  from outside and a third replica takes over without repeating anything.
- executor: the leader is SIGKILLed while it runs a queued remediation → the standby runs the rest;
  the one that was running stays ``executing`` (never re-run); nothing runs twice.

The replicas share one ``WARROOM_HOME``, so they share the embedded store's path, which only one
process may open: that works because a standby opens nothing but its election until it leads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import WARROOM, run_warroom
from warroom.localbroker import free_port
from warroom.statedb import connect

pytestmark = pytest.mark.parametrize("state_dsn", ["postgresql"], indirect=True)

SLOW_APPEND = """
import sys, time
time.sleep(float(sys.argv[3]))
with open(sys.argv[1], "a") as fh:
    fh.write(sys.argv[2] + "\\n")
"""


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def leading(self, role: str) -> bool:
        return any(
            '"leading"' in line and f'"role": "{role}"' in line.replace('":"', '": "')
            for line in self.text().splitlines()
        )


def _wait(what: str, check: Callable[[], bool], timeout: float, replicas: list[Replica]) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    logs = "\n".join(f"--- {r.name} (exit {r.proc.poll()}):\n{r.text()[-3000:]}" for r in replicas)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


@pytest.fixture
def cluster(tmp_path: Path, state_dsn: str) -> Iterator[tuple[dict[str, str], Callable[..., Replica]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
    env.update(
        {
            "WARROOM_HOME": str(tmp_path / "home"),
            "WARROOM_STATE_DSN": state_dsn,
            "WARROOM_LOG_LEVEL": "INFO",
        }
    )
    started: list[Replica] = []

    def start(name: str, only: str, **extra: str) -> Replica:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [WARROOM, "up", "--only", only, "--interval", "0.5"],
                env={**env, **extra},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        replica = Replica(name, proc, log)
        started.append(replica)
        return replica

    yield env, start
    for replica in started:
        if replica.proc.poll() is None:
            replica.proc.kill()
            replica.proc.wait(30)


def _rows(dsn: str, sql: str) -> list[Any]:
    db = connect(dsn)
    try:
        with db.begin() as conn:
            return list(conn.execute(sa.text(sql)).all())
    finally:
        db.dispose()


def _incidents(dsn: str) -> list[tuple[str, list[str]]]:
    rows = _rows(dsn, "SELECT id, fingerprints FROM incidents ORDER BY id")
    return [(r.id, json.loads(r.fingerprints)) for r in rows]


def test_correlate_standby_takes_over_without_duplicates(
    cluster: tuple[dict[str, str], Callable[..., Replica]], state_dsn: str
) -> None:
    env, start = cluster
    port = free_port()
    added = run_warroom(["users", "add", "intake", "--role", "responder"], env)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]

    first = start(
        "first", "correlate,api", WARROOM_API_PORT=str(port), WARROOM_FAILPOINTS="correlate.before_commit:1"
    )
    _wait("the first replica to lead", lambda: first.leading("correlate"), 60, [first])
    status_port = free_port()
    second = start("second", "correlate", WARROOM_STATUS_PORT=str(status_port))
    _wait("the second replica to stand by", lambda: "standing by" in second.text(), 60, [first, second])
    status = f"http://127.0.0.1:{status_port}"
    _wait("its status endpoint", lambda: _up(status), 30, [second])
    assert httpx.get(f"{status}/readyz").status_code == 200  # a standby is a healthy replica
    assert httpx.get(f"{status}/status").json()["services"]["correlate"]["state"] == "standby"
    assert 'warroom_leader{role="correlate"} 0' in httpx.get(f"{status}/metrics").text

    now = datetime.now(UTC)
    alerts = [
        {
            "fingerprint": f"fp-{service}-{kind}",
            "title": f"{service} {kind}",
            "severity": "critical",
            "starts_at": (now - timedelta(minutes=2)).isoformat(),
            "labels": {"service": service},
        }
        for service in ("checkout", "payments")
        for kind in ("errors", "latency")
    ]
    _wait("the API", lambda: _up(f"http://127.0.0.1:{port}"), 60, [first])
    posted = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/alerts", json=alerts, headers={"Authorization": f"Bearer {token}"}
    )
    assert posted.status_code == 202, posted.text

    first.proc.wait(60)  # the failpoint: dies like SIGKILL with the grouping uncommitted
    assert first.proc.returncode == 137, first.text()[-2000:]
    died = time.monotonic()
    assert _incidents(state_dsn) == []  # the dead leader's transaction did not commit
    _wait("the standby to lead", lambda: second.leading("correlate"), 30, [first, second])
    takeover = time.monotonic() - died
    assert takeover < 10, f"takeover took {takeover:.1f}s"
    assert httpx.get(f"{status}/status").json()["services"]["correlate"]["state"] == "leader"
    _wait("the standby to group the alerts", lambda: bool(_incidents(state_dsn)), 60, [second])
    time.sleep(2)  # a few more polls: nothing may be added twice
    grouped = _incidents(state_dsn)
    fingerprints = [fp for _, fps in grouped for fp in fps]
    assert sorted(fingerprints) == sorted(a["fingerprint"] for a in alerts), grouped

    third = start("third", "correlate")
    _wait("a third replica to stand by", lambda: "standing by" in third.text(), 60, [second, third])
    second.proc.send_signal(signal.SIGKILL)
    second.proc.wait(30)
    _wait("the third replica to lead", lambda: third.leading("correlate"), 30, [second, third])
    time.sleep(3)  # it polls: the cursor committed by the second replica holds
    assert _incidents(state_dsn) == grouped
    third.proc.send_signal(signal.SIGTERM)
    assert third.proc.wait(60) == 0, third.text()[-2000:]


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_executor_standby_runs_the_rest_and_nothing_twice(
    cluster: tuple[dict[str, str], Callable[..., Replica]], state_dsn: str, tmp_path: Path
) -> None:
    env, start = cluster
    script, ran = tmp_path / "slow_append.py", tmp_path / "ran.txt"
    script.write_text(SLOW_APPEND)
    argv = [sys.executable, str(script), str(ran), "{service}", "2"]
    config = tmp_path / "warroom.toml"
    config.write_text(
        '[roles]\napprover = ["bob"]\noperator = ["oscar"]\n\n'
        "[actions.slow_append]\n"
        'title = "Append a line slowly"\nrisk = "low"\nprechecks = ["none"]\n'
        f'executor = {{ kind = "command", argv = {json.dumps(argv)}, enabled = true }}\n\n'
        '[actions.slow_append.params.service]\ntype = "string"\n'
    )
    env["WARROOM_CONFIG"] = str(config)
    services = [f"svc{i}" for i in range(3)]
    ids = []
    for service in services:
        proposed = run_warroom(
            [
                "remediation",
                "propose",
                "inc-1",
                "slow_append",
                "-p",
                f"service={service}",
                "--actor",
                "alice",
                "--reason",
                "drill",
                "--json",
            ],
            env,
        )
        assert proposed.returncode == 0, proposed.stderr
        ids.append(json.loads(proposed.stdout)["id"])
    for pid in ids:
        for args in (["approve", pid, "--actor", "bob"], ["execute", pid, "--queue", "--actor", "oscar"]):
            done = run_warroom(["remediation", *args], env)
            assert done.returncode == 0, done.stderr

    first = start("first", "executor", WARROOM_CONFIG=str(config))
    _wait("the first executor to lead", lambda: first.leading("executor"), 60, [first])
    second = start("second", "executor", WARROOM_CONFIG=str(config))
    _wait("the second executor to stand by", lambda: "standing by" in second.text(), 60, [first, second])
    _wait("the first run to finish", lambda: ran.exists(), 60, [first])
    _wait(
        "the second run to start",
        lambda: _states(state_dsn).get(ids[1]) == "executing",
        30,
        [first],
    )
    time.sleep(0.3)  # kill the leader in the middle of the second run (each takes 2 s)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    _wait("the standby to lead", lambda: second.leading("executor"), 30, [first, second])
    _wait("the rest to run", lambda: len(ran.read_text().splitlines()) >= 2, 60, [second])
    time.sleep(3)
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(60) == 0, second.text()[-2000:]

    states = {pid: _state(env, pid) for pid in ids}
    lines = ran.read_text().splitlines()
    assert len(lines) == len(set(lines)), lines  # nothing ran twice
    assert sorted(states.values()) == ["executing", "succeeded", "succeeded"], states
    (interrupted,) = [pid for pid, state in states.items() if state == "executing"]
    assert interrupted == ids[1]  # killed mid-run: it stays executing and is never re-run …
    # … though its command, a child process, may still have finished on its own: warroom cannot
    # know, which is why a person checks the target.
    assert {services[0], services[2]} <= set(lines)


def _states(dsn: str) -> dict[str, str]:
    return {r.id: r.state for r in _rows(dsn, "SELECT id, state FROM remediation_proposals")}


def _state(env: dict[str, str], pid: str) -> str:
    shown = run_warroom(["remediation", "show", pid, "--json"], env)
    assert shown.returncode == 0, shown.stderr
    return str(json.loads(shown.stdout)["state"])
