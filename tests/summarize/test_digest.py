"""The deterministic digest on hand-built evidence packs: each fault kind is recognised from the
evidence that makes it specific, symptoms rank below their causes, every statement cites existing
evidence and passes the same grounding checks as an LLM answer, and the proposed remediations
are valid catalog actions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from summarize import digest, grounding
from summarize.catalog import Catalog
from summarize.model import EvidenceItem, EvidenceKind, EvidencePack, FaultKind, Summary
from warroom.incident import Incident

T0 = datetime(2025, 3, 4, 11, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=40)
K = EvidenceKind


def _incident(services: tuple[str, ...], causes: tuple[tuple[str, float], ...]) -> Incident:
    return Incident(
        id="inc-1",
        title="trouble",
        severity="critical",
        status="open",
        started_at=T0,
        updated_at=T1,
        resolved_at=None,
        acknowledged_by="",
        alert_count=4,
        services=services,
        fingerprints=("f1",),
        flapping=(),
        root_causes=tuple({"service": s, "score": c, "confidence": c, "reasons": []} for s, c in causes),
        merged_into=None,
    )


def _pack(incident: Incident, *specs: tuple[K, str, str, Mapping[str, Any]]) -> EvidencePack:
    items = tuple(
        EvidenceItem(f"E{n}", kind, service, title, T0, T1, dict(values), query="SELECT 1")
        for n, (kind, service, title, values) in enumerate(specs, start=1)
    )
    return EvidencePack(incident, T0 - timedelta(minutes=20), T1, items)


def _impact(service: str, errors: float, before: float, p95: float, p95_before: float) -> tuple:
    title = (
        f"{service}: {errors * 100:.1f}% errors of 500 requests (before {before * 100:.1f}%), "
        f"p95 {p95:.0f} ms (before {p95_before:.0f} ms)"
    )
    values = {
        "requests": 500,
        "error_ratio": errors,
        "error_ratio_before": before,
        "p95_ms": p95,
        "p95_ms_before": p95_before,
        "namespace": "shop",
    }
    return (K.IMPACT, service, title, values)


def _edge(caller: str, callee: str, p95: float, before: float, instrumented: bool, sink: bool) -> tuple:
    values = {
        "caller": caller,
        "callee": callee,
        "calls": 300,
        "error_ratio": 0.0,
        "error_ratio_before": 0.0,
        "p95_ms": p95,
        "p95_ms_before": before,
        "callee_instrumented": "yes" if instrumented else "no",
        "callee_calls_degraded": "no" if sink else "yes",
    }
    title = (
        f"calls {caller} → {callee}: p95 {p95:.0f} ms (before {before:.0f} ms), 0.0% errors over 300 calls"
    )
    return (K.TOPOLOGY, callee, title, values)


def _grounded(summary: Summary) -> None:
    """Each statement alone passes the LLM grounding checks (numbers in its cited evidence)."""
    sections = {
        "summary": [c.to_json() for c in (*summary.timeline, *summary.next_checks)],
        "impact": [c.to_json() for c in summary.impact],
        "hypotheses": [h.to_json() for h in summary.hypotheses],
        "remediations": [r.to_json() for r in summary.remediations],
    }
    filler = {"text": "See the evidence.", "evidence": [summary.pack.items[0].id]}
    for section, statements in sections.items():
        for statement in statements:
            answer = {k: [statement] if k == section else [] for k in sections}
            answer["summary"] = answer["summary"] or [filler]
            narrative, violations = grounding.check(json.dumps(answer), summary.pack, Catalog.default())
            assert narrative is not None, (section, statement, violations)
    assert grounding.cited_claims_share(summary.claims(), summary.pack.ids) == 1.0


def test_bad_deploy_is_named_and_rolled_back_to_the_previous_version() -> None:
    pack = _pack(
        _incident(("checkout", "frontend"), (("frontend", 0.9), ("checkout", 0.7))),
        _impact("checkout", 0.25, 0.01, 120, 110),
        _impact("frontend", 0.02, 0.01, 80, 80),
        (
            K.CHANGE,
            "checkout",
            "deploy: checkout 2.3.0 → 2.4.0, first seen 10:55 (5 min before the first alert)",
            {"from_version": "2.3.0", "to_version": "2.4.0", "namespace": "shop"},
        ),
        (
            K.LOG_TEMPLATE,
            "checkout",
            "new ERROR log pattern in checkout: 'NullPointerException <*>' ×25 (before ×0)",
            {"status": "new", "count": 25, "count_before": 0},
        ),
    )
    summary = digest.build(pack, Catalog.default())
    top = summary.hypotheses[0]
    assert (top.service, top.fault_kind) == ("checkout", FaultKind.BAD_DEPLOY)
    assert {"E3", "E1"} <= set(top.evidence)  # the deploy and the impact behind it
    assert summary.hypotheses[0].confidence >= summary.hypotheses[-1].confidence
    assert [r.action for r in summary.remediations] == ["rollback_deployment"]
    assert dict(summary.remediations[0].params) == {
        "service": "checkout",
        "namespace": "shop",
        "to_version": "2.3.0",
    }
    assert summary.impact[0].evidence == ("E1",)  # the most degraded first
    _grounded(summary)


def test_a_slow_database_without_telemetry_is_found_through_its_callers() -> None:
    pack = _pack(
        _incident(("frontend",), (("frontend", 0.9),)),
        _impact("frontend", 0.005, 0.003, 540, 85),
        _impact("catalog", 0.003, 0.001, 570, 11),
        _edge("frontend", "catalog", 577, 12, instrumented=True, sink=False),
        _edge("catalog", "postgres", 568, 6, instrumented=False, sink=True),
        _edge("payment", "postgres", 533, 6, instrumented=False, sink=True),
    )
    summary = digest.build(pack, Catalog.default())
    top = summary.hypotheses[0]
    assert (top.service, top.fault_kind) == ("postgres", FaultKind.DEPENDENCY_LATENCY)
    assert set(top.evidence) == {"E4", "E5"}
    ranked = [h.service for h in summary.hypotheses]
    assert ranked.index("postgres") < ranked.index("frontend")  # frontend's slowness is explained
    assert {r.action for r in summary.remediations} == {"open_runbook", "failover_database"}
    _grounded(summary)


def test_a_cpu_hungry_neighbour_is_blamed_not_the_starved_service() -> None:
    pack = _pack(
        _incident(("inventory",), (("inventory", 0.8),)),
        _impact("inventory", 0.02, 0.009, 33, 14),
        (
            K.SATURATION,
            "recommendation",
            "recommendation process CPU at 95.5% (p90 per minute; median before 16.4%)",
            {
                "cpu_p90": 0.955,
                "cpu_median_before": 0.164,
                "metric": "process CPU",
                "node": "n3",
                "instances": 2,
            },
        ),
        (
            K.SATURATION,
            "n3",
            "n3 host CPU at 97.3% (p90 per minute; median before 17.7%) (runs inventory, recommendation)",
            {"cpu_p90": 0.973, "metric": "host CPU", "host": "n3", "workloads": "inventory, recommendation"},
        ),
    )
    summary = digest.build(pack, Catalog.default())
    top = summary.hypotheses[0]
    assert (top.service, top.fault_kind) == ("recommendation", FaultKind.CPU_SATURATION)
    assert [(r.action, r.params["replicas"]) for r in summary.remediations] == [("scale_replicas", 4)]
    _grounded(summary)


def test_an_alert_on_a_node_stands_for_its_hottest_workload() -> None:
    pack = _pack(
        _incident(("n3",), (("n3", 0.84),)),
        (
            K.SATURATION,
            "recommendation",
            "recommendation process CPU at 95.6% (p90 per minute; median before 14.1%)",
            {"cpu_p90": 0.956, "metric": "process CPU", "node": "n3", "instances": 1},
        ),
        (
            K.SATURATION,
            "n3",
            "n3 host CPU at 97.7% (p90 per minute; median before 16.1%) (runs recommendation)",
            {"cpu_p90": 0.977, "metric": "host CPU", "host": "n3", "workloads": "recommendation"},
        ),
    )
    top = digest.build(pack).hypotheses[0]
    assert (top.service, top.fault_kind) == ("recommendation", FaultKind.CPU_SATURATION)


def test_memory_growth_with_restarts_is_a_leak_and_gets_a_restart_proposal() -> None:
    pack = _pack(
        _incident(("cart", "frontend"), (("frontend", 0.7), ("cart", 0.7))),
        _impact("cart", 0.015, 0.002, 11, 4),
        _impact("frontend", 0.011, 0.007, 81, 86),
        (
            K.SATURATION,
            "cart",
            "cart memory grew to 505 MiB (median before 182 MiB, ×2.78), "
            "1 drop(s) of a third or more (restarts)",
            {"memory_mib_peak": 505, "growth": 2.78, "restarts": 1, "metric": "process memory"},
        ),
    )
    summary = digest.build(pack, Catalog.default())
    top = summary.hypotheses[0]
    assert (top.service, top.fault_kind) == ("cart", FaultKind.MEMORY_LEAK)
    assert [r.action for r in summary.remediations] == ["restart_service"]
    _grounded(summary)


@pytest.mark.parametrize(
    ("errors", "before", "p95", "p95_before", "kind"),
    [
        (0.20, 0.01, 100, 100, FaultKind.ERROR_SPIKE),
        (0.01, 0.01, 900, 100, FaultKind.LATENCY_REGRESSION),
    ],
)
def test_without_specific_evidence_the_symptom_kind_is_said_plainly(
    errors: float, before: float, p95: float, p95_before: float, kind: FaultKind
) -> None:
    pack = _pack(_incident(("api",), (("api", 0.9),)), _impact("api", errors, before, p95, p95_before))
    summary = digest.build(pack, Catalog.default())
    assert [(h.service, h.fault_kind) for h in summary.hypotheses] == [("api", kind)]
    assert summary.remediations == ()  # nothing specific to propose
    _grounded(summary)


def test_remediations_the_catalog_refuses_are_dropped() -> None:
    pack = _pack(
        _incident(("checkout",), (("checkout", 0.9),)),
        _impact("checkout", 0.25, 0.01, 120, 110),
        (
            K.CHANGE,
            "checkout",
            "deploy: checkout 2.3.0 → 2.4.0, first seen 10:55 (5 min before the first alert)",
            # A version no parameter pattern accepts: the rule's proposal cannot be made.
            {"from_version": "2.3.0; rm -rf /", "to_version": "2.4.0"},
        ),
    )
    summary = digest.build(pack, Catalog.default())
    assert summary.hypotheses[0].fault_kind is FaultKind.BAD_DEPLOY
    assert summary.remediations == ()


def test_an_empty_pack_gives_an_empty_but_valid_digest() -> None:
    summary = digest.build(_pack(_incident(("x",), ())))
    assert summary.hypotheses == () and summary.impact == () and summary.remediations == ()
    assert json.loads(json.dumps(summary.to_json()))["incident"] == "inc-1"
