"""The approval workflow on SQLite and PostgreSQL: roles, the two-person rule, expiry, exactly-once
execution under concurrency, and an audit trail that reveals tampering."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from summarize import approval, executors
from summarize.approval import Approvals, Roles, State
from summarize.catalog import Catalog
from summarize.model import Remediation
from warroom import audit
from warroom.errors import ConfigError, Conflict, Forbidden, InputError
from warroom.statedb import StateDB, connect, migrate

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
APPROVERS = ["alice", "bob", "carol", *(f"a{i}" for i in range(20))]
ROLES = Roles.load({"roles": {"approver": APPROVERS, "operator": ["oscar"]}})

APPEND = """
import sys
with open(sys.argv[1], "a") as fh:
    fh.write(sys.argv[2] + "\\n")
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(state_dsn: str) -> Iterator[StateDB]:
    opened = connect(state_dsn)
    migrate(opened, [audit.METADATA, approval.METADATA])
    yield opened
    opened.dispose()


def _catalog(tmp_path: Path, **executor: Any) -> Catalog:
    script = tmp_path / "append_line.py"
    script.write_text(APPEND)
    argv = [sys.executable, str(script), str(tmp_path / "ran.txt"), "{service}"]
    body = {
        "title": "Append a line",
        "risk": "low",
        "prechecks": ["The file is writable."],
        "params": {"service": {}},
        "executor": {"kind": "command", "argv": argv, "enabled": True, **executor},
    }
    return Catalog.load({"actions": {"append_line": body}})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def flow(db: StateDB, tmp_path: Path, clock: Clock) -> Approvals:
    return Approvals(db, _catalog(tmp_path), ROLES, timedelta(hours=1), clock)


def _remedy(action: str = "append_line", **params: Any) -> Remediation:
    return Remediation(
        action, params or {"service": "checkout"}, "checkout errors since deploy", ("E1", "E2")
    )


def _lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "ran.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_propose_validates_and_audits(flow: Approvals) -> None:
    with pytest.raises(InputError, match="must match"):
        flow.propose("inc-1", _remedy(service="$(reboot)"), "alice")
    with pytest.raises(InputError, match="unknown action"):
        flow.propose("inc-1", _remedy("format_disk"), "alice")
    with pytest.raises(InputError, match="source"):
        flow.propose("inc-1", _remedy(), "alice", source="oracle")
    assert flow.list() == [] and audit.entries(flow.db) == []

    p = flow.propose("inc-1", _remedy(), "alice")
    assert p.id.startswith("P-") and p.state is State.PROPOSED and p.source == "rule"
    assert p.params == {"service": "checkout"} and p.evidence == ("E1", "E2") and p.risk == "low"
    assert p.expires_at == T0 + timedelta(hours=1) and p.approvals == () and p.version == 1
    assert '"checkout"]' in p.plan and "1. The file is writable." in p.plan
    assert flow.get(p.id) == p and p.to_json()["state"] == "proposed"
    (entry,) = flow.trail(p.id)
    assert (entry.actor, entry.action, entry.reason) == ("alice", "remediation.propose", p.text)
    assert entry.before is None and entry.after["state"] == "proposed"
    assert entry.after["params"] == {"service": "checkout"}
    assert [x.id for x in flow.list(incident="inc-1", state="proposed")] == [p.id]
    assert flow.list(incident="inc-2") == [] and flow.list(state="approved") == []
    with pytest.raises(InputError):
        flow.list(state="pending")
    with pytest.raises(InputError) as err:
        flow.get("P-missing")
    assert err.value.reason == "not_found"


def test_roles_are_enforced(flow: Approvals, db: StateDB) -> None:
    p = flow.propose("inc-1", _remedy(), "alice")
    with pytest.raises(Forbidden) as err:
        flow.approve(p.id, "mallory")
    assert err.value.reason == "not_approver"
    with pytest.raises(Forbidden) as err:
        flow.approve(p.id, "oscar")  # an operator executes but does not approve
    assert err.value.reason == "not_approver"
    flow.approve(p.id, "bob")
    with pytest.raises(Forbidden) as err:
        flow.execute(p.id, "mallory")
    assert err.value.reason == "not_operator"
    assert flow.get(p.id).state is State.APPROVED

    nobody = Approvals(db, flow.catalog, Roles.load({}))
    with pytest.raises(Forbidden) as err:
        nobody.approve(p.id, "bob")
    assert err.value.reason == "not_approver" and "[roles] approver" in str(err.value)


@pytest.mark.parametrize(
    ("roles", "key"),
    [
        ({"roles": ["alice"]}, "roles"),
        ({"roles": {"admin": ["alice"]}}, "roles.admin"),
        ({"roles": {"approver": "alice"}}, "roles.approver"),
        ({"roles": {"operator": ["ok", ""]}}, "roles.operator"),
    ],
)
def test_roles_table_is_validated(roles: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        Roles.load(roles)
    assert err.value.setting == key


def test_self_approval_and_double_votes_are_refused(flow: Approvals) -> None:
    p = flow.propose("inc-1", _remedy("failover_database", database="orders"), "alice")
    with pytest.raises(Forbidden) as err:
        flow.approve(p.id, "alice")
    assert err.value.reason == "self_approval"
    flow.approve(p.id, "bob", "lag is zero")
    with pytest.raises(Forbidden) as err:
        flow.approve(p.id, "bob")
    assert err.value.reason == "already_approved"
    after = flow.get(p.id)
    assert after.state is State.PROPOSED and after.approvers == ("bob",)
    assert [e.action for e in flow.trail(p.id)] == ["remediation.propose", "remediation.approve"]


def test_high_risk_needs_two_distinct_approvers(flow: Approvals) -> None:
    p = flow.propose("inc-1", _remedy("failover_database", database="orders"), "alice")
    assert p.approvals_needed == 2
    first = flow.approve(p.id, "bob", "replica lag 0s")
    assert first.state is State.PROPOSED and len(first.approvals) == 1
    with pytest.raises(Conflict) as err:
        flow.execute(p.id, "oscar")
    assert err.value.reason == "not_approved"
    second = flow.approve(p.id, "carol", "fenced the old primary")
    assert second.state is State.APPROVED and second.approvers == ("bob", "carol")
    assert second.decided_by == "carol"
    done = flow.execute(p.id, "oscar")
    assert done.state is State.SUCCEEDED and done.executed_by == "oscar"
    assert done.result is not None and done.result.output == p.plan  # a dry run reports its plan
    trail = flow.trail(p.id)
    assert [e.action for e in trail] == [
        "remediation.propose",
        "remediation.approve",
        "remediation.approve",
        "remediation.execute",
        "remediation.succeeded",
    ]
    assert trail[2].before == {"state": "proposed", "approvals": ["bob"]}
    assert trail[2].after == {"state": "approved", "approvals": ["bob", "carol"]}


def test_reject(flow: Approvals, tmp_path: Path) -> None:
    p = flow.propose("inc-1", _remedy(), "alice")
    with pytest.raises(InputError):
        flow.reject(p.id, "bob", " ")
    flow.approve(p.id, "bob")
    rejected = flow.reject(p.id, "carol", "the deploy was already rolled back")
    assert rejected.state is State.REJECTED and rejected.decided_by == "carol"
    for attempt in (lambda: flow.approve(p.id, "a1"), lambda: flow.execute(p.id, "oscar")):
        with pytest.raises(Conflict) as err:
            attempt()
        assert err.value.reason == "rejected"
    assert _lines(tmp_path) == []
    entry = flow.trail(p.id)[-1]
    assert (entry.actor, entry.action, entry.reason) == (
        "carol",
        "remediation.reject",
        rejected.decision_reason,
    )


def test_expiry(flow: Approvals, clock: Clock, tmp_path: Path) -> None:
    waiting = flow.propose("inc-1", _remedy(), "alice")
    approved = flow.propose("inc-1", _remedy(), "alice")
    flow.approve(approved.id, "bob")
    swept = flow.propose("inc-2", _remedy(), "alice")
    clock.now += timedelta(minutes=59)
    assert flow.expire_due() == []
    clock.now += timedelta(minutes=1)
    with pytest.raises(Conflict) as err:
        flow.approve(waiting.id, "bob")
    assert err.value.reason == "expired"
    with pytest.raises(Conflict) as err:
        flow.execute(approved.id, "oscar")  # approved an hour ago is not approved now
    assert err.value.reason == "expired"
    assert _lines(tmp_path) == []
    (expired,) = flow.expire_due()
    assert expired.id == swept.id
    assert {p.state for p in flow.list()} == {State.EXPIRED}
    for p in (waiting, approved, swept):
        entry = flow.trail(p.id)[-1]
        assert (entry.actor, entry.action) == ("warroom", "remediation.expire")
        assert entry.after["state"] == "expired" and "ttl 3600s" in entry.reason
    with pytest.raises(Conflict) as err:  # stays expired
        flow.approve(swept.id, "bob")
    assert err.value.reason == "expired"
    assert audit.verify(flow.db).ok


def test_failed_command_is_recorded(db: StateDB, tmp_path: Path) -> None:
    flow = Approvals(
        db, _catalog(tmp_path, argv=[sys.executable, "-c", "raise SystemExit(4)", "{service}"]), ROLES
    )
    p = flow.propose("inc-1", _remedy(), "alice")
    flow.approve(p.id, "bob")
    failed = flow.execute(p.id, "oscar")
    assert failed.state is State.FAILED and failed.result is not None and failed.result.detail == "exit 4"
    assert flow.trail(p.id)[-1].after == {
        "state": "failed",
        "approvals": ["bob"],
        "ok": False,
        "detail": "exit 4",
    }
    with pytest.raises(Conflict) as err:
        flow.execute(p.id, "oscar")
    assert err.value.reason == "already_executed"


def test_unusable_executor_or_changed_catalog_keep_the_approval(db: StateDB, tmp_path: Path) -> None:
    disabled = Approvals(db, _catalog(tmp_path, enabled=False), ROLES)
    p = disabled.propose("inc-1", _remedy(), "alice")
    disabled.approve(p.id, "bob")
    with pytest.raises(ConfigError) as config_err:
        disabled.execute(p.id, "oscar")
    assert config_err.value.setting == "actions.append_line.executor.enabled"
    assert disabled.get(p.id).state is State.APPROVED and _lines(tmp_path) == []

    changed = Approvals(db, _catalog(tmp_path, argv=["/bin/echo", "{service}"]), ROLES)
    with pytest.raises(Conflict) as err:
        changed.execute(p.id, "oscar")
    assert err.value.reason == "plan_changed"
    done = Approvals(db, _catalog(tmp_path), ROLES).execute(p.id, "bob")  # approvers may execute
    assert done.state is State.SUCCEEDED and _lines(tmp_path) == ["checkout"]


def test_a_run_that_dies_stays_executing_and_is_never_rerun(
    flow: Approvals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = flow.propose("inc-1", _remedy(), "alice")
    flow.approve(p.id, "bob")

    def die(*_args: Any) -> executors.ExecutionResult:
        raise KeyboardInterrupt  # stands in for the process being killed mid-run

    monkeypatch.setattr(executors, "execute", die)
    with pytest.raises(KeyboardInterrupt):
        flow.execute(p.id, "oscar")
    monkeypatch.undo()
    assert flow.get(p.id).state is State.EXECUTING
    with pytest.raises(Conflict) as err:
        flow.execute(p.id, "oscar")
    assert err.value.reason == "already_executing"
    assert _lines(tmp_path) == []


def test_concurrent_approve_and_execute_runs_exactly_once(flow: Approvals, tmp_path: Path) -> None:
    p = flow.propose("inc-1", _remedy(), "alice")
    actors = [f"a{i}" for i in range(20)]
    start = threading.Barrier(len(actors))
    outcomes: dict[str, list[Any]] = {a: [] for a in actors}

    def worker(actor: str) -> None:
        start.wait()
        for step in (flow.approve, flow.execute):
            try:
                outcomes[actor].append(step(p.id, actor).state)
            except (Conflict, Forbidden) as exc:
                outcomes[actor].append(exc.reason)
            except Exception as exc:  # recorded, so the assertion below names it
                outcomes[actor].append(repr(exc))

    threads = [threading.Thread(target=worker, args=(a,)) for a in actors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    approved = [a for a in actors if outcomes[a][0] is State.APPROVED]
    executed = [a for a in actors if outcomes[a][1] is State.SUCCEEDED]
    assert len(approved) == 1 and len(executed) == 1, outcomes
    allowed = {"already_approved", "already_executing", "already_executed", "not_approved"}
    losers = [o for a in actors for o in outcomes[a] if o not in (State.APPROVED, State.SUCCEEDED)]
    assert set(losers) <= allowed, outcomes
    assert _lines(tmp_path) == ["checkout"]
    final = flow.get(p.id)
    assert final.state is State.SUCCEEDED and final.executed_by == executed[0]
    assert [e.action for e in flow.trail(p.id)] == [
        "remediation.propose",
        "remediation.approve",
        "remediation.execute",
        "remediation.succeeded",
    ]

    assert audit.verify(flow.db) == audit.Verification(True, 4)
    with flow.db.begin() as conn:  # someone rewrites who approved it
        conn.execute(sa.update(audit.AUDIT).where(audit.AUDIT.c.seq == 2).values(actor="mallory"))
    broken = audit.verify(flow.db)
    assert not broken.ok and broken.first_bad_seq == 2


def test_concurrent_proposals_keep_one_audit_chain(flow: Approvals) -> None:
    """Different proposals changing at once contend only on the audit log's head; none is lost."""
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        start.wait()
        try:
            p = flow.propose(f"inc-{i}", _remedy(), "alice")
            flow.approve(p.id, f"a{i}")
            flow.reject(p.id, "bob", "not needed")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(flow.list(state="rejected")) == 8
    assert audit.verify(flow.db) == audit.Verification(True, 24)


# --- queued execution (the executor service) ------------------------------------------------------


def test_queued_proposal_runs_once_in_the_requesters_name(
    flow: Approvals, db: StateDB, tmp_path: Path
) -> None:
    p = flow.propose("inc-1", _remedy(), "alice")
    with pytest.raises(Conflict) as err:
        flow.queue(p.id, "oscar")
    assert err.value.reason == "not_approved"
    flow.approve(p.id, "bob")
    with pytest.raises(Forbidden):
        flow.queue(p.id, "mallory")
    queued = flow.queue(p.id, "oscar")
    assert queued.state is State.QUEUED and queued.executed_by == "oscar" and _lines(tmp_path) == []
    for again in (flow.queue, flow.execute):
        with pytest.raises(Conflict) as err:
            again(p.id, "oscar")
        assert err.value.reason == "already_queued"

    # Two executors at once (a new leader and one that lost its lock a moment ago): one run.
    executors_ = [Approvals(db, _catalog(tmp_path), ROLES, timedelta(hours=1), flow.clock) for _ in range(2)]
    start = threading.Barrier(2)
    results: list[list[Any]] = [[], []]

    def run(i: int) -> None:
        start.wait()
        results[i] = executors_[i].run_queued()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ran = [r for rs in results for r in rs]
    assert [r.state for r in ran] == [State.SUCCEEDED] and _lines(tmp_path) == ["checkout"]
    assert flow.get(p.id).executed_by == "oscar" and flow.run_queued() == []
    assert [(e.actor, e.action) for e in flow.trail(p.id)] == [
        ("alice", "remediation.propose"),
        ("bob", "remediation.approve"),
        ("oscar", "remediation.queue"),
        ("oscar", "remediation.execute"),
        ("oscar", "remediation.succeeded"),
    ]


def test_queued_proposal_that_can_no_longer_run_fails_or_expires(
    db: StateDB, tmp_path: Path, clock: Clock
) -> None:
    flow = Approvals(db, _catalog(tmp_path), ROLES, timedelta(hours=1), clock)
    changed_plan, revoked = (flow.propose(f"inc-{i}", _remedy(), "alice") for i in range(2))
    for p in (changed_plan, revoked):
        flow.approve(p.id, "bob" if p is changed_plan else "carol")
    flow.queue(changed_plan.id, "oscar")
    flow.queue(revoked.id, "bob")

    later = Approvals(
        db,
        _catalog(tmp_path, argv=["/bin/echo", "{service}"]),
        Roles.load({"roles": {"operator": ["oscar"]}}),
        timedelta(hours=1),
        clock,
    )
    by_id = {p.id: p for p in later.run_queued()}
    details = {pid: (p.state, p.result.detail if p.result else "") for pid, p in by_id.items()}
    assert details[changed_plan.id][0] is State.FAILED and "changed since" in details[changed_plan.id][1]
    assert details[revoked.id][0] is State.FAILED and "bob" in details[revoked.id][1]  # no longer allowed
    assert [e.actor for e in later.trail(revoked.id)][-1] == "warroom"
    assert _lines(tmp_path) == []

    p = flow.propose("inc-9", _remedy(), "alice")
    flow.approve(p.id, "bob")
    flow.queue(p.id, "oscar")
    clock.now += timedelta(hours=2)  # nobody ran it in time: an old approval is not today's
    assert [x.id for x in flow.run_queued()] == [p.id] and flow.get(p.id).state is State.EXPIRED
    assert _lines(tmp_path) == []
