"""Grouping and root-cause ranking on hand-built alerts over the fixture shop's topology."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from correlate.grouping import STAGES, Grouper, GroupingConfig, Incident, incident_id
from correlate.rootcause import rank
from correlate.topology import Edge, Topology, make_topology
from warroom.model import Alert, SeriesKey, Severity, SignalKind

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

SHOP = [
    ("frontend", "checkout", "rpc"),
    ("checkout", "payment", "rpc"),
    ("payment", "postgres", "db"),
    ("frontend", "cart", "rpc"),
    ("cart", "redis", "db"),
    ("frontend", "catalog", "rpc"),
    ("catalog", "postgres", "db"),
    ("checkout", "inventory", "rpc"),
    ("checkout", "shipping", "rpc"),
    ("frontend", "recommendation", "rpc"),
    ("recommendation", "catalog", "rpc"),
]


@pytest.fixture(scope="module")
def shop() -> Topology:
    edges = [Edge(a, b, kind, 1000, 10.0, 0.001, 50.0) for a, b, kind in SHOP]  # type: ignore[arg-type]
    return make_topology(T0 - timedelta(hours=1), T0, edges)


def alert(
    entity: str,
    signal: SignalKind,
    title: str,
    at: timedelta,
    score: float = 0.8,
    severity: Severity = Severity.WARNING,
    **labels: str,
) -> Alert:
    edge = entity if "->" in entity else ""
    service = entity.split("->")[0] if edge else entity
    merged = {"service": service, "signal": signal.value, **({"edge": edge} if edge else {}), **labels}
    merged = {k.replace("_", "."): v for k, v in merged.items()}
    return Alert(
        fingerprint=SeriesKey(signal, entity, tuple(sorted(labels.items()))).fingerprint(),
        title=title,
        severity=severity,
        starts_at=T0 + at,
        score=score,
        labels=merged,
    )


def minutes(m: float) -> timedelta:
    return timedelta(minutes=m)


def postgres_fault() -> list[Alert]:
    p95 = SignalKind.LATENCY_P95
    return [
        alert("payment->postgres", p95, "payment->postgres latency p95 high", minutes(0), 0.95),
        alert("catalog->postgres", p95, "catalog->postgres latency p95 high", minutes(0.5), 0.9),
        alert("payment", p95, "payment latency p95 high", minutes(1), 0.8, host_name="node-a"),
        alert("checkout", p95, "checkout latency p95 high", minutes(2), 0.7),
        alert("frontend", p95, "frontend latency p95 high", minutes(3), 0.6, Severity.CRITICAL),
    ]


def cart_memory() -> Alert:
    # Same minutes as the postgres fault, after frontend (cart's caller) joined it: only time and a
    # one-hop topology link connect them.
    return alert("cart", SignalKind.METRIC, "cart container memory usage above limit", minutes(3.2), 0.9)


def bad_deploy(at: timedelta) -> list[Alert]:
    return [
        alert(
            "checkout",
            SignalKind.ERROR_RATIO,
            "checkout error ratio high",
            at,
            0.9,
            Severity.CRITICAL,
            service_version="2.4.0",
        ),
        alert(
            "checkout",
            SignalKind.NEW_LOG_TEMPLATE,
            "checkout new error log template",
            at,
            0.7,
            service_version="2.4.0",
            template="NullPointerException in CartMapper.toOrder <*>",
        ),
        alert("frontend", SignalKind.ERROR_RATIO, "frontend error ratio high", at + minutes(1), 0.6),
    ]


def by_incident(grouper: Grouper) -> dict[str, set[str]]:
    return {i.id: set(i.fingerprints) for i in grouper.incidents()}


def test_stage_order_is_listed() -> None:
    assert STAGES == ("dedup", "affinity", "candidates", "score", "decide")


def test_one_fault_on_connected_services_is_one_incident(shop: Topology) -> None:
    grouper = Grouper(shop, GroupingConfig())
    fault = postgres_fault()
    decisions = grouper.add_all([*fault, cart_memory()])
    incidents = grouper.incidents()
    assert len(incidents) == 2
    main, cart = incidents
    assert set(main.fingerprints) == {a.fingerprint for a in fault}
    assert cart.fingerprints == (cart_memory().fingerprint,)
    assert main.id == incident_id(fault[0])
    assert main.severity is Severity.CRITICAL  # max of members
    assert main.status == "open"
    assert main.services == ("catalog", "checkout", "frontend", "payment", "postgres")
    assert [d.joined for d in decisions] == [False, True, True, True, True, False]
    cart_decision = decisions[-1]
    assert cart_decision.candidates[0].incident_id == main.id
    # A memory metric is saturation, local to cart: it does not spread along calls to frontend.
    assert cart_decision.candidates[0].factors.topology == 0.0
    assert cart_decision.candidates[0].score < GroupingConfig().join_threshold


def test_every_decision_records_per_factor_scores(shop: Topology) -> None:
    grouper = Grouper(shop)
    decisions = grouper.add_all([*postgres_fault(), cart_memory()])
    assert decisions[0].candidates == ()  # nothing open yet: opened, and says so
    assert "no open incident" in decisions[0].reason
    for d in decisions[1:]:
        assert d.candidates, d
        for c in d.candidates:
            f = c.factors
            for value in (f.topology, f.resources, f.text, f.time, f.change):
                assert 0.0 <= value <= 1.0
            assert c.score == pytest.approx(f.weighted(grouper.config), abs=1e-6)
    main = grouper.incidents()[0]
    assert grouper.explain(main.id) == [d for d in decisions if d.incident_id == main.id]
    assert grouper.incident(main.id).decisions == tuple(grouper.explain(main.id))
    # payment calls postgres, the incident's root (the service its members all lead to): one hop
    # up, 0.5; time decays from the incident's onset.
    payment = decisions[2].candidates[0].factors
    assert payment.topology == 0.5 and 0.5 < payment.time <= 1.0 and payment.text > 0.3


def test_duplicates_update_and_never_create(shop: Topology) -> None:
    grouper = Grouper(shop)
    fault = postgres_fault()
    grouper.add_all(fault)
    before = by_incident(grouper)
    resent = grouper.add(replace(fault[3], score=0.99, updated_at=fault[3].starts_at + minutes(1)))
    assert resent.duplicate and resent.joined and resent.candidates == ()
    assert by_incident(grouper) == before
    assert grouper.alerts(resent.incident_id)[3].score == 0.99
    # Resolving every member leaves the decision to resolve to the lifecycle (quiet period).
    for a in fault:
        grouper.add(replace(a, ends_at=a.starts_at + minutes(5)))
    assert by_incident(grouper) == before
    first = grouper.incidents()[0]
    assert grouper.all_resolved(first.id) and first.status == "open"
    assert grouper.resolve(first.id, T0 + minutes(10)).status == "resolved"
    # A member firing again soon after the resolve reopens the incident ...
    again = grouper.add(replace(fault[0], starts_at=T0 + minutes(12)))
    assert again.joined and again.reopened and again.incident_id == first.id
    assert grouper.incident(first.id).status == "open" and grouper.incident(first.id).reopen_count == 1
    # ... an unrelated alert after a resolve opens a new one, and so does a re-fire long after.
    grouper.resolve(first.id, T0 + minutes(20))
    late = grouper.add(replace(cart_memory(), starts_at=T0 + minutes(21)))
    assert not late.joined and len(grouper.incidents()) == 2
    much_later = grouper.add(replace(fault[0], starts_at=T0 + minutes(20 + 31)))
    assert not much_later.reopened and much_later.incident_id != first.id


def test_merge_and_split_keep_the_story(shop: Topology) -> None:
    grouper = Grouper(shop)
    decisions = grouper.add_all(postgres_fault() + [cart_memory()])
    ids = [i.id for i in grouper.incidents()]
    assert len(ids) >= 2
    target, source = ids[0], ids[1]
    moved = set(grouper.incident(source).fingerprints)
    merged = grouper.merge(target, source, "alice", T0 + minutes(30))
    assert moved <= set(merged.fingerprints) and source not in {i.id for i in grouper.incidents()}
    assert grouper.explain(target)[-1].actor == "alice" and "merged" in grouper.explain(target)[-1].reason
    # A re-send of a moved alert now dedups into the target.
    moved_alert = next(a for a in [cart_memory()] if a.fingerprint in moved)
    assert grouper.add(moved_alert).incident_id == target
    fresh = grouper.split(target, sorted(moved), "bob", T0 + minutes(31))
    assert set(fresh.fingerprints) == moved and fresh.id != source
    assert not moved & set(grouper.incident(target).fingerprints)
    assert "split" in grouper.explain(fresh.id)[-1].reason
    with pytest.raises(KeyError):
        grouper.split(target, ["no-such-fingerprint"], "bob", T0)
    with pytest.raises(ValueError):
        grouper.split(fresh.id, list(fresh.fingerprints), "bob", T0)
    assert len(decisions) == len(postgres_fault()) + 1


def test_window_and_topology_absence(shop: Topology) -> None:
    fault = postgres_fault()
    late = replace(fault[1], starts_at=T0 + minutes(20))
    grouper = Grouper(shop)
    grouper.add_all([replace(fault[0], ends_at=T0 + minutes(3)), late])
    assert len(grouper.incidents()) == 2  # quiet, and outside the 15-minute window
    ongoing = Grouper(shop)
    ongoing.add_all([fault[0], late])
    assert len(ongoing.incidents()) == 1  # a member still fires: the fault goes on
    blind = Grouper(None)
    d = blind.add_all([fault[0], fault[3]])[1]  # payment->postgres, then checkout: no shared service
    assert d.candidates[0].factors.topology == 0.0
    shared = Grouper(None).add_all(fault[:2])[1]  # both edges end at postgres: zero hops
    assert shared.candidates[0].factors.topology == 1.0


def test_version_change_is_a_factor(shop: Topology) -> None:
    deploy = bad_deploy(minutes(0))
    grouper = Grouper(shop)
    grouper.add_all(deploy)
    newer = alert(
        "checkout", SignalKind.LATENCY_P95, "checkout latency p95 high", minutes(2), service_version="2.4.1"
    )
    # Another build of checkout than the incident saw: not "the same service", a candidate new cause.
    first = grouper.add(newer)
    assert first.candidates[0].factors.topology < 1.0 and not first.joined
    # Alerts of the new build group with each other: the change factor ties them.
    again = alert(
        "checkout", SignalKind.ERROR_RATIO, "checkout error ratio high", minutes(3), service_version="2.4.1"
    )
    decision = grouper.add(again)
    by_id = {c.incident_id: c.factors for c in decision.candidates}
    assert by_id[first.incident_id].change == 1.0 and decision.incident_id == first.incident_id


def test_root_cause_of_postgres_fault_is_postgres(shop: Topology) -> None:
    grouper = Grouper(shop)
    grouper.add_all([*postgres_fault(), cart_memory()])
    main = grouper.incidents()[0]
    ranked = rank(grouper.alerts(main.id), shop)
    assert [c.service for c in ranked][:1] == ["postgres"]
    assert len(ranked) == 3
    assert ranked[0].score > ranked[1].score
    assert all(0.0 <= c.confidence <= 1.0 for c in ranked)
    assert ranked[0].confidence > ranked[1].confidence
    assert "earliest anomaly" in ranked[0].reasons
    assert any("depended on by anomalous" in r for r in ranked[0].reasons)


def test_root_cause_of_bad_deploy_is_checkout(shop: Topology) -> None:
    deploy = bad_deploy(minutes(0))
    grouper = Grouper(shop)
    grouper.add_all(deploy)
    (incident,) = grouper.incidents()
    assert isinstance(incident, Incident) and len(incident.fingerprints) == 3
    ranked = rank(grouper.alerts(incident.id), shop, previous_versions={"checkout": "2.3.9"})
    assert ranked[0].service == "checkout"
    assert any(r.startswith("new log template at onset") for r in ranked[0].reasons)
    assert any(r == "version changed: 2.3.9 -> 2.4.0" for r in ranked[0].reasons)
    # Without topology or deploy data the onset and the new template still point at checkout.
    assert rank(deploy, None)[0].service == "checkout"


def test_rank_edge_cases() -> None:
    assert rank([], None) == []
    only = rank(postgres_fault()[:1], None, k=5)
    assert [c.service for c in only] == ["postgres"]


def test_cart_before_frontend_still_separate(shop: Topology) -> None:
    early_cart = replace(cart_memory(), starts_at=T0 + minutes(1.5))
    grouper = Grouper(shop)
    grouper.add_all([*postgres_fault(), early_cart])
    groups = sorted(by_incident(grouper).values(), key=len)
    assert groups == [{early_cart.fingerprint}, {a.fingerprint for a in postgres_fault()}]
