"""Incident lifecycle: flapping, quiet-period resolve, reopen, ack, merge/split, significance, state."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from correlate.lifecycle import STAGES, IncidentBook, LifecycleConfig
from correlate.topology import Topology
from tests.correlate.test_grouping import T0, alert, cart_memory, minutes, postgres_fault, shop  # noqa: F401
from warroom.errors import InputError
from warroom.model import Severity, SignalKind


def test_stage_order_is_listed() -> None:
    assert STAGES == ("group", "flap", "rank", "significance")


def test_one_page_per_incident_updates_only_when_significant(shop: Topology) -> None:  # noqa: F811
    book = IncidentBook(shop)
    changes = [c for a in postgres_fault() for c in book.ingest(a)]
    assert [c.kind for c in changes][0] == "opened"
    assert {c.incident.id for c in changes} == {changes[0].incident.id}
    notified = [c for c in changes if c.notify]
    # Opened once; later alerts only notify when severity rose, a service joined or the cause moved.
    assert notified[0].kind == "opened"
    for c in notified[1:]:
        assert c.kind == "updated" and c.reasons[1:], c
    assert any("severity rose" in r for c in notified for r in c.reasons)  # frontend is critical
    silent = [c for c in changes if not c.notify]
    assert all(c.kind == "updated" for c in silent)
    # Re-sending an alert unchanged is recorded, never sent.
    again = book.ingest(replace(postgres_fault()[2], updated_at=T0 + minutes(4)))
    assert len(again) == 1 and not again[0].notify and again[0].decision and again[0].decision.duplicate
    assert changes[-1].root_causes[0].service == "postgres"


def test_quiet_period_then_resolve_then_reopen(shop: Topology) -> None:  # noqa: F811
    book = IncidentBook(shop, config=LifecycleConfig(quiet=timedelta(minutes=5)))
    fault = postgres_fault()
    incident_id = book.ingest(fault[0])[0].incident.id
    for a in fault[1:]:
        book.ingest(a)
    ended = T0 + minutes(10)
    for a in fault:
        book.ingest(replace(a, ends_at=ended, updated_at=ended))
    assert book.tick(ended + minutes(4)) == []  # still in the quiet period
    [resolved] = book.tick(ended + minutes(6))
    assert resolved.kind == "resolved" and resolved.notify and resolved.at == ended + minutes(5)
    assert resolved.incident.status == "resolved"
    [reopened] = book.ingest(replace(fault[0], starts_at=ended + minutes(8), ends_at=None, updated_at=None))
    assert reopened.kind == "reopened" and reopened.notify and reopened.incident.id == incident_id
    assert reopened.incident.reopen_count == 1


def test_flapping_alert_is_held_open_and_not_paged_again(shop: Topology) -> None:  # noqa: F811
    cfg = LifecycleConfig(quiet=timedelta(minutes=2), flap_window=timedelta(minutes=30), flap_threshold=3)
    book = IncidentBook(shop, config=cfg)
    flappy = alert("shipping", SignalKind.ERROR_RATIO, "shipping error ratio high", minutes(0))
    pages = []
    for i in range(6):  # fires 1 min, quiet 4 min, again
        start = T0 + minutes(5 * i)
        occurrence = replace(flappy, starts_at=start)
        pages += [c for c in book.ingest(occurrence) if c.notify]
        pages += [c for c in book.ingest(replace(occurrence, ends_at=start + minutes(1))) if c.notify]
        pages += [c for c in book.tick(start + minutes(4.5)) if c.notify]
    kinds = [c.kind for c in pages]
    # Opened and resolved after the quiet period, reopened and resolved once more; from the third
    # fire on it is flapping: held open (no resolve) and never paged again.
    assert kinds == ["opened", "resolved", "reopened", "resolved"], kinds
    [incident] = book.incidents()
    assert incident.flapping == (flappy.fingerprint,) and incident.status == "open"
    # Quiet for the whole flap window: resolves.
    last_end = T0 + minutes(26)
    [done] = book.tick(last_end + minutes(31))
    assert done.kind == "resolved" and done.at == last_end + minutes(30)


def test_ack_merge_split_are_recorded_with_their_actor(shop: Topology) -> None:  # noqa: F811
    book = IncidentBook(shop)
    for a in postgres_fault():
        book.ingest(a)
    [other] = book.ingest(cart_memory())
    first, second = book.incidents()[0].id, other.incident.id
    assert first != second
    ack = book.acknowledge(first, "alice", T0 + minutes(5))
    assert ack.kind == "acknowledged" and ack.notify and ack.incident.status == "acknowledged"
    changes = book.merge(first, [second], "bob", T0 + minutes(6))
    assert [c.kind for c in changes] == ["resolved", "merged"]
    assert "merged into" in changes[0].reasons[0] and changes[1].actor == "bob"
    assert [i.id for i in book.incidents()] == [first]
    split = book.split(first, [cart_memory().fingerprint], "carol", T0 + minutes(7))
    assert [c.kind for c in split] == ["split", "opened"] and all(c.notify for c in split)
    assert len(book.incidents()) == 2
    with pytest.raises(InputError, match="no incident"):
        book.acknowledge("inc-nope", "x", T0)
    with pytest.raises(InputError):
        book.split(first, ["not-a-member"], "x", T0)
    with pytest.raises(InputError):
        book.merge(first, [first], "x", T0)
    resolved = book.resolve(first, "dave", T0 + minutes(8))
    assert resolved.incident.status == "resolved"
    with pytest.raises(InputError, match="already resolved"):
        book.resolve(first, "dave", T0 + minutes(9))


def test_state_save_load_equal_and_same_future(shop: Topology) -> None:  # noqa: F811
    fault = postgres_fault()
    book = IncidentBook(shop)
    for a in fault[:3]:
        book.ingest(a)
    book.acknowledge(book.incidents()[0].id, "alice", T0 + minutes(2))
    saved = json.loads(json.dumps(book.to_json()))
    restored = IncidentBook.from_json(saved, shop)
    assert restored.to_json() == book.to_json()
    rest = [
        *fault[3:],
        cart_memory(),
        replace(fault[0], severity=Severity.CRITICAL, updated_at=T0 + minutes(4)),
    ]
    out_a = [(c.kind, c.incident.id, c.notify, c.reasons) for a in rest for c in book.ingest(a)]
    out_b = [(c.kind, c.incident.id, c.notify, c.reasons) for a in rest for c in restored.ingest(a)]
    assert out_a == out_b
    with pytest.raises(InputError, match="version"):
        IncidentBook.from_json({**saved, "version": 99})


def test_a_flapping_alert_inside_a_real_incident_is_split_off_silently(shop: Topology) -> None:  # noqa: F811
    cfg = LifecycleConfig(quiet=timedelta(minutes=30), flap_window=timedelta(minutes=30), flap_threshold=3)
    book = IncidentBook(shop, config=cfg)
    fault = postgres_fault()
    for a in fault:
        book.ingest(a)
    main = book.incidents()[0].id
    # A payment latency series (one hop above postgres) starts flapping beside the fault.
    flappy = alert("payment", SignalKind.LATENCY_P99, "payment latency p99 high", minutes(4))
    changes = []
    for i in range(3):
        start = T0 + minutes(4 + 3 * i)
        changes += book.ingest(replace(flappy, starts_at=start))
        changes += book.ingest(replace(flappy, starts_at=start, ends_at=start + minutes(1)))
    split = [c for c in changes if c.kind == "opened" and c.incident.id != main]
    assert len(split) == 1 and not split[0].notify and "split off" in split[0].reasons[0]
    assert split[0].incident.flapping == (flappy.fingerprint,)
    assert flappy.fingerprint not in book.grouper.incident(main).fingerprints
    assert {a.fingerprint for a in fault} <= set(book.grouper.incident(main).fingerprints)


def test_symptoms_seen_before_their_cause_are_merged_and_reported(shop: Topology) -> None:  # noqa: F811
    on_node = {"host_name": "node-3", "k8s_node_name": "node-3"}
    # Two unrelated services on one node turn slow and open two incidents ...
    inventory = alert(
        "inventory",
        SignalKind.ERROR_RATIO,
        "inventory error ratio high",
        minutes(0),
        k8s_pod_name="i-1",
        **on_node,
    )
    recommendation = alert(
        "recommendation",
        SignalKind.LATENCY_P95,
        "recommendation latency p95 high",
        minutes(0.1),
        k8s_pod_name="r-1",
        **on_node,
    )
    book = IncidentBook(shop)
    first = book.ingest(inventory)[0].incident.id
    book.ingest(recommendation)
    assert len(book.incidents()) == 2
    # ... then the node's own CPU alert arrives: it explains both, so they are one incident.
    node = alert("node-3", SignalKind.METRIC, "node-3 system.cpu.utilization high", minutes(0.5), **on_node)
    changes = book.ingest(node)
    decision = changes[-1].decision
    assert decision is not None and decision.merged and decision.incident_id == first
    gone = [c for c in changes if c.kind == "resolved"]
    assert len(gone) == 1 and gone[0].reasons[0].startswith(f"merged into {first}")
    assert [i.id for i in book.incidents()] == [first]
    assert "merged" in book.grouper.explain(first)[-1].reason
