"""The web console on real components: the embedded ClickHouse, a SQLite state database, the real
correlator and approval workflow, users made with ``app.auth``, served by uvicorn in a thread (the
embedded engine allows one process per data path) and driven with httpx.

Each test signs people in the way a browser does (GET the login page for its CSRF token, POST the
token) and reads the HTML it gets back, so the checks are on what a person would see: which
buttons are there, which messages, and what the stores say afterwards.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app import auth, wiring
from app.api.context import ApiContext
from app.api.server import ServerThread
from app.console import mount_console
from app.console.servicemap import columns
from app.console.session import COOKIE, load_secret
from correlate.topology import Edge, make_topology, save_snapshot
from summarize.approval import State
from summarize.model import Remediation
from warroom import alerts, audit
from warroom.clickhouse import ClickHouse
from warroom.config import load_settings
from warroom.errors import ConfigError
from warroom.model import Alert, Evidence, Severity

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
EVIL = '<script>alert("pwned")</script>'
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class World:
    ctx: ApiContext
    url: str
    incident: str
    proposal: str
    tokens: dict[str, str]
    clients: ExitStack

    def client(self, user: str | None = None) -> httpx.Client:
        client = self.clients.enter_context(httpx.Client(base_url=self.url, timeout=30))
        if user is not None:
            answer = login(client, self.tokens[user])
            assert answer.status_code == 303, answer.text
        return client


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: httpx.Client, token: str, next_path: str = "/incidents") -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"csrf_token": csrf_of(page.text), "token": token, "next": next_path})


def post(client: httpx.Client, url: str, page: str, **fields: str) -> httpx.Response:
    """Submit a form the way the browser does: with the CSRF token of the page it is on."""
    return client.post(url, data={"csrf_token": csrf_of(client.get(page).text), **fields})


def flashes(client: httpx.Client, url: str) -> list[str]:
    html = client.get(url).text
    return [unescape(m) for m in re.findall(r'<p class="flash flash-\w+" role="\w+">(.*?)</p>', html)]


def alert(service: str, title: str, minute: float, severity: Severity = Severity.WARNING) -> Alert:
    """A firing alert with its detector's series (charted on the incident page) and a log sample."""
    start = int((T0 - timedelta(minutes=20)).timestamp())
    return Alert(
        fingerprint=f"fp-{service}",
        title=title,
        severity=severity,
        starts_at=T0 + timedelta(minutes=minute),
        score=0.9,
        labels={"service": service, "signal": "error_ratio"},
        evidence=Evidence(start, 60, tuple([0.01] * 20 + [0.3] * 10), log_samples=(f"ERROR {EVIL}",)),
    )


@pytest.fixture
def world(store: ClickHouse, tmp_path: Path) -> Iterator[World]:
    settings = load_settings(
        env={}, home=str(tmp_path / "home"), state_dsn=f"sqlite:///{tmp_path / 'state.db'}"
    )
    state = wiring.state_db(settings)
    correlator, _outbox = wiring.correlator(settings, store, state)
    ctx = ApiContext(settings, store, state, correlator, wiring.catalog(settings), clock=lambda: NOW)

    save_snapshot(
        store,
        make_topology(
            T0 - timedelta(hours=1),
            T0,
            [
                Edge("frontend", "checkout", "rpc", 600, 10.0, 0.2, 80.0),
                Edge("checkout", "payment", "rpc", 600, 10.0, 0.0, 40.0),
                Edge("payment", "postgres", "db", 900, 15.0, 0.0, 5.0),
                Edge("frontend", "catalog", "rpc", 300, 5.0, 0.0, 20.0),
            ],
        ),
        saved_at=T0,
    )
    alerts.write(
        store,
        [
            alert("checkout", f"checkout error ratio high {EVIL}", 0, Severity.CRITICAL),
            alert("payment", "payment latency p95 high", 1),
        ],
    )
    correlator.run(T0 - timedelta(hours=1), NOW)
    (incident,) = ctx.incidents.incidents()
    proposal = ctx.approvals().propose(
        incident.id,
        Remediation(
            "restart_service", {"service": "checkout", "namespace": "prod"}, "leaked memory", ("E1",)
        ),
        author="alice",
        source="manual",
    )
    tokens = {
        name: auth.add_user(state, name, role, actor="test")
        for name, role in [
            ("vera", "viewer"),
            ("rita", "responder"),
            ("alice", "approver"),
            ("bob", "approver"),
        ]
    }
    app = FastAPI()
    mount_console(app, ctx, secret=b"s" * 32)
    with ServerThread(app) as server, ExitStack() as clients:
        yield World(ctx, server.url, incident.id, proposal.id, tokens, clients)


# --- sessions ------------------------------------------------------------------------------------


def test_a_valid_token_starts_a_session_and_a_bad_one_is_refused_clearly(world: World) -> None:
    client = world.client()
    assert client.get("/").headers["location"] == "/login"
    assert client.get("/incidents").headers["location"] == "/login?next=/incidents"

    refused = login(client, "wr_not-a-real-token")
    assert refused.status_code == 401
    assert "That token is not valid" in refused.text and 'id="login-error"' in refused.text
    assert client.get("/incidents").status_code == 303  # still signed out

    answer = login(client, world.tokens["vera"], next_path=f"/incidents/{world.incident}")
    assert answer.status_code == 303 and answer.headers["location"] == f"/incidents/{world.incident}"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert world.tokens["vera"] not in cookie  # the cookie names the user; it never holds the token
    page = client.get("/incidents")
    assert page.status_code == 200
    assert 'id="current-user" data-user="vera" data-role="viewer"' in page.text
    assert "Signed in as vera (viewer)." in page.text
    for name, value in {
        "content-security-policy": "script-src 'self'",
        "x-frame-options": "DENY",
        "cache-control": "no-store",
    }.items():
        assert value in page.headers[name]


def test_next_after_login_stays_on_this_site(world: World) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        answer = login(world.client(), world.tokens["vera"], next_path=target)
        assert answer.headers["location"] == "/incidents", target


def test_a_revoked_user_or_a_rotated_token_ends_the_session_at_the_next_click(world: World) -> None:
    vera, rita = world.client("vera"), world.client("rita")
    assert vera.get("/incidents").status_code == 200
    auth.revoke(world.ctx.state, "vera", actor="admin")
    answer = vera.get("/incidents")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert "Your session ended because your access was revoked; sign in again." in flashes(vera, "/login")
    assert vera.get("/incidents").status_code == 303  # and it stays ended

    auth.rotate(world.ctx.state, "rita", actor="admin")
    assert rita.get(f"/incidents/{world.incident}").status_code == 303
    assert rita.get("/incidents/rows", headers={"X-Requested-With": "fetch"}).status_code == 401


def test_logout_ends_the_session(world: World) -> None:
    client = world.client("vera")
    answer = post(client, "/logout", "/incidents")
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert client.get("/incidents").status_code == 303


def test_a_tampered_cookie_is_a_signed_out_visit(world: World) -> None:
    client = world.client("bob")
    value = client.cookies[COOKIE]
    client.cookies.set(COOKIE, value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert client.get("/incidents").status_code == 303


def test_the_secret_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = load_secret(tmp_path / "home")
    path = tmp_path / "home" / "console-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32 and load_secret(tmp_path / "home") == first


def test_a_configured_secret_is_shared_by_replicas_and_must_be_long(tmp_path: Path) -> None:
    shared = "0123456789abcdef" * 4
    assert load_secret(tmp_path / "a", shared) == load_secret(tmp_path / "b", shared) == shared.encode()
    assert not (tmp_path / "a" / "console-secret").exists()  # nothing made on disk
    with pytest.raises(ConfigError) as err:
        load_secret(tmp_path / "a", "short")
    assert err.value.setting == "WARROOM_CONSOLE_SECRET"


# --- what each role sees -------------------------------------------------------------------------


def test_a_viewer_sees_every_page_but_no_action_buttons(world: World) -> None:
    client = world.client("vera")
    page = client.get(f"/incidents/{world.incident}")
    assert page.status_code == 200
    html = page.text
    pid = world.proposal
    assert f'id="plan-{pid}"' in html and f'id="audit-{pid}"' in html and f'id="proposal-{pid}"' in html
    assert 'data-audit-action="remediation.propose" data-actor="alice"' in html
    assert "The service runs more than one replica" in html  # the catalog's pre-checks
    assert 'id="root-causes"' in html and 'id="timeline-events"' in html and 'id="member-alerts"' in html
    for action in ("approve", "reject", "execute", "ack", "resolve"):
        assert f'data-action="{action}"' not in html, action
    for url in ("/incidents", "/alerts", "/map", "/digest", "/remediations", f"/remediations/{pid}"):
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert 'data-action="approve"' not in answer.text


def test_an_approver_sees_approve_and_reject_and_a_responder_ack_and_resolve(world: World) -> None:
    html = world.client("bob").get(f"/incidents/{world.incident}").text
    assert f'data-action="approve" data-proposal-id="{world.proposal}"' in html
    assert f'data-action="reject" data-proposal-id="{world.proposal}"' in html
    assert 'name="confirm" value="yes" required' in html and 'data-action="ack"' in html

    html = world.client("alice").get(f"/incidents/{world.incident}").text  # she proposed it
    assert 'data-action="approve"' not in html and "another approver must approve it" in html
    assert 'data-action="reject"' in html

    html = world.client("rita").get(f"/incidents/{world.incident}").text
    assert 'data-action="ack"' in html and 'data-action="approve"' not in html


# --- actions -------------------------------------------------------------------------------------


def test_approve_then_execute_the_dry_run_with_the_approver_in_the_audit_trail(world: World) -> None:
    client, pid = world.client("bob"), world.proposal
    page = f"/incidents/{world.incident}"

    unconfirmed = post(client, f"/remediations/{pid}/approve", page, reason="looks right")
    assert unconfirmed.status_code == 303
    assert any("tick “I checked the pre-checks”" in f for f in flashes(client, page))
    assert world.ctx.approvals().get(pid).state == State.PROPOSED

    answer = post(client, f"/remediations/{pid}/approve", page, confirm="yes", reason="heap graph agrees")
    assert answer.status_code == 303 and answer.headers["location"] == f"{page}#proposal-{pid}"
    approved = world.ctx.approvals().get(pid)
    assert approved.state == State.APPROVED and approved.approvers == ("bob",)
    entry = [e for e in audit.entries(world.ctx.state, subject=pid) if e.action == "remediation.approve"]
    assert [(e.actor, e.reason) for e in entry] == [("bob", "heap graph agrees")]

    html = client.get(page).text
    assert f"{pid} approved by bob; it can be executed now." in html
    assert 'data-audit-action="remediation.approve" data-actor="bob"' in html
    assert f'data-action="execute" data-proposal-id="{pid}"' in html and "Execute (dry run)" in html
    assert f'data-action="execute" data-proposal-id="{pid}"' in world.client("rita").get(page).text
    card = world.client("vera").get(f"/remediations/{pid}").text  # its citations lead to the incident
    assert f'<a class="ref" href="/incidents/{world.incident}#evidence-E1" data-evidence="E1">' in card

    done = post(client, f"/remediations/{pid}/execute", page)
    assert done.status_code == 303
    assert world.ctx.approvals().get(pid).state == State.SUCCEEDED
    html = client.get(page).text
    assert f'id="result-{pid}"' in html and "dry run: nothing was executed" in html
    trail = re.search(rf'<ol class="audit" id="audit-{pid}"[^>]*>(.*?)</ol>', html, re.S)
    assert trail is not None
    assert re.findall(r'data-audit-action="([^"]+)" data-actor="([^"]+)"', trail.group(1)) == [
        ("remediation.propose", "alice"),
        ("remediation.approve", "bob"),
        ("remediation.execute", "bob"),
        ("remediation.succeeded", "bob"),
    ]


def test_self_approval_is_a_message_not_an_error_page(world: World) -> None:
    client, pid = world.client("alice"), world.proposal
    page = f"/incidents/{world.incident}"
    answer = post(client, f"/remediations/{pid}/approve", page, confirm="yes")
    assert answer.status_code == 303
    (message,) = flashes(client, page)
    assert message.startswith(f"{pid} not approved: alice proposed {pid} and cannot approve it")
    assert world.ctx.approvals().get(pid).state == State.PROPOSED


def test_reject_needs_a_reason(world: World) -> None:
    client, pid = world.client("bob"), world.proposal
    page = f"/incidents/{world.incident}"
    post(client, f"/remediations/{pid}/reject", page, reason="   ")
    assert world.ctx.approvals().get(pid).state == State.PROPOSED
    assert any("give a reason" in f for f in flashes(client, page))
    post(client, f"/remediations/{pid}/reject", page, reason="wrong service")
    rejected = world.ctx.approvals().get(pid)
    assert rejected.state == State.REJECTED and rejected.decision_reason == "wrong service"


def test_posts_without_the_sessions_csrf_token_are_refused_and_change_nothing(world: World) -> None:
    client, pid = world.client("bob"), world.proposal
    other = world.client("alice")
    foreign = csrf_of(other.get("/incidents").text)  # a real token, but another session's
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}, {"csrf_token": foreign}):
        for url in (f"/remediations/{pid}/approve", f"/incidents/{world.incident}/ack", "/logout"):
            answer = client.post(url, data={**data, "confirm": "yes"})
            assert answer.status_code == 403, (url, data)
            assert "Form rejected (CSRF check)" in answer.text
    assert world.ctx.approvals().get(pid).state == State.PROPOSED
    assert world.ctx.incidents.get(world.incident).status == "open"
    assert client.get("/incidents").status_code == 200  # still signed in


def test_a_viewer_cannot_post_anything_even_with_a_valid_form(world: World) -> None:
    client, pid = world.client("vera"), world.proposal
    page = f"/incidents/{world.incident}"
    for url in (
        f"/remediations/{pid}/approve",
        f"/remediations/{pid}/reject",
        f"/remediations/{pid}/execute",
        f"/incidents/{world.incident}/ack",
        f"/incidents/{world.incident}/resolve",
    ):
        answer = post(client, url, page, confirm="yes", reason="because")
        assert answer.status_code == 403, url
        assert "vera is a viewer" in unescape(answer.text)
    assert world.ctx.approvals().get(pid).state == State.PROPOSED
    assert world.ctx.incidents.get(world.incident).status == "open"
    assert [e.action for e in audit.entries(world.ctx.state, subject=pid)] == ["remediation.propose"]


def test_a_responder_acknowledges_and_resolves_through_the_correlator(world: World) -> None:
    client, page = world.client("rita"), f"/incidents/{world.incident}"
    assert post(client, f"{page}/ack", page).status_code == 303
    incident = world.ctx.incidents.get(world.incident)
    assert incident.status == "acknowledged" and incident.acknowledged_by == "rita"
    html = client.get(page).text
    assert f"{world.incident} acknowledged by rita." in html
    assert 'data-kind="acknowledged"' in html and 'data-action="ack"' not in html
    post(client, f"{page}/resolve", page)
    assert world.ctx.incidents.get(world.incident).status == "resolved"
    post(client, f"{page}/resolve", page)  # again: the correlator refuses, the console says so
    assert any("already resolved" in f for f in flashes(client, page))
    actions = [e.action for e in audit.entries(world.ctx.state, subject=world.incident)]
    assert actions == ["incident.acknowledged", "incident.resolved"]


def test_unknown_things_are_404_pages(world: World) -> None:
    client = world.client("bob")
    for url in ("/incidents/inc-nope", "/remediations/P-nope"):
        answer = client.get(url)
        assert answer.status_code == 404 and "Not found" in answer.text
    assert post(client, "/remediations/P-nope/approve", "/incidents", confirm="yes").status_code == 404


# --- pages ---------------------------------------------------------------------------------------


def test_telemetry_text_is_escaped_everywhere(world: World) -> None:
    client = world.client("vera")
    for url in ("/incidents", "/incidents/rows", f"/incidents/{world.incident}", "/alerts", "/digest"):
        html = client.get(url).text
        assert EVIL not in html, url
        assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html, url


def test_the_incident_page_links_claims_to_their_evidence(world: World) -> None:
    html = world.client("vera").get(f"/incidents/{world.incident}").text
    cited = set(re.findall(r'<a class="ref" href="#(evidence-[^"]+)"', html))
    anchors = set(re.findall(r'<details class="evidence" id="([^"]+)"', html))
    assert cited and cited <= anchors
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html  # the detector's series, charted


def test_the_incident_list_filters_and_serves_its_rows_for_refresh(world: World) -> None:
    client = world.client("vera")
    page = client.get("/incidents").text
    assert f'data-incident-id="{world.incident}"' in page
    assert 'data-refresh-url="/incidents/rows?status=active"' in page
    rows = client.get("/incidents/rows?status=active", headers={"X-Requested-With": "fetch"})
    assert rows.status_code == 200 and rows.text.lstrip().startswith("<tr")
    assert f'data-incident-id="{world.incident}"' in rows.text
    assert 'class="empty"' in client.get("/incidents/rows?status=resolved").text
    assert 'class="empty"' in client.get("/incidents?service=nope").text
    assert world.client().get("/incidents/rows", headers={"X-Requested-With": "fetch"}).status_code == 401


def test_the_alert_explorer_filters_by_service_and_window(world: World) -> None:
    client = world.client("vera")
    html = client.get("/alerts?service=payment&since=1h&firing=1").text
    assert re.findall(r'class="alert-row firing" data-fingerprint="([^"]+)"', html) == ["fp-payment"]
    assert f'href="/incidents/{world.incident}"' in html
    assert 'id="no-alerts"' in client.get("/alerts?since=1m").text  # both started 9+ minutes ago
    assert "invalid duration" in client.get("/alerts?since=soon").text


def test_the_service_map_draws_the_topology_and_marks_anomalous_services(world: World) -> None:
    html = world.client("vera").get("/map").text
    svg = re.search(r'<svg id="service-map".*?</svg>', html, re.S)
    assert svg is not None
    found = re.findall(
        r'<g class="(node(?: anomalous)?)" id="node-[^"]+" data-service="([^"]+)"', svg.group(0)
    )
    nodes = {service: cls for cls, service in found}
    assert nodes == {
        "frontend": "node",
        "catalog": "node",
        "checkout": "node anomalous",
        "payment": "node anomalous",
        "postgres": "node",
    }
    assert 'href="/alerts?service=checkout"' in svg.group(0)
    assert 'data-caller="frontend" data-callee="checkout"' in svg.group(0)
    assert 'class="edge edge-rpc failing"' in svg.group(0)  # 20% of frontend → checkout calls fail


def test_the_service_map_without_a_topology_says_how_to_get_one(world: World) -> None:
    world.ctx.store.command(f"TRUNCATE TABLE {world.ctx.store.table('warroom_topology')}")
    html = world.client("vera").get("/map").text
    assert 'id="no-topology"' in html and 'id="unmapped-services"' in html


def test_the_digest_lists_the_period_incidents(world: World) -> None:
    html = world.client("vera").get("/digest?since=24h").text
    assert f'<tr class="digest-incident" data-incident-id="{world.incident}">' in html
    assert 'id="mtta"' in html and 'id="noisiest-table"' in html


def test_static_assets_are_served_from_the_package(world: World) -> None:
    client = world.client()
    for name, kind in (("console.js", "javascript"), ("console.css", "text/css")):
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 200 and kind in answer.headers["content-type"]


def test_map_columns_follow_call_depth_and_survive_cycles() -> None:
    edges = [
        Edge("web", "api", "rpc", 1, 1.0, 0.0, 1.0),
        Edge("api", "db", "db", 1, 1.0, 0.0, 1.0),
        Edge("web", "db", "db", 1, 1.0, 0.0, 1.0),
        Edge("api", "worker", "messaging", 1, 1.0, 0.0, 1.0),
        Edge("worker", "api", "rpc", 1, 1.0, 0.0, 1.0),  # a cycle
    ]
    topology = make_topology(T0, NOW, edges)
    assert columns(topology) == {"web": 0, "api": 1, "worker": 2, "db": 2}


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids += [value for name, value in attrs if name == "id" and value]


def test_element_ids_are_unique_on_every_page(world: World) -> None:
    """Browser tests select by id (``plan-<id>``, ``audit-<id>`` …): an id used twice would make
    them act on the wrong element."""
    client = world.client("bob")
    for url in (
        "/incidents",
        f"/incidents/{world.incident}",
        "/alerts",
        "/map",
        "/digest",
        "/remediations",
        f"/remediations/{world.proposal}",
    ):
        parser = _Ids()
        parser.feed(client.get(url).text)
        doubled = sorted({i for i in parser.ids if parser.ids.count(i) > 1})
        assert doubled == [], (url, doubled)
