"""A small hand-built evidence pack, a tiny remediation catalog and a good answer, shared by the
grounding and LLM narrative tests.

The incident: checkout started failing after deploying 2.4.1 (E1 impact, E2 the deploy, E3 its
error log pattern); the payments database is slower (E4), a red herring.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from summarize.model import EvidenceItem, EvidenceKind, EvidencePack
from warroom.incident import Incident

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=15)


def incident(title: str = "checkout error rate above SLO") -> Incident:
    return Incident(
        id="inc-0042",
        title=title,
        severity="critical",
        status="open",
        started_at=T0,
        updated_at=T1,
        resolved_at=None,
        acknowledged_by="",
        alert_count=3,
        services=("checkout", "payments-db"),
        fingerprints=("a1b2c3", "d4e5f6"),
        flapping=(),
        root_causes=({"service": "checkout", "score": 0.9, "confidence": 0.8, "reasons": ["deploy"]},),
        merged_into=None,
    )


def item(
    id: str,
    kind: EvidenceKind,
    service: str,
    title: str,
    values: Mapping[str, Any] | None = None,
    samples: tuple[str, ...] = (),
) -> EvidenceItem:
    return EvidenceItem(
        id=id,
        kind=kind,
        service=service,
        title=title,
        start=T0,
        end=T1,
        values=dict(values or {}),
        samples=samples,
        points=((1714564800, 0.01), (1714565100, 0.3497)),
        query="SELECT count() FROM otel.otel_traces WHERE ServiceName = {service:String}",
        params={"service": service},
    )


def pack(
    samples: tuple[str, ...] = ("2024-05-01T12:03:07Z ERROR NullPointerException in CartService.total",),
    title: str = "checkout error rate above SLO",
    e1_title: str = "checkout error rate 34.97% over 1,200 requests",
    e1_values: Mapping[str, Any] | None = None,
) -> EvidencePack:
    items = (
        item(
            "E1",
            EvidenceKind.IMPACT,
            "checkout",
            e1_title,
            e1_values or {"error_rate": 0.3497, "requests": 1200.4, "p95_ms": 1203},
        ),
        item(
            "E2",
            EvidenceKind.CHANGE,
            "checkout",
            "checkout deployed 2.4.1 (was 2.4.0) at 12:01",
            {"from_version": "2.4.0", "to_version": "2.4.1"},
        ),
        item("E3", EvidenceKind.LOG_TEMPLATE, "checkout", "new error log pattern", {"count": 87}, samples),
        item(
            "E4",
            EvidenceKind.ANOMALY,
            "payments-db",
            "payments-db query latency p95 420 ms against a 35 ms baseline",
            {"observed": 420, "baseline": 35},
        ),
    )
    return EvidencePack(incident(title), T0, T1, items)


class TinyCatalog:
    """Four actions with typed parameters: enough to tell catalog violations apart."""

    SPECS: dict[str, dict[str, type]] = {
        "rollback_deployment": {"service": str, "to_version": str},
        "restart_service": {"service": str},
        "scale_replicas": {"service": str, "replicas": int},
        "failover_database": {"database": str},
    }

    def check(self, action: str, params: Mapping[str, Any]) -> list[str]:
        spec = self.SPECS.get(action)
        if spec is None:
            return [f"unknown action {action!r} (catalog: {', '.join(self.SPECS)})"]
        problems = [f"missing parameter {name!r}" for name in spec if name not in params]
        problems += [f"unknown parameter {name!r}" for name in params if name not in spec]
        problems += [
            f"parameter {name!r} must be {kind.__name__}"
            for name, kind in spec.items()
            if name in params and not isinstance(params[name], kind)
        ]
        return problems

    def describe(self) -> dict[str, Any]:
        return {
            name: {"params": {p: t.__name__ for p, t in spec.items()}} for name, spec in self.SPECS.items()
        }


_GOOD: dict[str, Any] = {
    "summary": [
        {"text": "Checkout errors rose to 35% right after the 2.4.1 deploy.", "evidence": ["E1", "E2"]},
    ],
    "impact": [
        {"text": "About 1,200 checkout requests, with p95 latency at 1.2 s.", "evidence": ["E1"]},
    ],
    "hypotheses": [
        {
            "service": "checkout",
            "fault_kind": "bad_deploy",
            "confidence": 0.8,
            "text": "Release 2.4.1 of checkout throws NullPointerException in CartService.total.",
            "evidence": ["E2", "E3"],
        },
        {
            "service": "payments-db",
            "fault_kind": "dependency_latency",
            "confidence": 0.1,
            "text": "payments-db p95 is 420 ms against 35 ms, but checkout errors are not timeouts.",
            "evidence": ["E4"],
        },
    ],
    "remediations": [
        {
            "action": "rollback_deployment",
            "params": [{"name": "service", "value": "checkout"}, {"name": "to_version", "value": "2.4.0"}],
            "text": "Roll checkout back to 2.4.0, the version before the errors started.",
            "evidence": ["E2"],
        },
    ],
}


def good_answer() -> dict[str, Any]:
    """An answer that passes every check against :func:`pack` and :class:`TinyCatalog` (a copy)."""
    return copy.deepcopy(_GOOD)
