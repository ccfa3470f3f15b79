"""PagerDuty Events API v2: one PD alert per incident, keyed by ``dedup_key = incident_id``.

``open`` triggers; ``update`` triggers again by default (PD folds it into the same alert, refreshing
its details) or acknowledges when ``update_action="acknowledge"``; ``acknowledged`` (an on-call took it)
acknowledges; ``resolved`` resolves. PD answers
202; 400 (invalid event) is final, 429 and 5xx are retried. Our severities map onto PD's
critical/error/warning/info through ``severity_map`` (default: critical→critical, warning→warning,
info→info; map ``warning`` to ``error`` to make warnings high-urgency under severity-based urgency).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from correlate.notify._http import post
from correlate.notify.base import Attempt, IncidentNotice
from warroom.errors import ConfigError
from warroom.model import Severity

EventAction = Literal["trigger", "acknowledge", "resolve"]
PD_SEVERITIES = ("critical", "error", "warning", "info")
DEFAULT_SEVERITY_MAP: Mapping[Severity, str] = MappingProxyType(
    {Severity.CRITICAL: "critical", Severity.WARNING: "warning", Severity.INFO: "info"}
)
_SUMMARY_CHARS = 1024  # PD truncates payload.summary at 1024 characters


def event_action(status: str, update_action: EventAction = "trigger") -> EventAction:
    if status == "open":
        return "trigger"
    if status == "resolved":
        return "resolve"
    if status == "acknowledged":
        return "acknowledge"
    return update_action


def pagerduty_event(
    notice: IncidentNotice,
    routing_key: str,
    *,
    action: EventAction,
    source: str = "warroom",
    severity_map: Mapping[Severity, str] = DEFAULT_SEVERITY_MAP,
) -> dict[str, Any]:
    """The Events v2 body. acknowledge/resolve carry only the keys PD reads for them."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": notice.incident_id,
    }
    if action != "trigger":
        return event
    summary = notice.title if not notice.services else f"{notice.title} ({', '.join(notice.services)})"
    event["payload"] = {
        "summary": summary if len(summary) <= _SUMMARY_CHARS else summary[: _SUMMARY_CHARS - 1] + "…",
        "severity": severity_map.get(notice.severity, "info"),
        "source": source,
        "component": notice.root_cause or (notice.services[0] if notice.services else None),
        "timestamp": notice.started_at.isoformat(),
        "custom_details": {
            "incident_id": notice.incident_id,
            "status": notice.status,
            "services": list(notice.services),
            "root_cause": notice.root_cause,
            "alert_count": notice.alert_count,
            "summary": notice.summary,
        },
    }
    event["payload"] = {k: v for k, v in event["payload"].items() if v is not None}
    event["client"] = "warroom"
    if notice.url:
        event["client_url"] = notice.url
        event["links"] = [{"href": notice.url, "text": "warroom incident"}]
    return event


@dataclass(frozen=True)
class PagerDutyReceiver:
    """Sends Events v2 to ``{base_url}/v2/enqueue``. The routing key is kept out of ``repr``."""

    routing_key: str = field(repr=False)
    base_url: str = "https://events.pagerduty.com"
    name: str = "pagerduty"
    source: str = "warroom"
    update_action: EventAction = "trigger"
    severity_map: Mapping[Severity, str] = field(default_factory=lambda: DEFAULT_SEVERITY_MAP)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.routing_key:
            raise ConfigError("pagerduty.routing_key", "must not be empty")
        if self.update_action not in ("trigger", "acknowledge"):
            raise ConfigError(
                "pagerduty.update_action", f"trigger or acknowledge, not {self.update_action!r}"
            )
        bad = {v for v in self.severity_map.values() if v not in PD_SEVERITIES}
        if bad:
            raise ConfigError("pagerduty.severity_map", f"{sorted(bad)} not among {PD_SEVERITIES}")

    def send(self, notice: IncidentNotice, *, action: EventAction | None = None) -> Attempt:
        """Send the event for ``notice``; ``action`` overrides the status mapping (e.g. acknowledge)."""
        act = action or event_action(notice.status, self.update_action)
        event = pagerduty_event(
            notice, self.routing_key, action=act, source=self.source, severity_map=self.severity_map
        )
        return post(
            self.name,
            notice,
            self.base_url.rstrip("/") + "/v2/enqueue",
            content=json.dumps(event).encode(),
            headers={"Content-Type": "application/json"},
            timeout=self.timeout,
        )
