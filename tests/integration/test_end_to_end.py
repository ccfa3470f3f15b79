"""Issue #6, end to end through the public CLI and API only: a bad-deploy scenario goes through a real
Tansu broker into ingest, detection, correlation and the summaries (``warroom demo --kafka``); the
incident names the injected root cause; ``warroom serve`` then takes a rollback proposal through
approval and a dry-run execution with Bearer tokens of each role, the audit log records who did
what, and everything still reads the same from the CLI after SIGTERM has stopped the server.

The ground truth comes from the scenario's ``ground_truth.json`` (service, fault kind, the version
the deploy replaced), not from constants. ``warroom demo --kafka`` starts its own local Tansu broker
(:class:`warroom.localbroker.LocalBroker`, fresh topics per run) rather than the session broker of
the ``env`` fixture: both are the real broker binary, and the demo's stdout says which one it used.

One test: the embedded store allows one process at a time, so the steps run in order (demo, then
the CLI, then the server, then the CLI again) in one fresh home. About 1.5 minutes.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WARROOM, run_warroom
from tests.correlate.test_serve import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = re.compile(r"^\s+(viewer|approver)\s+role (viewer|approver)\s+(wr_\S+)$", re.MULTILINE)
VERSION = re.compile(r"^\s*(\S+)\s*->\s*(\S+)\s*$")  # ground truth's "2.3.0 -> 2.4.0"


def _truth(home: Path) -> dict[str, str]:
    """The injected fault: root-cause service, kind, and the version the bad deploy replaced."""
    truth = json.loads((home / "demo" / "bad_deploy" / "ground_truth.json").read_text(encoding="utf-8"))
    (fault,) = truth["faults"]
    (version,) = [s for s in fault["affected_signals"] if s["signal"] == "version"]
    found = VERSION.match(version["detail"])
    assert found, version
    return {
        "service": fault["root_cause_service"],
        "kind": fault["kind"],
        "good_version": found.group(1),
        "bad_version": found.group(2),
    }


def _cli_json(args: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    done = run_warroom([*args, "--json"], env, timeout=120)
    assert done.returncode == 0, (args, done.stderr[-3000:])
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _add_user(name: str, role: str, env: dict[str, str]) -> str:
    done = run_warroom(["users", "add", name, "--role", role, "--actor", "e2e"], env, timeout=60)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("wr_") and "\n" not in token, done.stdout  # alone on stdout
    return token


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"warroom serve exited {proc.returncode}: {log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"warroom serve not ready in {timeout} s: {log.read_text()[-3000:]}")


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.request.url, response.status_code, response.text[:2000])
    return response.json()


def _refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, (response.request.url, response.status_code, response.text[:2000])
    assert response.json()["reason"] == reason, response.text


def test_scenario_through_kafka_to_an_approved_dry_run_rollback(env: dict[str, str], tmp_path: Path) -> None:
    home = Path(env["WARROOM_HOME"])

    # 1. The pipeline, through the real broker: generate → Kafka → ingest → detect → correlate →
    #    summaries (and proposals).
    started = time.monotonic()
    done = run_warroom(
        ["demo", "--kafka", "--no-serve", "--duration", "2h", "--rate", "1.5"], env, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "local broker on 127.0.0.1:" in out, out[:2000]  # the Tansu broker, not the files
    assert re.search(r"produced [1-9]\d* Kafka records", out), out[:3000]
    stored = re.findall(
        r"^\s+(spans|log records|metric points) \(\S+\)\s+([\d,]+)\s+\(produced ([\d,]+)\)$", out, re.M
    )
    assert len(stored) == 3 and all(got == want != "0" for _, got, want in stored), (stored, out[:3000])
    assert re.search(r"^\s+dead letters\s+0\s", out, re.M), out[:3000]
    truth = _truth(home)
    service, kind = truth["service"], truth["kind"]
    assert kind == "bad_deploy"
    assert f"injected fault: {kind} on {service}" in out
    tokens = {name: token for name, _role, token in TOKEN.findall(out)}
    assert set(tokens) == {"viewer", "approver"}, out[-1000:]
    viewer, approver = tokens["viewer"], tokens["approver"]
    demo_seconds = time.monotonic() - started

    # 2. The CLI: people, and the incident naming the injected root cause.
    admin = _add_user("ops", "admin", env)
    responder = _add_user("oncall", "responder", env)
    incidents = _cli_json(["incidents", "list"], env)
    named = [i for i in incidents if i["root_causes"] and i["root_causes"][0]["service"] == service]
    assert len(named) == 1, incidents
    incident = named[0]
    assert service in incident["services"] and incident["status"] == "open", incident
    incident_id = incident["id"]
    assert f"{incident_id}: {service}: bad deploy" in out, out[-3000:]  # the demo's summary line

    # 3. The API, on the same home (the demo has exited: the embedded store is free).
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([WARROOM, "serve", "--port", str(port)], env=env, stdout=sink, stderr=sink)
    try:
        _wait_ready(proc, url, log)
        proposal_id = _through_the_api(url, incident_id, truth, viewer, approver, responder, admin)

        # 4. SIGTERM ends the server cleanly.
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=60)
        stop_seconds = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    served = log.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, served[-3000:]
    assert "Traceback" not in served, served[-3000:]
    # The correlator's watch loop sleeps out its --interval (default 5 s) before it sees the stop.
    assert stop_seconds < 30, stop_seconds

    # 5. After the server: the CLI sees the same chain and the same outcome.
    verified = run_warroom(["audit", "verify"], env, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert "audit log intact" in verified.stdout, verified.stdout
    (shown,) = _cli_json(["remediation", "show", proposal_id], env)
    assert shown["state"] == "succeeded" and shown["executed_by"] == "oncall", shown
    text = run_warroom(["remediation", "show", proposal_id], env, timeout=60)
    assert text.returncode == 0, text.stderr
    assert f"{proposal_id}  succeeded" in text.stdout and "executed by oncall" in text.stdout, text.stdout
    print(f"demo {demo_seconds:.0f} s; serve stopped {stop_seconds:.1f} s after SIGTERM")


def _through_the_api(
    url: str,
    incident_id: str,
    truth: dict[str, str],
    viewer: str,
    approver: str,
    responder: str,
    admin: str,
) -> str:
    """Read the incident and its summary, then take the rollback through approval and execution;
    returns the proposal's id."""
    service, kind, good = truth["service"], truth["kind"], truth["good_version"]

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    api = f"{url}/api/v1"
    with httpx.Client(timeout=60) as http:
        _refused(http.get(f"{api}/incidents"), 401, "missing_token")
        listed = _ok(http.get(f"{api}/incidents", headers=auth(viewer)))["incidents"]
        (incident,) = [i for i in listed if i["id"] == incident_id]
        assert incident["root_causes"][0]["service"] == service, incident

        summary = _ok(http.get(f"{api}/incidents/{incident_id}/summary?format=json", headers=auth(viewer)))
        top = summary["hypotheses"][0]
        assert (top["service"], top["fault_kind"]) == (service, kind), summary["hypotheses"]
        assert top["evidence"], top  # the hypothesis cites the evidence pack
        suggested = [r for r in summary["remediations"] if r["action"] == "rollback_deployment"]
        assert suggested and suggested[0]["params"]["service"] == service, summary["remediations"]

        # The demo's summaries recorded the rollback; summarising again does not repeat it.
        found = _ok(http.get(f"{api}/remediations", params={"incident": incident_id}, headers=auth(viewer)))
        rollbacks = [p for p in found["remediations"] if p["action"] == "rollback_deployment"]
        assert len(rollbacks) == 1, found
        proposal = rollbacks[0]
        assert proposal["state"] == "proposed" and proposal["author"] == "warroom", proposal
        assert proposal["params"]["service"] == service and proposal["params"]["to_version"] == good, proposal
        assert proposal["approvals_needed"] == 1 and not proposal["overdue"], proposal
        pid = proposal["id"]
        _refused(
            http.post(f"{api}/incidents/{incident_id}/summarize", json={}, headers=auth(viewer)),
            403,
            "forbidden",
        )
        again = _ok(
            http.post(
                f"{api}/incidents/{incident_id}/summarize", json={"use_llm": False}, headers=auth(responder)
            )
        )
        assert again["proposals"] == [], again["proposals"]  # the standing proposal is not repeated
        assert again["summary"]["hypotheses"][0]["service"] == service

        # Approval: only an approver, once.
        approve = f"{api}/remediations/{pid}/approve"
        _refused(http.post(approve, json={"reason": "looks right"}, headers=auth(viewer)), 403, "forbidden")
        _refused(
            http.post(approve, json={"reason": "looks right"}, headers=auth(responder)), 403, "forbidden"
        )
        _refused(http.post(f"{api}/remediations/{pid}/execute", headers=auth(responder)), 409, "not_approved")
        approved = _ok(
            http.post(approve, json={"reason": f"{service} deploy matches onset"}, headers=auth(approver))
        )
        assert approved["state"] == "approved" and approved["decided_by"] == "approver", approved
        assert [a["actor"] for a in approved["approvals"]] == ["approver"]
        _refused(
            http.post(approve, json={"reason": "again"}, headers=auth(approver)), 403, "already_approved"
        )
        _refused(http.post(approve, json={"reason": "me too"}, headers=auth(admin)), 409, "already_approved")

        # Execution: a responder runs what was approved, exactly once; the built-in executor is a
        # dry run that returns the plan.
        execute = f"{api}/remediations/{pid}/execute"
        _refused(http.post(execute, headers=auth(viewer)), 403, "forbidden")
        ran = _ok(http.post(execute, headers=auth(responder)))
        assert ran["state"] == "succeeded" and ran["executed_by"] == "oncall", ran
        result = ran["result"]
        assert result["ok"] and "dry run" in result["detail"], result
        assert f"service='{service}'" in result["output"] and f"to_version='{good}'" in result["output"], (
            result
        )
        assert "nothing (dry run)" in result["output"], result
        _refused(http.post(execute, headers=auth(approver)), 409, "already_executed")
        _refused(http.post(execute, headers=auth(responder)), 409, "already_executed")

        detail = _ok(http.get(f"{api}/remediations/{pid}", headers=auth(viewer)))
        assert detail["state"] == "succeeded" and detail["result"] == result, detail

        # The audit log: who did what to the proposal (newest first), and the chain holds.
        _refused(http.get(f"{api}/audit", params={"subject": pid}, headers=auth(approver)), 403, "forbidden")
        entries = _ok(http.get(f"{api}/audit", params={"subject": pid}, headers=auth(admin)))["entries"]
        trail = [(e["actor"], e["action"], e["after"].get("state")) for e in reversed(entries)]
        assert trail == [
            ("warroom", "remediation.propose", "proposed"),
            ("approver", "remediation.approve", "approved"),
            ("oncall", "remediation.execute", "executing"),
            ("oncall", "remediation.succeeded", "succeeded"),
        ], trail
        assert entries[-2]["reason"] == f"{service} deploy matches onset"
        assert sorted(e["seq"] for e in detail["audit"]) == sorted(e["seq"] for e in entries)
        summarized = _ok(http.get(f"{api}/audit", params={"subject": incident_id}, headers=auth(admin)))
        assert ("oncall", "incident.summarize") in {(e["actor"], e["action"]) for e in summarized["entries"]}
        checked = _ok(http.get(f"{api}/audit/verify", headers=auth(admin)))
        assert checked["ok"] and checked["first_bad_seq"] is None and checked["entries"] >= 7, checked
    return str(pid)
