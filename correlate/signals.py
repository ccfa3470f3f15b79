"""What an alert says about the system, read off its labels: which services it concerns, which one
it accuses, whether it is about a machine, and which family of symptom it shows.

Grouping and root-cause ranking both reason with these, so they are defined once here.
"""

from __future__ import annotations

from warroom.model import Alert

__all__ = ["HOST_KEYS", "alert_services", "anomalous_entity", "hosts", "is_infrastructure", "symptom"]

HOST_KEYS = ("host.name", "k8s.node.name")

_LATENCY = frozenset({"latency_p50", "latency_p95", "latency_p99"})
_ERRORS = frozenset({"error_ratio", "new_log_template"})


def alert_services(alert: Alert) -> frozenset[str]:
    """The alert's ``service`` plus both ends of its ``edge`` ("caller->callee")."""
    found = {alert.service} if alert.service else set()
    edge = alert.labels.get("edge", "")
    if "->" in edge:
        caller, callee = edge.split("->", 1)
        found.update(s for s in (caller.strip(), callee.strip()) if s)
    return frozenset(found)


def anomalous_entity(alert: Alert) -> str:
    """The service an alert is evidence against: an edge's callee, else the alert's service."""
    edge = alert.labels.get("edge", "")
    if "->" in edge:
        callee = edge.split("->", 1)[1].strip()
        if callee:
            return callee
    return alert.service


def hosts(alert: Alert) -> set[str]:
    """The machines the alert names (``host.name``, ``k8s.node.name``)."""
    return {alert.labels[k] for k in HOST_KEYS if alert.labels.get(k)}


def is_infrastructure(alert: Alert) -> bool:
    """An alert about a machine itself (a node or host metric), not about a workload on it: no pod,
    and no service other than the machine's own name. A service on a VM names its host too, but is
    still a service."""
    if alert.labels.get("k8s.pod.name"):
        return False
    machines = hosts(alert)
    return bool(machines) and (not alert.service or alert.service in machines)


def symptom(alert: Alert) -> str:
    """The symptom family of an alert: ``errors``, ``latency``, ``resources`` or ``any`` (a signal
    that goes with every fault, such as a WARN log rate). Faults spread as the same symptom."""
    signal = alert.labels.get("signal", "")
    if signal in _LATENCY or (signal == "slo_burn" and alert.labels.get("slo") == "latency"):
        return "latency"
    if signal in _ERRORS or (signal == "slo_burn" and alert.labels.get("slo") == "availability"):
        return "errors"
    if signal == "log_rate" and alert.labels.get("severity", "").upper() in ("ERROR", "FATAL"):
        return "errors"
    if signal == "metric":
        return "resources"
    return "any"
