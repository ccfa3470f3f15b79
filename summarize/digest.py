"""The deterministic digest: what the evidence pack says, in sentences that cite it — no LLM.

It is always produced (an LLM narrative, when configured, comes beside it, never instead of it).
Its steps, in order (:func:`build`):

1. **impact** — the most degraded services and endpoints, one claim each;
2. **hypotheses** — candidate causes (correlation's ranked root causes, plus any service with a
   fresh deploy, a saturated resource or a slow call edge without telemetry of its own), each
   classified into a :class:`~summarize.model.FaultKind` by :data:`CLASSIFIERS` and re-ranked by how
   specific its evidence is;
3. **timeline** — the evidence in time order;
4. **next checks** — what an SRE should look at next, for the leading hypotheses;
5. **remediations** — catalog actions proposed by :data:`REMEDY_RULES` (a deploy right before the
   onset → roll it back …), kept only if the catalog accepts their parameters.

Every sentence quotes only what its cited items state (their titles are written for that), so the
same grounding checks an LLM answer must pass hold for the digest too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from summarize.model import (
    ActionCheck,
    Claim,
    EvidenceItem,
    EvidenceKind,
    EvidencePack,
    FaultKind,
    Hypothesis,
    Remediation,
    Summary,
)

__all__ = ["CLASSIFIERS", "REMEDY_RULES", "build", "hypotheses"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A classifier's verdict on one service: the kind, how specific the evidence is, which items."""

    kind: FaultKind
    strength: float  # added to the candidate's correlation confidence when ranking
    items: tuple[EvidenceItem, ...]
    lead: str  # the sentence's opening, with no figures of its own


Classifier = Callable[[EvidencePack, str], Finding | None]


def _degradation(item: EvidenceItem) -> float:
    v = item.values
    errors = max(0.0, float(v.get("error_ratio", 0)) - float(v.get("error_ratio_before", 0)))
    before = float(v.get("p95_ms_before", 0) or 0)
    slower = max(0.0, float(v.get("p95_ms", 0)) / before - 1.0) if before > 0 else 0.0
    return errors * 10 + min(slower, 10.0) / 2


def _own(pack: EvidencePack, kind: EvidenceKind, service: str) -> list[EvidenceItem]:
    return pack.of_kind(kind, service)


def _service_impact(pack: EvidencePack, service: str) -> EvidenceItem | None:
    return next((i for i in _own(pack, EvidenceKind.IMPACT, service) if "endpoint" not in i.values), None)


def _errors(pack: EvidencePack, service: str) -> list[EvidenceItem]:
    return [i for i in _own(pack, EvidenceKind.LOG_TEMPLATE, service) if i.values.get("status") == "new"]


def _deploy(pack: EvidencePack, service: str) -> Finding | None:
    change = _own(pack, EvidenceKind.CHANGE, service)
    if not change:
        return None
    impact = _service_impact(pack, service)
    support = [i for i in (impact,) if i is not None and _degradation(i) > 0.2]
    return Finding(
        FaultKind.BAD_DEPLOY,
        0.45 if support or _errors(pack, service) else 0.25,
        (change[0], *support, *_errors(pack, service)[:1]),
        f"{service}: a bad deploy — its new version arrived just before the symptoms",
    )


def _memory(pack: EvidencePack, service: str) -> Finding | None:
    items = [
        i
        for i in _own(pack, EvidenceKind.SATURATION, service)
        if i.values.get("metric") == "process memory"
        and (int(i.values.get("restarts", 0)) > 0 or float(i.values.get("growth", 0)) >= 2.0)
    ]
    if not items:
        return None
    return Finding(
        FaultKind.MEMORY_LEAK,
        0.4,
        (items[0], *_errors(pack, service)[:1]),
        f"{service}: a memory leak — memory keeps growing until the process restarts",
    )


def _cpu(pack: EvidencePack, service: str) -> Finding | None:
    own = [i for i in _own(pack, EvidenceKind.SATURATION, service) if i.values.get("metric") == "process CPU"]
    if not own:
        return None
    node = str(own[0].values.get("node", ""))
    host = [i for i in pack.of_kind(EvidenceKind.SATURATION, node)] if node else []
    return Finding(
        FaultKind.CPU_SATURATION,
        0.4,
        (own[0], *host[:1]),
        f"{service}: CPU saturation — it uses far more CPU than before",
    )


def _calls_into(pack: EvidencePack, service: str) -> list[EvidenceItem]:
    return [i for i in pack.of_kind(EvidenceKind.TOPOLOGY, service) if i.values.get("callee") == service]


def _calls_from(pack: EvidencePack, service: str) -> list[EvidenceItem]:
    return [i for i in pack.of_kind(EvidenceKind.TOPOLOGY) if i.values.get("caller") == service]


def _slow_callee(pack: EvidencePack, service: str) -> Finding | None:
    """A dependency seen only through its callers (a database): slower or failing calls into it."""
    calls = [i for i in _calls_into(pack, service) if i.values.get("callee_instrumented") == "no"]
    if not calls or _service_impact(pack, service) is not None:
        return None
    callers = len({i.values.get("caller") for i in calls})
    return Finding(
        FaultKind.DEPENDENCY_LATENCY,
        0.35 + 0.1 * min(callers - 1, 2),
        tuple(calls[:3]),
        f"{service}: a slow dependency — every caller's calls into it got slower",
    )


def _generic(pack: EvidencePack, service: str) -> Finding | None:
    impact = _service_impact(pack, service)
    if impact is None:
        return None
    v = impact.values
    errors, errors_before = float(v.get("error_ratio", 0)), float(v.get("error_ratio_before", 0))
    more_errors = errors - errors_before > 0.005 and errors > 1.5 * errors_before
    slower = float(v.get("p95_ms", 0)) > 1.2 * float(v.get("p95_ms_before", 0) or 0)
    if not (more_errors or slower):
        return None
    kind = FaultKind.ERROR_SPIKE if more_errors else FaultKind.LATENCY_REGRESSION
    label = "more of its requests fail" if more_errors else "its requests got slower"
    return Finding(kind, 0.0, (impact, *_errors(pack, service)[:1]), f"{service}: {kind.label} — {label}")


CLASSIFIERS: tuple[tuple[str, Classifier], ...] = (
    ("memory_leak", _memory),
    ("bad_deploy", _deploy),
    ("cpu_saturation", _cpu),
    ("dependency_latency", _slow_callee),
    ("generic", _generic),
)
"""Tried in order; the first that recognises a service decides its fault kind."""


def _candidates(pack: EvidencePack) -> dict[str, float]:
    """Service → correlation's confidence (0.2 for services only the evidence points at)."""
    out: dict[str, float] = {}
    for cause in pack.incident.root_causes:
        service = _workload(pack, str(cause.get("service", "")))
        if service and service not in out:
            out[service] = float(cause.get("confidence", 0.0))
    for item in pack.items:
        if item.kind in (EvidenceKind.CHANGE, EvidenceKind.SATURATION) or (
            item.kind is EvidenceKind.TOPOLOGY and "callee" in item.values
        ):
            subject = item.service
            if item.kind is EvidenceKind.SATURATION and item.values.get("host"):
                continue  # a node is not a service: its workloads are candidates in their own right
            out.setdefault(subject, 0.2)
    return out


def _position(pack: EvidencePack, service: str) -> float:
    """Where the service sits on the degraded call paths: symptoms travel callee → caller, so a
    service whose own calls degraded is explained further down (a penalty), as is one starved by a
    CPU-hungry neighbour; a degraded callee whose calls did not degrade is where they start (a bonus)."""
    if _calls_from(pack, service) or _crowded_out(pack, service):
        return -0.3
    if any(i.values.get("callee_calls_degraded") == "no" for i in _calls_into(pack, service)):
        return 0.15
    return 0.0


def _workload(pack: EvidencePack, subject: str) -> str:
    """A saturated node stands for the workload on it that uses the most CPU (if one saturated)."""
    if not any(i.values.get("host") == subject for i in pack.of_kind(EvidenceKind.SATURATION, subject)):
        return subject
    hot = [
        i
        for i in pack.of_kind(EvidenceKind.SATURATION)
        if i.values.get("node") == subject and i.values.get("metric") == "process CPU"
    ]
    return max(hot, key=lambda i: (float(i.values["cpu_p90"]), i.service)).service if hot else subject


def _crowded_out(pack: EvidencePack, service: str) -> bool:
    """Its node's CPU is saturated by another workload while its own CPU is not (a noisy neighbour)."""
    if any(i.values.get("metric") == "process CPU" for i in pack.of_kind(EvidenceKind.SATURATION, service)):
        return False
    for host in pack.of_kind(EvidenceKind.SATURATION):
        workloads = str(host.values.get("workloads", "")).split(", ")
        if host.values.get("host") and service in workloads and _workload(pack, host.service) != host.service:
            return True
    return False


def _sentence(finding: Finding) -> str:
    return f"{finding.lead}: " + "; ".join(item.title for item in finding.items) + "."


def hypotheses(pack: EvidencePack, limit: int = 3) -> tuple[Hypothesis, ...]:
    """Ranked probable causes, each with the evidence that makes it specific."""
    ranked = []
    for service, confidence in _candidates(pack).items():
        finding = next((f for _, c in CLASSIFIERS if (f := c(pack, service)) is not None), None)
        if finding is None:
            anomalies = _own(pack, EvidenceKind.ANOMALY, service)
            if not anomalies:
                continue
            finding = Finding(FaultKind.UNKNOWN, 0.0, tuple(anomalies[:2]), f"{service}: anomalous")
        score = confidence + finding.strength + _position(pack, service)
        ranked.append((score, service, finding))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    top = ranked[0][0] if ranked else 1.0
    return tuple(
        Hypothesis(
            service=service,
            fault_kind=finding.kind,
            confidence=round(min(0.95, max(0.05, score / max(top, 1.0))), 2),
            text=_sentence(finding),
            evidence=tuple(dict.fromkeys(i.id for i in finding.items)),
        )
        for score, service, finding in ranked[:limit]
    )


def _impact(pack: EvidencePack, limit: int = 5) -> tuple[Claim, ...]:
    items = sorted(pack.of_kind(EvidenceKind.IMPACT), key=lambda i: (-_degradation(i), i.id))
    degraded = [i for i in items if _degradation(i) > 0.05] or items[:1]
    return tuple(Claim(i.title, (i.id,)) for i in degraded[:limit])


_TIMELINE_KINDS = (EvidenceKind.CHANGE, EvidenceKind.LOG_TEMPLATE, EvidenceKind.ANOMALY)


def _timeline(pack: EvidencePack, limit: int = 12) -> tuple[Claim, ...]:
    items = sorted((i for i in pack.items if i.kind in _TIMELINE_KINDS), key=lambda i: (i.start, i.id))
    return tuple(Claim(f"{i.start:%H:%M} {i.title}", (i.id,)) for i in items[:limit])


_CHECKS: Mapping[FaultKind, str] = {
    FaultKind.BAD_DEPLOY: "Diff {service}'s new version against the previous one (changes, config, "
    "feature flags) and read the new error pattern's samples",
    FaultKind.MEMORY_LEAK: "Take a heap profile of {service} before its next restart and compare "
    "allocations with the last healthy version",
    FaultKind.CPU_SATURATION: "Check {service}'s CPU limit and throttling, its request mix, and what "
    "else runs on the same node",
    FaultKind.DEPENDENCY_LATENCY: "Check {service} itself: slow-query log, locks, connection pool, "
    "disk and replication",
    FaultKind.ERROR_SPIKE: "Open the failing exemplar traces of {service} and read their error messages",
    FaultKind.LATENCY_REGRESSION: "Open the slowest exemplar traces of {service} and find the slow span",
    FaultKind.UNKNOWN: "Re-run the cited queries for {service} and compare with the hour before",
}


def _next_checks(pack: EvidencePack, ranked: Sequence[Hypothesis]) -> tuple[Claim, ...]:
    out = []
    for hypothesis in ranked[:2]:
        exemplars = [i.id for i in pack.of_kind(EvidenceKind.TRACE_EXEMPLAR, hypothesis.service)]
        out.append(
            Claim(
                _CHECKS[hypothesis.fault_kind].format(service=hypothesis.service) + ".",
                (*hypothesis.evidence, *exemplars[:1]),
            )
        )
    return tuple(out)


RemedyRule = Callable[[EvidencePack, Hypothesis], list[Remediation]]


def _namespace(pack: EvidencePack, service: str) -> dict[str, Any]:
    """The service's Kubernetes namespace as its telemetry reports it; else the one its neighbours
    in the incident share (the approver sees it in the plan)."""
    seen = [
        (i.service == service, str(i.values["namespace"])) for i in pack.items if i.values.get("namespace")
    ]
    return {"namespace": max(seen)[1]} if seen else {}


def _rollback(pack: EvidencePack, h: Hypothesis) -> list[Remediation]:
    change = _own(pack, EvidenceKind.CHANGE, h.service)
    if h.fault_kind not in (FaultKind.BAD_DEPLOY, FaultKind.MEMORY_LEAK) or not change:
        return []
    previous = str(change[0].values["from_version"])
    return [
        Remediation(
            "rollback_deployment",
            {"service": h.service, **_namespace(pack, h.service), "to_version": previous},
            f"Roll {h.service} back to {previous}: the symptoms began with the new version.",
            (change[0].id, *h.evidence[1:2]),
        )
    ]


def _restart(pack: EvidencePack, h: Hypothesis) -> list[Remediation]:
    if h.fault_kind is not FaultKind.MEMORY_LEAK:
        return []
    return [
        Remediation(
            "restart_service",
            {"service": h.service, **_namespace(pack, h.service)},
            f"Restart {h.service} to free its memory before the next out-of-memory kill (a stopgap).",
            h.evidence[:1],
        )
    ]


def _scale(pack: EvidencePack, h: Hypothesis) -> list[Remediation]:
    if h.fault_kind is not FaultKind.CPU_SATURATION:
        return []
    cpu = next(i for i in pack.items if i.id == h.evidence[0])
    replicas = min(200, max(2, 2 * int(cpu.values.get("instances", 1) or 1)))
    return [
        Remediation(
            "scale_replicas",
            {"service": h.service, **_namespace(pack, h.service), "replicas": replicas},
            f"Add capacity to {h.service} (more replicas spread the CPU load).",
            (cpu.id,),
        )
    ]


def _database(pack: EvidencePack, h: Hypothesis) -> list[Remediation]:
    if h.fault_kind is not FaultKind.DEPENDENCY_LATENCY:
        return []
    return [
        Remediation(
            "open_runbook",
            {"runbook": f"{h.service}-latency"},
            f"Follow the {h.service} latency runbook.",
            h.evidence[:1],
        ),
        Remediation(
            "failover_database",
            {"database": h.service},
            f"If {h.service}'s primary is degraded, fail over to its replica (high risk: two approvers).",
            h.evidence[:2],
        ),
    ]


REMEDY_RULES: tuple[tuple[str, RemedyRule], ...] = (
    ("rollback a deploy right before the onset", _rollback),
    ("restart a leaking service", _restart),
    ("scale a CPU-saturated service", _scale),
    ("runbook / failover for a slow database", _database),
)


def _remediations(
    pack: EvidencePack, ranked: Sequence[Hypothesis], catalog: ActionCheck | None
) -> tuple[Remediation, ...]:
    out: list[Remediation] = []
    for hypothesis in ranked[:1]:
        for _, rule in REMEDY_RULES:
            for remedy in rule(pack, hypothesis):
                if catalog is None or not catalog.check(remedy.action, remedy.params):
                    out.append(remedy)
    return tuple(out)


def build(pack: EvidencePack, catalog: ActionCheck | None = None) -> Summary:
    """The digest of ``pack``; remediations only for actions ``catalog`` accepts (all, if None)."""
    ranked = hypotheses(pack)
    return Summary(
        pack=pack,
        title=pack.incident.title,
        impact=_impact(pack),
        hypotheses=ranked,
        timeline=_timeline(pack),
        next_checks=_next_checks(pack, ranked),
        remediations=_remediations(pack, ranked, catalog),
    )
