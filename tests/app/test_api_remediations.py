"""The approval workflow over HTTP: the route's role first, then the workflow's own rules (no
self-approval, two approvers for high risk, exactly-once execution) in the same error shape."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.app.test_api import SQLITE_ONLY, World, serve, world
from warroom import audit

__all__ = ["serve", "world"]

pytestmark = [pytest.mark.integration, SQLITE_ONLY]


def propose(world: World, principal: str = "responder", **overrides: object) -> dict[str, object]:
    body = {
        "incident": world.blocks["ack"][0],
        "action": "toggle_feature_flag",
        "params": {"flag": "new-checkout", "enabled": False},
        "reason": "the flag's code path fails since 12:00",
        "evidence": ["E1"],
        **overrides,
    }
    response = world.call("POST", "/api/v1/remediations", principal, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_propose_approve_execute_with_the_plan_and_trail(world: World) -> None:
    proposal = propose(world)
    assert proposal["author"] == "rick" and proposal["source"] == "manual" and proposal["state"] == "proposed"
    assert (
        proposal["params"] == {"flag": "new-checkout", "enabled": False}
        and "new-checkout" in proposal["plan"]
    )
    pid = proposal["id"]

    refused = world.call("POST", f"/api/v1/remediations/{pid}/approve", "responder")
    assert refused.status_code == 403 and "needs role approver" in refused.json()["error"]
    not_yet = world.call("POST", f"/api/v1/remediations/{pid}/execute", "approver")
    assert not_yet.status_code == 409 and not_yet.json()["reason"] == "not_approved"

    approved = world.call("POST", f"/api/v1/remediations/{pid}/approve", "approver", json={"reason": "safe"})
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    twice = world.call("POST", f"/api/v1/remediations/{pid}/approve", "admin")
    assert twice.status_code == 409 and twice.json()["reason"] == "already_approved"

    done = world.call("POST", f"/api/v1/remediations/{pid}/execute", "admin")
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "succeeded" and done.json()["executed_by"] == "adam"
    again = world.call("POST", f"/api/v1/remediations/{pid}/execute", "approver")
    assert again.status_code == 409 and again.json()["reason"] == "already_executed"

    detail = world.call("GET", f"/api/v1/remediations/{pid}", "viewer").json()
    assert [(e["actor"], e["action"]) for e in detail["audit"]] == [
        ("rick", "remediation.propose"),
        ("april", "remediation.approve"),
        ("adam", "remediation.execute"),
        ("adam", "remediation.succeeded"),
    ]
    listed = world.call("GET", "/api/v1/remediations?state=succeeded", "viewer").json()["remediations"]
    assert [p["id"] for p in listed] == [pid]
    by_incident = world.call("GET", f"/api/v1/remediations?incident={world.blocks['ack'][0]}").json()
    assert by_incident["count"] == 1
    assert world.call("GET", "/api/v1/remediations?incident=inc-other").json()["remediations"] == []


def test_workflow_rules_come_back_as_403_and_409(world: World) -> None:
    own = propose(world, "approver")
    response = world.call("POST", f"/api/v1/remediations/{own['id']}/approve", "approver")
    assert response.status_code == 403 and response.json()["reason"] == "self_approval", response.text

    risky = propose(world, action="failover_database", params={"database": "orders"})
    assert risky["risk"] == "high" and risky["approvals_needed"] == 2
    first = world.call("POST", f"/api/v1/remediations/{risky['id']}/approve", "approver")
    assert first.status_code == 200 and first.json()["state"] == "proposed"  # one of two
    vote = world.call("POST", f"/api/v1/remediations/{risky['id']}/approve", "approver")
    assert vote.status_code == 403 and vote.json()["reason"] == "already_approved"
    second = world.call("POST", f"/api/v1/remediations/{risky['id']}/approve", "admin")
    assert second.json()["state"] == "approved" and second.json()["decided_by"] == "adam"

    rejected = world.call(
        "POST", f"/api/v1/remediations/{risky['id']}/reject", "approver", json={"reason": "no"}
    )
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    late = world.call("POST", f"/api/v1/remediations/{risky['id']}/execute", "approver")
    assert late.status_code == 409 and late.json()["reason"] == "rejected"


def test_bad_proposals_and_decisions_are_4xx(world: World) -> None:
    incident = world.blocks["ack"][0]
    base = {"incident": incident, "action": "open_runbook", "params": {"runbook": "rb/x"}, "reason": "r"}
    cases = [
        ({**base, "incident": "inc-nope"}, 422, "unknown_reference", "incident: no incident 'inc-nope'"),
        ({**base, "action": "rm_rf"}, 422, "unknown_action", "unknown action 'rm_rf'"),
        ({**base, "params": {}}, 422, "invalid_params", "runbook"),
        ({**base, "params": {"runbook": "x", "shell": "$(id)"}}, 422, "invalid_params", "shell"),
        ({**base, "params": {"runbook": ["a"]}}, 422, "invalid_field", "params.runbook"),
        ({**base, "reason": ""}, 422, "invalid_field", "reason"),
        ({**base, "author": "mallory"}, 422, "unknown_field", "author: unknown field"),
        ({k: v for k, v in base.items() if k != "action"}, 422, "missing_field", "action: Field required"),
    ]
    for body, status, reason, text in cases:
        response = world.call("POST", "/api/v1/remediations", "responder", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["reason"] == reason and text in response.json()["error"], (
            body,
            response.json(),
        )
    assert world.call("GET", "/api/v1/remediations").json()["remediations"] == []

    pid = world.propose().id
    for body in (None, {}, {"reason": ""}):
        response = world.call("POST", f"/api/v1/remediations/{pid}/reject", "approver", json=body)
        assert response.status_code == 422, (body, response.text)
    blank = world.call("POST", f"/api/v1/remediations/{pid}/reject", "approver", json={"reason": "  "})
    assert blank.status_code == 422 and blank.json()["reason"] == "reason_required"
    unknown = world.call(
        "POST", f"/api/v1/remediations/{pid}/approve", "approver", json={"reason": "x", "force": 1}
    )
    assert unknown.status_code == 422 and unknown.json()["reason"] == "unknown_field"
    for method, path in [
        ("GET", "P-nope"),
        ("POST", "P-nope/approve"),
        ("POST", "P-nope/reject"),
        ("POST", "P-nope/execute"),
        ("GET", "'%3B%20DROP%20TABLE%20remediation_proposals%3B--"),
    ]:
        body = {"reason": "x"} if path.endswith("reject") else None
        response = world.call(method, f"/api/v1/remediations/{path}", json=body)
        assert response.status_code == 404 and response.json()["reason"] == "not_found", (path, response.text)
        assert "no remediation proposal" in response.json()["error"]


def test_reads_do_not_expire_but_show_overdue(world: World) -> None:
    proposal = world.propose()
    real_clock = world.ctx.clock
    world.ctx.clock = lambda: real_clock() + timedelta(hours=2)
    before = len(audit.entries(world.ctx.state))
    listed = world.call("GET", "/api/v1/remediations", "viewer").json()["remediations"]
    assert [(p["id"], p["state"], p["overdue"]) for p in listed] == [(proposal.id, "proposed", True)]
    assert world.call("GET", f"/api/v1/remediations/{proposal.id}").json()["overdue"] is True
    assert len(audit.entries(world.ctx.state)) == before
    expired = world.call("POST", f"/api/v1/remediations/{proposal.id}/approve", "approver")
    assert expired.status_code == 409 and expired.json()["reason"] == "expired"
    assert world.call("GET", f"/api/v1/remediations/{proposal.id}").json()["state"] == "expired"


def test_catalog(world: World) -> None:
    actions = {a["name"]: a for a in world.call("GET", "/api/v1/catalog", "viewer").json()["actions"]}
    assert actions["failover_database"]["risk"] == "high" and "toggle_feature_flag" in actions
