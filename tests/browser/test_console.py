"""The web console in a real browser: Chromium (Debian's, through Playwright) signs in with API
tokens and clicks through the pages the way an on-call engineer would.

One server for the module, on real components: the session's embedded ClickHouse (emptied, then
seeded once with a learned topology and two firing alerts that the real correlator groups into an
incident), a SQLite state database in a temporary folder, a low-risk dry-run remediation proposed
by ``warroom`` through :class:`summarize.approval.Approvals`, and three users made with
:mod:`app.auth`: ``vera`` (viewer), ``rick`` (responder) and ``ada`` (approver). uvicorn serves it
in a thread (the embedded engine allows one process per data path).

Each test gets a fresh browser context (``page``), so sessions never leak between tests, and
saves screenshots into ``tests/artifacts/`` (gitignored); the approver's test also writes
``tests/artifacts/console-incident.png``, the README's picture of an incident page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from app import auth, wiring
from app.api.context import ApiContext
from app.api.server import ServerThread
from app.console import mount_console
from correlate.topology import Edge, make_topology, save_snapshot
from summarize.approval import State
from summarize.model import Remediation
from warroom import alerts, audit
from warroom import schema as s
from warroom.clickhouse import ClickHouse
from warroom.config import load_settings
from warroom.model import Alert, Evidence, Severity

pytestmark = pytest.mark.integration

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
expect = sync_api.expect

# Not the times or services of tests/app/test_console.py: the store is shared by the session.
T0 = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=12)
SERVICES = ("frontend", "checkout", "payment", "postgres", "catalog", "inventory")
ROLES = {"vera": "viewer", "rick": "responder", "ada": "approver"}
FLAG = "checkout.new-payment-flow"


@dataclass(frozen=True)
class World:
    ctx: ApiContext
    url: str
    incident: str
    proposal: str
    tokens: dict[str, str]


def _alert(service: str, title: str, minute: float, signal: str, severity: Severity) -> Alert:
    """A firing alert with its detector's series (charted as evidence) and a log sample."""
    start = int((T0 - timedelta(minutes=20)).timestamp())
    base, peak = (0.01, 0.24) if signal == "error_ratio" else (180.0, 920.0)
    return Alert(
        fingerprint=f"fp-browser-{service}",
        title=title,
        severity=severity,
        starts_at=T0 + timedelta(minutes=minute),
        score=0.93,
        labels={"service": service, "signal": signal},
        evidence=Evidence(
            start,
            60,
            tuple([base] * 20 + [peak] * 10),
            log_samples=(f"ERROR {service}: upstream payment call failed (HTTP 502)",),
        ),
    )


def _empty(store: ClickHouse) -> None:
    """What the function-scoped ``store`` fixture does before each test, once for this module."""
    for table in (*s.TELEMETRY_TABLES, s.TRACE_ID_TS, s.DEAD_LETTERS, s.LEDGER, "alerts", "warroom_topology"):
        store.command(f"TRUNCATE TABLE {store.table(table)}")


@pytest.fixture(scope="module")
def world(_migrated: ClickHouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    store = _migrated
    _empty(store)
    tmp = tmp_path_factory.mktemp("console-browser")
    settings = load_settings(env={}, home=str(tmp / "home"), state_dsn=f"sqlite:///{tmp / 'state.db'}")
    state = wiring.state_db(settings)
    correlator, _outbox = wiring.correlator(settings, store, state)
    ctx = ApiContext(settings, store, state, correlator, wiring.catalog(settings), clock=lambda: NOW)

    save_snapshot(
        store,
        make_topology(
            T0 - timedelta(hours=1),
            T0,
            [
                Edge("frontend", "checkout", "rpc", 720, 12.0, 0.18, 95.0),
                Edge("frontend", "catalog", "rpc", 1500, 25.0, 0.0, 22.0),
                Edge("checkout", "payment", "rpc", 700, 11.7, 0.02, 410.0),
                Edge("checkout", "inventory", "rpc", 650, 10.8, 0.0, 18.0),
                Edge("payment", "postgres", "db", 1400, 23.3, 0.0, 6.0),
                Edge("catalog", "postgres", "db", 900, 15.0, 0.0, 4.0),
            ],
        ),
        saved_at=T0,
    )
    alerts.write(
        store,
        [
            _alert("checkout", "checkout error ratio above 20%", 0, "error_ratio", Severity.CRITICAL),
            _alert("payment", "payment latency p95 above 800 ms", 1, "latency_p95", Severity.WARNING),
        ],
    )
    correlator.run(T0 - timedelta(hours=1), NOW)
    (incident,) = ctx.incidents.incidents()
    proposal = ctx.approvals().propose(
        incident.id,
        Remediation(
            "toggle_feature_flag",
            {"flag": FLAG, "enabled": False},
            "Turn off the new payment flow: checkout errors started with it.",
            ("E1",),
        ),
        author="warroom",
        source="rule",
    )
    assert proposal.risk == "low" and proposal.approvals_needed == 1
    tokens = {name: auth.add_user(state, name, role, actor="test") for name, role in ROLES.items()}
    app = FastAPI()
    mount_console(app, ctx, secret=b"b" * 32)
    with ServerThread(app) as server:
        yield World(ctx, server.url, incident.id, proposal.id, tokens)


def sign_in(page: Any, world: World, user: str, next_path: str = "") -> None:
    """Through the login form, as a person does; lands on ``next_path`` (default: the incidents)."""
    page.goto(f"{world.url}/login" + (f"?next={next_path}" if next_path else ""))
    page.fill("#token", world.tokens[user])
    page.click('button[data-action="login"]')
    expect(page).to_have_url(world.url + (next_path or "/incidents"))
    expect(page.locator("#current-user")).to_have_attribute("data-role", ROLES[user])
    expect(page.locator("#flashes .flash")).to_contain_text(f"Signed in as {user} ({ROLES[user]}).")


def action_buttons(within: Any) -> Any:
    """The approve, reject and execute buttons in ``within`` (a page or a locator)."""
    return within.locator(
        'button[data-action="approve"], button[data-action="reject"], button[data-action="execute"]'
    )


# --- roles ---------------------------------------------------------------------------------------


def test_a_viewer_reads_the_incident_and_its_plan_but_gets_no_buttons(
    page: Any, world: World, screenshot: Callable[..., Path]
) -> None:
    pid = world.proposal
    sign_in(page, world, "vera")
    row = page.locator(f'tbody#incident-rows tr.incident-row[data-incident-id="{world.incident}"]')
    expect(row).to_be_visible()
    row.locator("a.incident-link").click()
    expect(page).to_have_url(f"{world.url}/incidents/{world.incident}")

    expect(page.locator("#root-causes li.root-cause").first).to_be_visible()
    causes = page.locator("#root-causes li.root-cause").evaluate_all(
        "items => items.map(i => i.dataset.service)"
    )
    assert "checkout" in causes, causes
    expect(page.locator("#summary")).to_be_visible()
    expect(page.locator("#summary")).to_contain_text("Hypotheses")
    card = page.locator(f"article.proposal#proposal-{pid}")
    expect(card).to_be_visible()
    expect(card).to_have_attribute("data-state", "proposed")
    expect(page.locator(f"pre#plan-{pid}")).to_contain_text("toggle_feature_flag: Toggle a feature flag")
    expect(page.locator(f"pre#plan-{pid}")).to_contain_text(f"flag='{FLAG}', enabled=False")
    expect(
        page.locator(f'ol#audit-{pid} li.audit-entry[data-audit-action="remediation.propose"]')
    ).to_have_attribute("data-actor", "warroom")
    expect(action_buttons(page)).to_have_count(0)
    expect(page.locator(f"#confirm-{pid}")).to_have_count(0)
    screenshot(page)

    page.goto(f"{world.url}/remediations/{pid}")
    expect(page.locator(f"article.proposal#proposal-{pid}")).to_be_visible()
    expect(action_buttons(page)).to_have_count(0)


def test_an_approver_approves_then_executes_the_dry_run(
    page: Any, world: World, screenshot: Callable[..., Path]
) -> None:
    pid, incident_page = world.proposal, f"/incidents/{world.incident}"
    sign_in(page, world, "ada", next_path=incident_page)
    card = page.locator(f"article.proposal#proposal-{pid}")
    expect(card).to_have_attribute("data-state", "proposed")
    approve = page.locator(f'button[data-action="approve"][data-proposal-id="{pid}"]')
    expect(approve).to_be_visible()
    expect(page.locator(f'button[data-action="execute"][data-proposal-id="{pid}"]')).to_have_count(0)
    card.scroll_into_view_if_needed()
    screenshot(page, "before")

    page.check(f"#confirm-{pid}")
    page.fill(f"#approve-reason-{pid}", "error spike starts with the flag rollout")
    approve.click()
    expect(page).to_have_url(f"{world.url}{incident_page}#proposal-{pid}")
    expect(page.locator("#flashes .flash.flash-ok")).to_have_text(
        f"{pid} approved by ada; it can be executed now."
    )
    expect(card).to_have_attribute("data-state", "approved")
    entry = page.locator(f'ol#audit-{pid} li.audit-entry[data-audit-action="remediation.approve"]')
    expect(entry).to_have_attribute("data-actor", "ada")
    expect(entry).to_contain_text("error spike starts with the flag rollout")
    plan = page.locator(f"pre#plan-{pid}").inner_text()
    assert "runs: nothing (dry run)" in plan
    shot = screenshot(page, "approved")
    page.screenshot(path=str(shot.with_name("console-incident.png")), full_page=True)  # the README's

    dialogs: list[str] = []

    def confirm(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    page.click(f'button[data-action="execute"][data-proposal-id="{pid}"]')
    expect(card).to_have_attribute("data-state", "succeeded")
    assert dialogs == [f"Execute {pid} (toggle_feature_flag) as a dry run?"]
    expect(page.locator("#flashes .flash.flash-ok")).to_contain_text(
        f"{pid} succeeded: dry run: nothing was executed"
    )
    result = page.locator(f"pre#result-{pid}")
    expect(result).to_be_visible()
    assert result.inner_text() == plan  # a dry run's output is the plan the approver read
    actions = page.locator(f"ol#audit-{pid} li.audit-entry").evaluate_all(
        "items => items.map(i => [i.dataset.auditAction, i.dataset.actor])"
    )
    assert actions == [
        ["remediation.propose", "warroom"],
        ["remediation.approve", "ada"],
        ["remediation.execute", "ada"],
        ["remediation.succeeded", "ada"],
    ]
    expect(action_buttons(card)).to_have_count(0)
    screenshot(page, "executed")
    assert world.ctx.approvals().get(pid).state == State.SUCCEEDED


# --- refusals ------------------------------------------------------------------------------------


def test_a_bad_token_is_refused_and_a_viewers_forged_posts_change_nothing(
    page: Any, world: World, screenshot: Callable[..., Path]
) -> None:
    page.goto(f"{world.url}/incidents")
    expect(page).to_have_url(f"{world.url}/login?next=/incidents")
    page.fill("#token", "wr_not-a-real-token")
    page.click('button[data-action="login"]')
    expect(page.locator("#login-error")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("That token is not valid")
    expect(page.locator("#current-user")).to_have_count(0)
    screenshot(page, "bad-token")

    pid = world.proposal
    before = world.ctx.approvals().get(pid).state
    trail = len(audit.entries(world.ctx.state, subject=pid))
    sign_in(page, world, "vera")
    url = f"{world.url}/remediations/{pid}/approve"
    answer = page.request.post(url, form={"confirm": "yes"}, max_redirects=0)
    assert answer.status == 403 and "Form rejected (CSRF check)" in answer.text()
    # With the session's own CSRF token the form passes its check, and the role check refuses it.
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert token
    answer = page.request.post(url, form={"csrf_token": token, "confirm": "yes"}, max_redirects=0)
    assert answer.status == 403 and "vera is a viewer" in answer.text()
    assert world.ctx.approvals().get(pid).state == before
    assert len(audit.entries(world.ctx.state, subject=pid)) == trail
    page.reload()
    expect(page.locator("#current-user")).to_have_attribute("data-user", "vera")  # still signed in


# --- pages ---------------------------------------------------------------------------------------


def test_the_service_map_marks_the_incident_and_leads_to_the_alerts(
    page: Any, world: World, screenshot: Callable[..., Path]
) -> None:
    sign_in(page, world, "rick")
    page.click("#nav-map")
    expect(page).to_have_url(f"{world.url}/map")
    expect(page.locator("svg#service-map")).to_be_visible()
    for service in SERVICES:
        expect(page.locator(f"svg#service-map g.node#node-{service}")).to_be_visible()
    anomalous = page.locator("svg#service-map g.node.anomalous").evaluate_all(
        "nodes => nodes.map(n => n.dataset.service).sort()"
    )
    assert anomalous == ["checkout", "payment"]
    expect(page.locator('path.edge[data-caller="frontend"][data-callee="checkout"]')).to_have_class(
        re.compile(r"\bfailing\b")
    )
    screenshot(page)

    page.locator("svg#service-map g.node#node-checkout").click()
    expect(page).to_have_url(f"{world.url}/alerts?service=checkout")
    rows = page.locator("#alerts-table tr.alert-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-service", "checkout")
    screenshot(page, "alerts")


def test_the_digest_lists_the_incident(page: Any, world: World, screenshot: Callable[..., Path]) -> None:
    sign_in(page, world, "vera")
    page.click("#nav-digest")
    expect(page).to_have_url(f"{world.url}/digest")
    expect(page.locator("#digest")).to_be_visible()
    expect(page.locator("#mtta")).to_be_visible()
    row = page.locator(f'tr.digest-incident[data-incident-id="{world.incident}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("checkout")
    screenshot(page)
    row.locator("a").first.click()
    expect(page).to_have_url(f"{world.url}/incidents/{world.incident}")


def test_a_citation_opens_and_highlights_its_evidence(
    page: Any, world: World, screenshot: Callable[..., Path]
) -> None:
    sign_in(page, world, "vera", next_path=f"/incidents/{world.incident}")
    ref = page.locator("#summary a.ref[data-evidence]").first
    evidence_id = ref.get_attribute("data-evidence")
    assert evidence_id
    item = page.locator(f"details.evidence#evidence-{evidence_id}")
    expect(item).not_to_have_attribute("open", "")
    ref.click()
    expect(item).to_have_attribute("open", "")
    expect(item).to_have_class(re.compile(r"\bhighlight\b"))
    expect(item).to_be_in_viewport()
    expect(page).to_have_url(f"{world.url}/incidents/{world.incident}#evidence-{evidence_id}")
    screenshot(page, full_page=False)


def test_a_rejection_needs_a_reason_and_its_outcome_is_shown_in_view(
    page: Any, world: World, screenshot: Callable[..., Path]
) -> None:
    """Runs last: it adds a second proposal to the incident (and rejects it)."""
    pid = (
        world.ctx.approvals()
        .propose(
            world.incident,
            Remediation(
                "scale_replicas",
                {"service": "payment", "namespace": "prod", "replicas": 6},
                "Add payment replicas to absorb the latency.",
                ("E2",),
            ),
            author="warroom",
            source="rule",
        )
        .id
    )
    sign_in(page, world, "ada", next_path=f"/incidents/{world.incident}")
    card = page.locator(f"article.proposal#proposal-{pid}")
    reject = card.locator(f'button[data-action="reject"][data-proposal-id="{pid}"]')
    reject.click()  # no reason: the browser keeps the form (its textarea is required)
    expect(card).to_have_attribute("data-state", "proposed")
    assert page.locator(f"#reject-reason-{pid}").evaluate("e => e.validity.valueMissing")

    page.fill(f"#reject-reason-{pid}", "latency comes from checkout retries, not load")
    reject.click()
    expect(card).to_have_attribute("data-state", "rejected")
    entry = page.locator(f'ol#audit-{pid} li.audit-entry[data-audit-action="remediation.reject"]')
    expect(entry).to_have_attribute("data-actor", "ada")
    expect(action_buttons(card)).to_have_count(0)
    flash = page.locator("#flashes .flash", has_text=f"{pid} rejected by ada.")
    expect(flash).to_have_count(1)
    screenshot(page, full_page=False)
    in_view = flash.evaluate(
        "e => { const r = e.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; }"
    )
    # Card forms redirect to /incidents/<id>#proposal-<pid>: the browser scrolls to the card, and
    # the message saying what happened must still be in view (it is sticky).
    assert in_view
