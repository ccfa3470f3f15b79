"""Evidence, summaries, the digest, alerts and topology over HTTP: the formats, the filters, and
that a GET never changes state (no LLM call, no proposal, no audit entry)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from correlate.topology import Edge, make_topology, save_snapshot
from tests.app.test_api import SQLITE_ONLY, World, serve, world
from warroom import audit

__all__ = ["serve", "world"]

pytestmark = [pytest.mark.integration, SQLITE_ONLY]


def state_size(world: World) -> tuple[int, int, int]:
    """Audit entries, proposals and incidents: what a GET must leave as it was."""
    return (
        len(audit.entries(world.ctx.state)),
        len(world.ctx.approvals().list()),
        len(world.ctx.incidents.incidents(limit=1000)),
    )


def test_evidence_and_summary_formats_change_nothing(world: World) -> None:
    incident = world.blocks["ack"][0]
    before = state_size(world)
    pack = world.call("GET", f"/api/v1/incidents/{incident}/evidence", "viewer")
    assert pack.status_code == 200 and pack.headers["content-type"] == "application/json"
    assert pack.json()["incident"]["id"] == incident and pack.json()["items"]

    as_json = world.call("GET", f"/api/v1/incidents/{incident}/summary", "viewer").json()
    assert as_json["incident"] == incident and as_json["llm_status"] == "off" and as_json["evidence"]
    expected = {
        "md": "text/markdown; charset=utf-8",
        "html": "text/html; charset=utf-8",
        "slack": "application/json",
    }
    for fmt, media_type in expected.items():
        response = world.call("GET", f"/api/v1/incidents/{incident}/summary?format={fmt}", "viewer")
        assert response.status_code == 200 and response.headers["content-type"] == media_type, fmt
        assert "checkout" in response.text, fmt
    assert "blocks" in json.loads(response.text)  # Slack Block Kit
    bad = world.call("GET", f"/api/v1/incidents/{incident}/summary?format=pdf")
    assert bad.status_code == 422 and "query parameter format" in bad.json()["error"]
    late = world.call("GET", f"/api/v1/incidents/{incident}/evidence?at=soon")
    assert late.status_code == 422 and late.json()["error"].startswith("at: 'soon' is not a time")
    assert state_size(world) == before


def test_summarize_is_audited_and_does_not_repeat_proposals(world: World) -> None:
    incident = world.blocks["ack"][0]
    first = world.call("POST", f"/api/v1/incidents/{incident}/summarize", "responder")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["summary"]["incident"] == incident and body["llm"] is None  # no LLM configured
    again = world.call(
        "POST", f"/api/v1/incidents/{incident}/summarize", "responder", json={"use_llm": False}
    )
    assert again.status_code == 200 and again.json()["proposals"] == []  # standing ones are not repeated
    created = [p["id"] for p in body["proposals"]]
    assert sorted(p.id for p in world.ctx.approvals().list(incident=incident)) == sorted(created)
    assert all(p["author"] == "warroom" for p in body["proposals"])  # so the caller may approve them
    entries = [
        e for e in audit.entries(world.ctx.state, subject=incident) if e.action == "incident.summarize"
    ]
    assert [(e.actor, e.after["proposals"]) for e in entries] == [("rick", created), ("rick", [])]
    bad = world.call(
        "POST", f"/api/v1/incidents/{incident}/summarize", "responder", json={"use_llm": "maybe"}
    )
    assert bad.status_code == 422 and "use_llm" in bad.json()["error"]


def test_digest_formats_and_period(world: World) -> None:
    digest = world.call("GET", "/api/v1/digest?since=6h", "viewer").json()
    assert digest["incident_count"] == 11 and digest["by_status"]["open"] == 11
    assert digest["alert_count"] == 17 and digest["incidents"][0]["tta_s"] is None
    for fmt in ("md", "html", "slack"):
        response = world.call("GET", f"/api/v1/digest?since=6h&format={fmt}", "viewer")
        assert response.status_code == 200 and "11" in response.text, fmt
    empty = world.call("GET", "/api/v1/digest?since=1h&to=now-10d").json()
    assert empty["incident_count"] == 0
    for query, reason in [
        ("since=forever", "invalid_time"),
        ("since=365d", "period_too_long"),
        ("to=2099-13-01", "invalid_time"),
        ("since=2099-01-01T00:00:00Z", "invalid_time"),
    ]:
        response = world.call("GET", f"/api/v1/digest?{query}")
        assert response.status_code == 422 and response.json()["reason"] == reason, (query, response.text)


def test_alerts_filters(world: World) -> None:
    everything = world.call("GET", "/api/v1/alerts?since=6h&limit=1000", "viewer").json()
    assert everything["count"] == 17 and not everything["truncated"]
    starts = [a["starts_at"] for a in everything["alerts"]]
    assert starts == sorted(starts, reverse=True)  # newest first
    billing = world.call("GET", "/api/v1/alerts?since=6h&service=billing").json()
    assert billing["count"] == 6 and {a["labels"]["service"] for a in billing["alerts"]} == {"billing"}
    assert world.call("GET", "/api/v1/alerts?since=6h&firing=false").json()["count"] == 0
    assert world.call("GET", "/api/v1/alerts?since=6h&firing=true&severity=critical").json()["count"] == 17
    page = world.call("GET", "/api/v1/alerts?since=6h&limit=5").json()
    assert page["count"] == 5 and page["truncated"]
    assert world.call("GET", "/api/v1/alerts?since=1m").json()["count"] == 0
    for query in ("since=40d", "since=1h&until=now-2h", "until=tomorrow", "firing=perhaps", "limit=-1"):
        response = world.call("GET", f"/api/v1/alerts?{query}")
        assert response.status_code == 422, (query, response.text)


def test_topology_latest_snapshot(world: World) -> None:
    assert world.call("GET", "/api/v1/topology", "viewer").json() == {
        "snapshot": False,
        "start": None,
        "end": None,
        "nodes": [],
        "edges": [],
    }
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    edges = [
        Edge("frontend", "checkout", "rpc", 1200, 20.0, 0.05, 180.0),
        Edge("checkout", "postgres", "db", 900, 15.0, float("nan"), 12.5),
    ]
    save_snapshot(world.ctx.store, make_topology(end - timedelta(hours=1), end, edges, ["frontend"]))
    topology = world.call("GET", "/api/v1/topology").json()
    assert topology["snapshot"] and topology["end"] == end.isoformat()
    assert {n["name"]: (n["callers"], n["callees"]) for n in topology["nodes"]} == {
        "checkout": (["frontend"], ["postgres"]),
        "frontend": ([], ["checkout"]),
        "postgres": (["checkout"], []),
    }
    by_pair = {(e["caller"], e["callee"]): e for e in topology["edges"]}
    assert (
        by_pair[("frontend", "checkout")]["calls"] == 1200
        and by_pair[("frontend", "checkout")]["p95_ms"] == 180
    )
    assert by_pair[("checkout", "postgres")]["error_ratio"] is None  # NaN is not JSON: null
    earlier = (end - timedelta(minutes=1)).isoformat()
    before = world.call("GET", "/api/v1/topology", params={"at": earlier}).json()
    assert before["snapshot"] is False
