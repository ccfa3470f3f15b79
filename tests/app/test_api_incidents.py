"""Incident routes: filters, detail, explain, and the commands — each one through the correlator, so
it is audited with the caller as the actor and its notice is queued in the same transaction."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from app.api.routes_incidents import SCAN
from correlate.notify.outbox import Outbox
from tests.app.test_api import SQLITE_ONLY, USERS, World, serve, world
from warroom import audit

__all__ = ["serve", "world"]  # the fixtures, imported for pytest

pytestmark = [pytest.mark.integration, SQLITE_ONLY]


def queued(world: World, incident_id: str) -> list[str]:
    """The notice statuses queued for ``incident_id`` (the outbox's dispatcher is not running)."""
    with Outbox(world.ctx.state, {}) as outbox:
        return [item.notice.status for item in outbox.items(incident_id=incident_id)]


def test_list_filters_and_limits(world: World) -> None:
    everything = world.call("GET", "/api/v1/incidents?limit=1000").json()
    assert everything["count"] == 11 and SCAN >= 1000
    ids = [i["id"] for i in everything["incidents"]]
    started = [i["started_at"] for i in everything["incidents"]]
    assert started == sorted(started, reverse=True)  # newest first

    billing = world.call("GET", "/api/v1/incidents?service=billing").json()["incidents"]
    assert [i["services"] for i in billing] == [["billing"]] and billing[0]["alert_count"] == 6
    assert world.call("GET", "/api/v1/incidents?severity=critical&limit=3").json()["count"] == 3
    assert world.call("GET", "/api/v1/incidents?severity=info").json()["incidents"] == []
    assert world.call("GET", "/api/v1/incidents?status=resolved").json()["incidents"] == []
    assert world.call("GET", "/api/v1/incidents?since=1h").json()["count"] == 11  # open ones count
    assert world.call("GET", "/api/v1/incidents?since=now-1h&status=open").json()["count"] == 11

    world.call("POST", f"/api/v1/incidents/{ids[0]}/resolve")
    resolved = world.call("GET", "/api/v1/incidents?status=resolved").json()["incidents"]
    assert [i["id"] for i in resolved] == [ids[0]]
    assert (
        world.call("GET", "/api/v1/incidents?since=2099-01-01T00:00:00Z&status=resolved").json()["count"] == 0
    )


@pytest.mark.parametrize(
    ("query", "reason", "text"),
    [
        ("status=closed", "invalid_field", "query parameter status"),
        ("severity=sev9", "invalid_field", "query parameter severity"),
        ("limit=0", "invalid_field", "query parameter limit"),
        ("limit=100000", "invalid_field", "less than or equal to 1000"),
        ("limit=ten", "invalid_field", "query parameter limit"),
        ("since=yesterday", "invalid_time", "since: 'yesterday' is neither a duration"),
        ("since=99999999999d", "invalid_time", "since:"),
        ("service=" + "x" * 300, "invalid_field", "query parameter service"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_parameter(
    world: World, query: str, reason: str, text: str
) -> None:
    response = world.call("GET", f"/api/v1/incidents?{query}", "viewer")
    assert response.status_code == 422, response.text
    assert response.json()["reason"] == reason and text in response.json()["error"]


def test_hostile_filters_are_just_values(world: World) -> None:
    for value in ("'; DROP TABLE incidents; --", "$(reboot)", "billing' OR '1'='1", "\u202e🔥", "%00"):
        response = world.call("GET", "/api/v1/incidents", "viewer", params={"service": value})
        assert response.status_code == 200 and response.json()["incidents"] == []
    assert world.call("GET", "/api/v1/incidents?limit=1000").json()["count"] == 11  # nothing dropped


def test_detail_has_root_causes_events_audit_and_explain(world: World) -> None:
    incident_id = world.blocks["ack"][0]
    world.call("POST", f"/api/v1/incidents/{incident_id}/ack", "responder")
    detail = world.call("GET", f"/api/v1/incidents/{incident_id}", "viewer").json()
    assert detail["id"] == incident_id and detail["status"] == "acknowledged"
    assert detail["root_causes"][0]["service"] == "checkout"
    assert [e["kind"] for e in detail["events"]] == ["opened", "acknowledged"]
    assert detail["events"][1]["actor"] == USERS["responder"]
    assert [(a["actor"], a["action"]) for a in detail["audit"]] == [("rick", "incident.acknowledged")]
    assert detail["notifications"] == [] and detail["remediations"] == []

    explained = world.call("GET", f"/api/v1/incidents/{incident_id}/explain", "viewer").json()
    assert explained["incident"] == incident_id and len(explained["decisions"]) == 2
    assert explained["decisions"][1]["joined"] and explained["decisions"][1]["candidates"]


def test_ack_and_resolve_queue_notices_and_audit_the_caller(world: World) -> None:
    incident_id = world.blocks["ack"][0]
    assert queued(world, incident_id) == ["open"]  # the page of the correlator's run
    response = world.call("POST", f"/api/v1/incidents/{incident_id}/ack", "responder")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["incident"]["status"] == "acknowledged" and body["incident"]["acknowledged_by"] == "rick"
    assert [c["kind"] for c in body["changes"]] == ["acknowledged"] and body["changes"][0]["notify"]
    assert queued(world, incident_id) == ["open", "acknowledged"]

    done = world.call("POST", f"/api/v1/incidents/{incident_id}/resolve", "approver")
    assert done.status_code == 200 and done.json()["incident"]["status"] == "resolved"
    assert queued(world, incident_id) == ["open", "acknowledged", "resolved"]
    trail = [(e.actor, e.action) for e in audit.entries(world.ctx.state, subject=incident_id)]
    assert trail == [("rick", "incident.acknowledged"), ("april", "incident.resolved")]

    for verb in ("ack", "resolve"):  # the state does not allow it any more
        again = world.call("POST", f"/api/v1/incidents/{incident_id}/{verb}", "responder")
        assert again.status_code == 409 and again.json()["reason"] == "conflict", again.text
        assert incident_id in again.json()["error"]
    assert len(audit.entries(world.ctx.state, subject=incident_id)) == 2


def test_merge_and_split(world: World) -> None:
    target, source = world.blocks["merge-target"][0], world.take("merge-source")
    unknown = world.call("POST", f"/api/v1/incidents/{target}/merge", json={"sources": [source, "inc-nope"]})
    assert unknown.status_code == 422 and unknown.json()["reason"] == "unknown_reference"
    assert unknown.json()["error"] == "sources[1]: no incident 'inc-nope'"
    alone = world.call("POST", f"/api/v1/incidents/{target}/merge", json={"sources": [target]})
    assert alone.status_code == 422 and alone.json()["reason"] == "bad_merge"

    merged = world.call("POST", f"/api/v1/incidents/{target}/merge", "responder", json={"sources": [source]})
    assert merged.status_code == 200, merged.text
    assert set(merged.json()["incident"]["fingerprints"]) == {"orders-0", *world.fingerprints[source]}
    assert world.call("GET", f"/api/v1/incidents/{source}").json()["merged_into"] == target

    incident = world.blocks["split"][0]
    bad = world.call("POST", f"/api/v1/incidents/{incident}/split", json={"fingerprints": ["not-a-member"]})
    assert bad.status_code == 422 and bad.json()["reason"] == "bad_split", bad.text
    split = world.call(
        "POST", f"/api/v1/incidents/{incident}/split", "responder", json={"fingerprints": ["billing-5"]}
    )
    assert split.status_code == 200, split.text
    kinds = {c["kind"]: c for c in split.json()["changes"]}
    assert set(kinds) == {"split", "opened"} and kinds["opened"]["fingerprints"] == ["billing-5"]
    assert "billing-5" not in split.json()["incident"]["fingerprints"]
    actions = [(e.actor, e.action) for e in audit.entries(world.ctx.state)[-3:]]
    assert actions[-2:] == [("rick", "incident.split"), ("rick", "incident.opened")]


@pytest.mark.parametrize(
    "incident_id",
    [
        "inc-0000000000000000",
        "'; DROP TABLE incidents; --",
        "../../etc/passwd",
        "$(reboot)",
        "%00",
        "🔥" * 40,
    ],
)
def test_unknown_or_hostile_ids_are_404_everywhere(world: World, incident_id: str) -> None:
    path = "/api/v1/incidents/" + quote(incident_id, safe="")
    for method, suffix, body in [
        ("GET", "", None),
        ("GET", "/explain", None),
        ("GET", "/evidence", None),
        ("GET", "/summary", None),
        ("POST", "/ack", None),
        ("POST", "/resolve", None),
        ("POST", "/merge", {"sources": [world.blocks["ack"][0]]}),
        ("POST", "/split", {"fingerprints": ["checkout-0"]}),
        ("POST", "/summarize", None),
    ]:
        response = world.call(method, path + suffix, json=body)
        assert response.status_code == 404, (method, suffix, response.text)
        assert response.json()["reason"] in ("unknown_incident", "not_found")
    assert world.call("GET", "/api/v1/incidents?limit=1000").json()["count"] == 11
    assert [e.action for e in audit.entries(world.ctx.state)] == ["user.add"] * 6 + ["user.revoke"]


def test_command_bodies_are_validated(world: World) -> None:
    target = world.blocks["merge-target"][0]
    cases = [
        ({"sources": []}, "invalid_field", "sources: List should have at least 1 item"),
        ({"sources": "inc-1"}, "invalid_field", "sources: Input should be a valid list"),
        ({"sources": [1]}, "invalid_field", "sources[0]: Input should be a valid string"),
        ({"sources": [""]}, "invalid_field", "sources[0]: String should have at least 1 character"),
        ({"sources": ["x"], "force": True}, "unknown_field", "force: unknown field"),
        ({}, "missing_field", "sources: Field required"),
        ([], "invalid_field", "request body: Input should be a valid dictionary"),
    ]
    for body, reason, text in cases:
        response = world.call("POST", f"/api/v1/incidents/{target}/merge", "responder", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json() == {"error": text, "reason": reason} or (
            response.json()["reason"] == reason and response.json()["error"].startswith(text)
        ), (body, response.json())
