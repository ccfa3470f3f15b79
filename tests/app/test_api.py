"""The HTTP API against the real thing: uvicorn in a thread, the embedded ClickHouse, the state
database (SQLite, and PostgreSQL for a smoke run), real incidents made by the correlator from
alerts in the store, and httpx as the client.

The role matrix calls every endpoint as every kind of caller — each role, no token, a revoked
token, a garbage token — and checks the answer: the least role and above get their 2xx (each on a
fresh subject, so a second caller is not refused for state reasons), lower roles 403 naming the role
needed, the rest 401 with a Bearer challenge. Every allowed mutating call must leave an audit entry
with the caller as the actor. The other tests pin the behaviour of each group of routes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import auth, wiring
from app.api.context import ApiContext
from app.api.server import ServerThread, create_app
from summarize.approval import Proposal
from summarize.model import Remediation
from warroom import alerts, audit
from warroom.clickhouse import ClickHouse
from warroom.config import load_settings
from warroom.model import Alert, Severity

pytestmark = pytest.mark.integration

SQLITE_ONLY = pytest.mark.parametrize("state_dsn", ["sqlite"], indirect=True)

ROLES = ("viewer", "responder", "approver", "admin")
PRINCIPALS = (*ROLES, "no token", "revoked", "garbage")
USERS = {"viewer": "vera", "responder": "rick", "approver": "april", "admin": "adam"}
CONFIG = """
[receivers.hook]
type = "webhook"
url = "http://127.0.0.1:9/hook"
secret = "k"

[teams.sre]
receivers = ["hook"]

[[routes]]
team = "sre"
"""


@dataclass
class World:
    """A served API over seeded incidents, with a token per principal and subject factories."""

    client: httpx.Client
    ctx: ApiContext
    tokens: dict[str, str | None]
    blocks: dict[str, list[str]]  # purpose → incident ids (one incident per block of alerts)
    fingerprints: dict[str, list[str]]  # incident id → its alerts
    counter: Iterator[int] = field(default_factory=itertools.count)

    def call(self, method: str, path: str, principal: str = "admin", **kwargs: Any) -> httpx.Response:
        token = self.tokens[principal]
        headers = {**kwargs.pop("headers", {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def take(self, purpose: str) -> str:
        """An incident nobody has used yet for ``purpose`` (resolve, merge source …)."""
        return self.blocks[purpose].pop()

    def propose(self, action: str = "toggle_feature_flag", **params: Any) -> Proposal:
        remedy = Remediation(
            action, params or {"flag": "new-checkout", "enabled": False}, "flag broke it", ()
        )
        return self.ctx.approvals().propose(self.blocks["ack"][0], remedy, author="warroom")

    def approved(self) -> Proposal:
        return self.ctx.approvals().approve(self.propose().id, "carol", "looks right")

    def user(self, role: str = "viewer") -> str:
        name = f"u{next(self.counter)}"
        auth.add_user(self.ctx.state, name, role, actor="seed")
        return name


def alert(fingerprint: str, service: str, at: datetime, title: str) -> Alert:
    return Alert(fingerprint, title, Severity.CRITICAL, at, labels={"service": service, "host.name": "h-1"})


# Blocks of alerts 20 minutes apart (beyond the 15-minute grouping window), so each is its own
# incident: purpose → (service, alerts in it).
LAYOUT = {
    "ack": [("checkout", 2)],
    "resolve": [(f"resolve-{i}", 1) for i in range(4)],
    "merge-target": [("orders", 1)],
    "merge-source": [(f"merge-{i}", 1) for i in range(4)],
    "split": [("billing", 6)],
}


def seed(
    store: ClickHouse, correlator_ctx: ApiContext, start: datetime
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Write the alerts of :data:`LAYOUT` and correlate them; returns purpose → incident ids."""
    written: list[Alert] = []
    services: dict[str, str] = {}
    at = start
    for purpose, blocks in LAYOUT.items():
        for service, count in blocks:
            services[service] = purpose
            for n in range(count):
                written.append(
                    alert(f"{service}-{n}", service, at + timedelta(minutes=n % 3), f"{service} errors {n}")
                )
            at += timedelta(minutes=20)
    alerts.write(store, written)
    summary = correlator_ctx.correlator.run(start - timedelta(minutes=1), correlator_ctx.clock())
    assert summary.opened == sum(len(b) for b in LAYOUT.values()), summary
    blocks: dict[str, list[str]] = {p: [] for p in LAYOUT}
    fingerprints: dict[str, list[str]] = {}
    for incident in correlator_ctx.incidents.incidents(limit=1000):
        (service,) = incident.services
        blocks[services[service]].append(incident.id)
        fingerprints[incident.id] = sorted(incident.fingerprints)
    return blocks, fingerprints


@pytest.fixture
def serve(store: ClickHouse, state_dsn: str, tmp_path: Path) -> Iterator[Callable[..., World]]:
    """Build a seeded world and serve it; ``serve(**settings)`` overrides settings."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> World:
            home = tmp_path / "home"
            home.mkdir(exist_ok=True)
            (home / "warroom.toml").write_text(CONFIG)
            settings = load_settings(env={}, home=str(home), state_dsn=state_dsn, **overrides)
            state = wiring.state_db(settings)
            stack.callback(state.dispose)
            correlator, outbox = wiring.correlator(settings, store, state)
            stack.enter_context(outbox)
            ctx = ApiContext(settings, store, state, correlator, wiring.catalog(settings))
            blocks, fingerprints = seed(store, ctx, datetime.now(UTC) - timedelta(hours=4))
            tokens: dict[str, str | None] = {
                role: auth.add_user(state, name, role, actor="seed") for role, name in USERS.items()
            }
            auth.add_user(state, "carol", "approver", actor="seed")  # approves what others execute
            tokens["revoked"] = auth.add_user(state, "rex", "responder", actor="seed")
            auth.revoke(state, "rex", actor="seed")
            tokens |= {"no token": None, "garbage": "wr_" + "x" * 43}
            server = stack.enter_context(ServerThread(create_app(ctx)))
            client = stack.enter_context(httpx.Client(base_url=server.url, timeout=30))
            return World(client, ctx, tokens, blocks, fingerprints)

        yield start


@pytest.fixture
def world(serve: Callable[..., World]) -> World:
    return serve()


# --- the role matrix ------------------------------------------------------------------------------

Factory = Callable[[World, str], Any]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: Factory  # (world, principal) → path; a fresh subject for each allowed caller
    least: str | None  # the least role; None: no token needed
    status: int = 200
    body: Factory | None = None
    audited: str | None = None  # the audit action an allowed call must append


def fixed(path: str) -> Factory:
    return lambda w, p: path


def first(purpose: str, suffix: str = "") -> Factory:
    return lambda w, p: f"/api/v1/incidents/{w.blocks[purpose][0]}{suffix}"


def allowed(principal: str, least: str = "responder") -> bool:
    return principal in ROLES and auth.allows(principal, least)


def fresh(purpose: str, suffix: str) -> Factory:
    """A subject of its own for each caller who will get through (a refused one changes nothing)."""
    return lambda w, p: f"/api/v1/incidents/{w.take(purpose) if allowed(p) else w.blocks[purpose][0]}{suffix}"


def _split_path(w: World, p: str) -> str:
    return first("split", "/split")(w, p)


def _split_body(w: World, p: str) -> dict[str, Any]:
    members = w.fingerprints[w.blocks["split"][0]]
    return {"fingerprints": [members.pop() if allowed(p) else members[0]]}


GENERIC_ALERT = {
    "fingerprint": "intake-1",
    "title": "intake test",
    "severity": "warning",
    "starts_at": "2026-03-01T12:00:00Z",
    "labels": {"service": "intake"},
}
AM_PAYLOAD = {
    "version": "4",
    "alerts": [{"labels": {"alertname": "Intake", "service": "intake"}, "startsAt": "2026-03-01T12:00:00Z"}],
}

ENDPOINTS: dict[str, Endpoint] = {
    "healthz": Endpoint("GET", fixed("/healthz"), None),
    "readyz": Endpoint("GET", fixed("/readyz"), None),
    "openapi": Endpoint("GET", fixed("/openapi.json"), None),
    "docs": Endpoint("GET", fixed("/docs"), None),
    "incidents": Endpoint("GET", fixed("/api/v1/incidents"), "viewer"),
    "incident": Endpoint("GET", first("ack"), "viewer"),
    "explain": Endpoint("GET", first("ack", "/explain"), "viewer"),
    "ack": Endpoint("POST", first("ack", "/ack"), "responder", audited="incident.acknowledged"),
    "resolve": Endpoint("POST", fresh("resolve", "/resolve"), "responder", audited="incident.resolved"),
    "merge": Endpoint(
        "POST",
        first("merge-target", "/merge"),
        "responder",
        body=lambda w, p: {
            "sources": [w.take("merge-source") if allowed(p) else w.blocks["merge-source"][0]]
        },
        audited="incident.merged",
    ),
    "split": Endpoint("POST", _split_path, "responder", body=_split_body, audited="incident.split"),
    "evidence": Endpoint("GET", first("ack", "/evidence"), "viewer"),
    "summary": Endpoint("GET", first("ack", "/summary"), "viewer"),
    "summarize": Endpoint("POST", first("ack", "/summarize"), "responder", audited="incident.summarize"),
    "digest": Endpoint("GET", fixed("/api/v1/digest"), "viewer"),
    "alerts": Endpoint("GET", fixed("/api/v1/alerts?since=6h"), "viewer"),
    "intake": Endpoint("POST", fixed("/api/v1/alerts"), "responder", 202, body=lambda w, p: GENERIC_ALERT),
    "intake-am": Endpoint(
        "POST", fixed("/api/v1/alerts/alertmanager"), "responder", 202, body=lambda w, p: AM_PAYLOAD
    ),
    "topology": Endpoint("GET", fixed("/api/v1/topology"), "viewer"),
    "remediations": Endpoint("GET", fixed("/api/v1/remediations"), "viewer"),
    "remediation": Endpoint("GET", lambda w, p: f"/api/v1/remediations/{w.propose().id}", "viewer"),
    "propose": Endpoint(
        "POST",
        fixed("/api/v1/remediations"),
        "responder",
        201,
        body=lambda w, p: {
            "incident": w.blocks["ack"][0],
            "action": "open_runbook",
            "params": {"runbook": "runbooks/checkout-5xx"},
            "reason": "the runbook covers this",
        },
        audited="remediation.propose",
    ),
    "approve": Endpoint(
        "POST",
        lambda w, p: f"/api/v1/remediations/{w.propose().id}/approve",
        "approver",
        body=lambda w, p: {"reason": "ok"},
        audited="remediation.approve",
    ),
    "reject": Endpoint(
        "POST",
        lambda w, p: f"/api/v1/remediations/{w.propose().id}/reject",
        "approver",
        body=lambda w, p: {"reason": "not now"},
        audited="remediation.reject",
    ),
    "execute": Endpoint(
        "POST",
        lambda w, p: f"/api/v1/remediations/{w.approved().id}/execute",
        "responder",
        audited="remediation.succeeded",
    ),
    "catalog": Endpoint("GET", fixed("/api/v1/catalog"), "viewer"),
    "audit": Endpoint("GET", fixed("/api/v1/audit"), "admin"),
    "audit-verify": Endpoint("GET", fixed("/api/v1/audit/verify"), "admin"),
    "users": Endpoint("GET", fixed("/api/v1/users"), "admin"),
    "add-user": Endpoint(
        "POST",
        fixed("/api/v1/users"),
        "admin",
        201,
        body=lambda w, p: {"name": f"new{next(w.counter)}", "role": "viewer"},
        audited="user.add",
    ),
    "revoke-user": Endpoint(
        "POST", lambda w, p: f"/api/v1/users/{w.user()}/revoke", "admin", audited="user.revoke"
    ),
    "rotate-token": Endpoint(
        "POST",
        lambda w, p: f"/api/v1/users/{w.user()}/token",
        "admin",
        body=lambda w, p: {"role": "responder"},
        audited="user.token",
    ),
}


def expected(endpoint: Endpoint, principal: str) -> int:
    if endpoint.least is None:
        return endpoint.status
    if principal not in ROLES:
        return 401
    return endpoint.status if auth.allows(principal, endpoint.least) else 403


def check_matrix(world: World, name: str, principals: tuple[str, ...] = PRINCIPALS) -> None:
    endpoint = ENDPOINTS[name]
    for principal in principals:
        path = endpoint.path(world, principal)
        kwargs = {} if endpoint.body is None else {"json": endpoint.body(world, principal)}
        before = len(audit.entries(world.ctx.state))
        response = world.call(endpoint.method, path, principal, **kwargs)
        want = expected(endpoint, principal)
        where = f"{name} as {principal}: {endpoint.method} {path}"
        assert response.status_code == want, (where, response.text[:500])
        if want == 401:
            assert response.json()["reason"] in ("missing_token", "invalid_token"), where
            assert response.headers["www-authenticate"].startswith("Bearer"), where
        elif want == 403:
            body = response.json()
            assert body["reason"] == "forbidden" and f"needs role {endpoint.least}" in body["error"], where
        if endpoint.audited is not None:
            added = audit.entries(world.ctx.state)[before:]
            if want < 300:
                mine = [e for e in added if e.actor == USERS[principal] and e.action == endpoint.audited]
                assert mine, (where, [(e.actor, e.action) for e in added])
            else:
                assert added == [], (where, "a refused call changed the audit log")


@SQLITE_ONLY
@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_role_matrix(world: World, name: str) -> None:
    check_matrix(world, name)


def test_role_matrix_smoke_on_both_state_databases(world: World) -> None:
    """A mutating route of each kind on SQLite and PostgreSQL, as the least role, one below, no token."""
    for name in ("incidents", "ack", "merge", "approve", "execute", "add-user", "audit"):
        least = ENDPOINTS[name].least
        assert least is not None
        below = ROLES[ROLES.index(least) - 1] if least != "viewer" else "no token"
        check_matrix(world, name, (least, below, "revoked"))
