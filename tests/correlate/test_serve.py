"""`warroom serve` as a user runs it: alerts POSTed to the intake (with a token from `warroom users
add`) become one page per incident at a real local receiver, the resolve follows on the same
incident id, an acknowledgement through the API reaches the receiver too, and bad input gets a 4xx."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import WARROOM, run_warroom
from tests.correlate.test_correlate_cli import am_alert, payload
from tests.correlate.test_notify import Captured, HttpServer, serve_http

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def hooks(server: HttpServer) -> list[Captured]:
    return [r for r in list(server.requests) if r.path == "/hook"]


def test_serve_pages_once_then_resolves(tmp_path: Path, env: dict[str, str]) -> None:
    with serve_http() as server:
        config = tmp_path / "warroom.toml"
        config.write_text(
            f'[receivers.hook]\ntype = "webhook"\nurl = "{server.url}/hook"\nsecret = "k"\n'
            '[teams.sre]\nreceivers = ["hook"]\n[[routes]]\nteam = "sre"\n'
        )
        port = free_port()
        run_env = {
            **env,
            "WARROOM_CONFIG": str(config),
            "WARROOM_API_PORT": str(port),
            "WARROOM_INCIDENT_QUIET_S": "1",
        }
        added = run_warroom(["users", "add", "alertmanager", "--role", "responder"], run_env)
        assert added.returncode == 0, added.stderr
        (token,) = added.stdout.split()  # stdout holds the token alone
        assert "not be shown again" in added.stderr
        auth = {"Authorization": f"Bearer {token}"}
        proc = subprocess.Popen(
            [WARROOM, "serve", "--interval", "0.5"],
            env=run_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            assert wait_for(lambda: _up(base), 60), "serve did not start"
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            firing = am_alert("DiskFull", "billing", 0, "disk 99% full", **{"host.name": "b-1"})
            firing["startsAt"] = now
            anonymous = httpx.post(f"{base}/api/v1/alerts/alertmanager", json=payload(firing), timeout=10)
            assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
            am = f"{base}/api/v1/alerts/alertmanager"
            accepted = httpx.post(am, json=payload(firing), headers=auth, timeout=10)
            assert accepted.status_code == 202, accepted.text
            again = httpx.post(am, json=payload(firing), headers=auth, timeout=10)
            assert again.status_code == 202  # Alertmanager re-sends: no second page
            bad = httpx.post(
                f"{base}/api/v1/alerts",
                content=b"{not json",
                headers={"content-type": "application/json", **auth},
            )
            assert bad.status_code == 400 and bad.json()["error"]
            assert wait_for(lambda: len(hooks(server)) >= 1)
            opened = hooks(server)[0].json()
            assert opened["status"] == "open" and opened["services"] == ["billing"]
            ack = httpx.post(f"{base}/api/v1/incidents/{opened['incident_id']}/ack", headers=auth, timeout=10)
            assert ack.status_code == 200 and ack.json()["incident"]["acknowledged_by"] == "alertmanager"
            assert wait_for(lambda: any(h.json()["status"] == "acknowledged" for h in hooks(server)))

            resolved = {
                **firing,
                "status": "resolved",
                "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            done = httpx.post(am, json=payload(resolved), headers=auth, timeout=10)
            assert done.status_code == 202
            assert wait_for(lambda: any(h.json()["status"] == "resolved" for h in hooks(server)))
            statuses = [(h.json()["status"], h.json()["incident_id"]) for h in hooks(server)]
            incident = opened["incident_id"]
            assert statuses == [("open", incident), ("acknowledged", incident), ("resolved", incident)]
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"Traceback" not in err, err.decode()[-2000:]


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
