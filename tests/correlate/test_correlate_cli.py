"""End to end through the CLI: alerts in the store → incidents in the state database → one page
per incident at real local receivers; ack and resolve reach the same dedup key; explain shows why.

The state database is both a SQLite file and a fresh PostgreSQL database (``state_dsn``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from correlate.notify.webhook import SIGNATURE_HEADER, verify_signature
from tests.conftest import run_warroom
from tests.correlate.test_notify import HttpServer, serve_http

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-'\"$(rm -rf /)"


def am_alert(name: str, service: str, minute: int, summary: str, **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, "service": service, "severity": "critical", **labels},
        "annotations": {"summary": summary},
        "startsAt": f"2026-11-01T12:{minute:02d}:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "warroom", "alerts": list(alerts)}


def write_config(path: Path, server: HttpServer) -> None:
    path.write_text(
        f"""
[receivers.hook]
type = "webhook"
url = "{server.url}/hook"
secret_env = "HOOK_SECRET"

[receivers.pd]
type = "pagerduty"
routing_key = "R0UTINGKEY"
base_url = "{server.url}"

[teams.sre]
receivers = ["hook", "pd"]

[[routes]]
team = "sre"
"""
    )


def test_one_page_per_incident_then_ack_and_resolve_share_the_dedup_key(
    tmp_path: Path, env: dict[str, str], state_dsn: str
) -> None:
    with serve_http(HttpServer(script=[(202, {}, b"{}")])) as server:
        config = tmp_path / "warroom.toml"
        write_config(config, server)
        env = {**env, "WARROOM_CONFIG": str(config), "WARROOM_STATE_DSN": state_dsn, "HOOK_SECRET": SECRET}
        db = payload(
            am_alert(
                "PostgresSlowQueries", "postgres", 0, "postgres query latency high", **{"host.name": "db-1"}
            ),
            am_alert("PostgresReplicationLag", "postgres", 1, "postgres replica lagging"),
            am_alert(
                "PostgresConnections",
                "postgres",
                1,
                "postgres connections saturated",
                **{"host.name": "db-1"},
            ),
        )
        cache = payload(am_alert("RedisEvictions", "redis", 2, "redis evicting keys: memory full"))
        for i, body in enumerate((db, cache)):
            path = tmp_path / f"am{i}.json"
            path.write_text(json.dumps(body))
            done = run_warroom(["alerts", "import", str(path)], env)
            assert done.returncode == 0, done.stderr

        done = run_warroom(
            ["correlate", "run", "--from", "2026-11-01T11:00:00Z", "--to", "2026-11-01T13:00:00Z", "--json"],
            env,
        )
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["alerts"] == 4 and summary["opened"] == 2, summary

        listed = run_warroom(["incidents", "list", "--json"], env)
        assert listed.returncode == 0, listed.stderr
        incidents = [json.loads(line) for line in listed.stdout.splitlines()]
        assert len(incidents) == 2
        by_service = {tuple(i["services"]): i for i in incidents}
        db_incident = by_service[("postgres",)]
        assert db_incident["alert_count"] == 3
        assert db_incident["root_causes"][0]["service"] == "postgres"

        hooks = [r for r in server.requests if r.path == "/hook"]
        pages = [r for r in server.requests if r.path == "/v2/enqueue"]
        # Exactly one page per incident, to each receiver.
        assert sorted(r.json()["incident_id"] for r in hooks) == sorted(i["id"] for i in incidents)
        assert sorted(r.json()["dedup_key"] for r in pages) == sorted(i["id"] for i in incidents)
        assert all(r.json()["event_action"] == "trigger" for r in pages)
        for r in hooks:
            assert verify_signature(SECRET, r.body, r.headers.get(SIGNATURE_HEADER))

        explained = run_warroom(["incidents", "explain", db_incident["id"], "--json"], env)
        decisions = [json.loads(line) for line in explained.stdout.splitlines()]
        assert len(decisions) == 3 and not decisions[0]["joined"]
        assert all(d["joined"] and d["candidates"] for d in decisions[1:])
        assert set(decisions[1]["candidates"][0]["factors"]) == {
            "topology",
            "resources",
            "text",
            "time",
            "change",
        }

        before = len(server.requests)
        acked = run_warroom(["incidents", "ack", db_incident["id"], "--actor", "alice"], env)
        assert acked.returncode == 0, acked.stderr
        resolved = run_warroom(["incidents", "resolve", db_incident["id"], "--actor", "alice"], env)
        assert resolved.returncode == 0, resolved.stderr
        later = server.requests[before:]
        pd_actions = [
            (r.json()["event_action"], r.json()["dedup_key"]) for r in later if r.path == "/v2/enqueue"
        ]
        assert pd_actions == [("acknowledge", db_incident["id"]), ("resolve", db_incident["id"])]
        hook_statuses = [r.json()["status"] for r in later if r.path == "/hook"]
        assert hook_statuses == ["acknowledged", "resolved"]

        shown = run_warroom(["incidents", "show", db_incident["id"], "--json"], env)
        shown_json = json.loads(shown.stdout)
        trail = shown_json["events"]
        assert [e["kind"] for e in trail] == ["opened", "acknowledged", "resolved"]
        assert trail[1]["actor"] == "alice"
        # Every notification attempt is on record: open, acknowledged, resolved to both receivers.
        sent = [(a["receiver"], a["status"], a["ok"]) for a in shown_json["notifications"]]
        assert sorted(sent) == sorted(
            (r, s, True) for r in ("hook", "pd") for s in ("open", "acknowledged", "resolved")
        )

        # Re-running the same range is idempotent: no new incident, no new page.
        before = len(server.requests)
        again = run_warroom(
            ["correlate", "run", "--from", "2026-11-01T11:00:00Z", "--to", "2026-11-01T13:00:00Z", "--json"],
            env,
        )
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout.strip().splitlines()[-1])["opened"] == 0
        assert len(server.requests) == before

        # The people's actions are chained in the audit log, and the chain verifies.
        verified = run_warroom(["audit", "verify"], env)
        assert verified.returncode == 0 and "intact: 2 entries" in verified.stdout, verified.stderr

        bad = run_warroom(["incidents", "ack", "inc-does-not-exist", "--actor", "bob"], env)
        assert bad.returncode != 0 and "no incident" in bad.stderr and "Traceback" not in bad.stderr
