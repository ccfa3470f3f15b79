"""Users, tokens and the audit log over HTTP (admin), and what the API promises every caller: the
OpenAPI document, health and readiness, and errors as one JSON shape with a clear message."""

from __future__ import annotations

import pytest

from app import auth
from app.api.context import ApiContext
from app.api.deps import MAX_BODY_BYTES
from app.api.server import ServerThread, create_app
from tests.app.test_api import ENDPOINTS, SQLITE_ONLY, World, serve, world
from warroom import statedb

__all__ = ["serve", "world"]

pytestmark = [pytest.mark.integration, SQLITE_ONLY]


def test_users_lifecycle(world: World) -> None:
    created = world.call("POST", "/api/v1/users", json={"name": "alertmanager", "role": "responder"})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("wr_") and "not shown again" in created.json()["note"]
    assert created.json()["user"] == {**created.json()["user"], "name": "alertmanager", "revoked": False}
    listed = world.call("GET", "/api/v1/users").json()["users"]
    assert token not in str(listed) and {u["name"] for u in listed} >= {"alertmanager", "adam", "rex"}
    world.tokens["bot"] = token
    assert world.call("GET", "/api/v1/incidents", "bot").status_code == 200

    duplicate = world.call("POST", "/api/v1/users", json={"name": "alertmanager", "role": "viewer"})
    assert duplicate.status_code == 409 and "exists" in duplicate.json()["error"]
    rotated = world.call("POST", "/api/v1/users/alertmanager/token", json={"role": "viewer"})
    assert rotated.status_code == 200 and rotated.json()["user"]["role"] == "viewer"
    assert world.call("GET", "/api/v1/incidents", "bot").status_code == 401  # the old token is gone
    world.tokens["bot"] = rotated.json()["token"]
    assert world.call("POST", f"/api/v1/incidents/{world.blocks['ack'][0]}/ack", "bot").status_code == 403

    revoked = world.call("POST", "/api/v1/users/alertmanager/revoke")
    assert revoked.status_code == 200 and revoked.json()["user"]["revoked"] is True
    gone = world.call("GET", "/api/v1/incidents", "bot")
    assert gone.status_code == 401 and gone.json() == {
        "error": "invalid or revoked API token",
        "reason": "invalid_token",
    }
    assert gone.headers["www-authenticate"] == 'Bearer realm="warroom", error="invalid_token"'

    trail = world.call("GET", "/api/v1/audit?subject=user:alertmanager").json()["entries"]
    assert [(e["actor"], e["action"]) for e in trail] == [
        ("adam", "user.revoke"),
        ("adam", "user.token"),
        ("adam", "user.add"),
    ]
    for body, reason in [
        ({"name": "bad name!", "role": "viewer"}, "invalid_name"),
        ({"name": "x", "role": "root"}, "invalid_field"),
        ({"name": "x"}, "missing_field"),
        ({"name": "x", "role": "viewer", "token": "mine"}, "unknown_field"),
    ]:
        response = world.call("POST", "/api/v1/users", json=body)
        assert response.status_code == 422 and response.json()["reason"] == reason, (body, response.text)
    for path in ("nobody/revoke", "nobody/token"):
        response = world.call("POST", f"/api/v1/users/{path}")
        assert response.status_code == 404 and response.json() == {
            "error": "no user 'nobody'",
            "reason": "unknown_user",
        }


def test_audit_pages_newest_first_and_verifies(world: World) -> None:
    for _ in range(3):
        world.call("POST", f"/api/v1/incidents/{world.blocks['ack'][0]}/ack", "responder")
    first = world.call("GET", "/api/v1/audit?limit=4").json()
    seqs = [e["seq"] for e in first["entries"]]
    assert seqs == [10, 9, 8, 7] and first["next_before"] == 7
    rest = world.call("GET", f"/api/v1/audit?limit=100&before={first['next_before']}").json()
    assert [e["seq"] for e in rest["entries"]] == [6, 5, 4, 3, 2, 1] and rest["next_before"] is None
    assert first["entries"][0]["actor"] == "rick" and first["entries"][0]["action"] == "incident.acknowledged"
    assert world.call("GET", "/api/v1/audit/verify").json() == {
        "ok": True,
        "entries": 10,
        "first_bad_seq": None,
        "problem": None,
    }
    assert world.call("GET", "/api/v1/audit?before=0").status_code == 422


def test_openapi_lists_every_route_with_the_token_scheme(world: World) -> None:
    document = world.call("GET", "/openapi.json", "no token").json()
    paths = document["paths"]
    for name, endpoint in ENDPOINTS.items():
        if name in ("openapi", "docs"):
            continue
        template = endpoint.path(world, "viewer").split("?")[0]
        for incident in world.fingerprints:
            template = template.replace(incident, "{incident_id}")
        matches = [p for p in paths if _matches(p, template)]
        assert matches and endpoint.method.lower() in paths[matches[0]], (name, template)
    assert document["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["token"]["description"],
    }
    ack = paths["/api/v1/incidents/{incident_id}/ack"]["post"]
    assert ack["security"] == [{"token": []}]
    assert "<html" in world.call("GET", "/docs", "no token").text.lower()


def _matches(template: str, path: str) -> bool:
    parts, wanted = template.strip("/").split("/"), path.strip("/").split("/")
    return len(parts) == len(wanted) and all(
        p.startswith("{") or p == w for p, w in zip(parts, wanted, strict=True)
    )


def test_readyz_names_the_store_that_is_down(world: World) -> None:
    ready = world.call("GET", "/readyz", "no token")
    assert ready.json() == {"status": "ready", "checks": {"store": "ok", "state": "ok"}}
    broken = statedb.connect("postgresql://nobody@127.0.0.1:1/none")
    ctx = ApiContext(world.ctx.settings, world.ctx.store, broken, world.ctx.correlator, world.ctx.catalog)
    with ServerThread(create_app(ctx)) as server:
        import httpx

        response = httpx.get(f"{server.url}/readyz", timeout=30)
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert response.json() == {
            "error": "not ready: state unavailable",
            "reason": "not_ready",
            "checks": {"store": "ok", "state": "unavailable"},
        }
        assert httpx.get(f"{server.url}/healthz", timeout=30).json() == {"status": "ok"}
        down = httpx.get(
            f"{server.url}/api/v1/incidents", headers={"Authorization": "Bearer wr_x"}, timeout=30
        )
        assert down.status_code == 503 and down.json()["reason"] == "store_unavailable"
        assert "nobody" not in down.text  # the driver's message goes to the log


def test_malformed_requests_get_a_clear_4xx(world: World) -> None:
    target = world.blocks["merge-target"][0]
    merge = f"/api/v1/incidents/{target}/merge"
    json_header = {"content-type": "application/json"}
    cases = [
        (merge, b'{"sources": [', json_header, 400, "invalid_json", "malformed JSON"),
        (merge, b"{'sources': []}", json_header, 400, "invalid_json", "malformed JSON"),
        (
            merge,
            b'{"sources": ["x"]}',
            {"content-type": "text/plain"},
            415,
            "unsupported_media_type",
            "text/plain",
        ),
        (merge, b"", json_header, 422, "missing_field", "request body is required"),
        (merge, b'{"sources": ["x"]}', {}, 415, "unsupported_media_type", "got 'none'"),
        (merge, b" " * (MAX_BODY_BYTES + 1), json_header, 413, "payload_too_large", "larger than the limit"),
        (
            merge,
            [b" " * 8192] * 10,
            json_header,
            413,
            "payload_too_large",
            "larger than the limit",
        ),  # chunked
        ("/api/v1/remediations", b"[1, 2", json_header, 400, "invalid_json", "malformed JSON"),
    ]
    for path, body, headers, status, reason, text in cases:
        response = world.call("POST", path, "responder", content=body, headers=headers)
        assert response.status_code == status, (path, str(body)[:40], response.text)
        assert response.json()["reason"] == reason and text in response.json()["error"], response.json()
        assert "\n" not in response.json()["error"]
        if isinstance(body, list):
            assert "content-length" not in response.request.headers  # counted as it arrived
    wrong_method = world.call("DELETE", f"/api/v1/incidents/{target}")
    assert wrong_method.status_code == 405 and wrong_method.json()["reason"] == "method_not_allowed"
    nowhere = world.call("GET", "/api/v1/nothing-here")
    assert nowhere.status_code == 404 and nowhere.json()["reason"] == "not_found"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_token"),
        ("Bearer", "missing_token"),
        ("Basic YWRtaW46YWRtaW4=", "missing_token"),
        ("Bearer not-a-warroom-token", "invalid_token"),
        ("Bearer wr_" + "A" * 200, "invalid_token"),
        ("Bearer wr_'; DROP TABLE api_users; --", "invalid_token"),
    ],
)
def test_bad_credentials_are_401_with_a_challenge(world: World, header: str | None, reason: str) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = world.client.get("/api/v1/incidents", headers=headers)
    assert response.status_code == 401 and response.json()["reason"] == reason, response.text
    assert response.headers["www-authenticate"].startswith('Bearer realm="warroom"')
    assert len(auth.users(world.ctx.state)) == 6
