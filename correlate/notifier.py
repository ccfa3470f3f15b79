"""From incident changes to queued notices: one grouped message per incident, routed by its alerts.

Only changes marked ``notify`` by the lifecycle are sent (opened, reopened, significant updates,
acknowledged, resolved). The receivers come from the routing rules applied to the labels of the
incident's alerts; the notice goes into the durable outbox, which delivers it in order with
retries. An incident that matches no route is logged by the outbox, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy.engine import Connection

from correlate.lifecycle import Change, ChangeKind, IncidentBook
from correlate.notify.base import IncidentNotice, NoticeStatus
from correlate.notify.outbox import Outbox
from correlate.notify.routing import Router

__all__ = ["Notifier", "notice_for"]

_STATUS: dict[ChangeKind, NoticeStatus] = {
    "opened": "open",
    "reopened": "open",
    "updated": "update",
    "merged": "update",
    "split": "update",
    "acknowledged": "acknowledged",
    "resolved": "resolved",
}


def notice_for(change: Change, base_url: str | None = None) -> IncidentNotice:
    """The message for one change: title, severity, services, the top root cause and why."""
    incident = change.incident
    top = change.root_causes[0] if change.root_causes else None
    lines = []
    if top is not None:
        lines.append(
            f"Likely root cause: {top.service} (confidence {top.confidence:.2f}): {'; '.join(top.reasons)}"
        )
    lines.extend(change.reasons)
    if incident.flapping:
        lines.append(f"Flapping (held open): {len(incident.flapping)} alert(s)")
    return IncidentNotice(
        incident_id=incident.id,
        title=incident.title,
        severity=incident.severity,
        status=_STATUS[change.kind],
        services=incident.services,
        root_cause=top.service if top else None,
        summary="\n".join(lines),
        url=f"{base_url.rstrip('/')}/incidents/{incident.id}" if base_url else None,
        started_at=incident.started_at,
        alert_count=change.alert_count,
        actor=change.actor,
        note=change.reasons[0] if change.actor and change.reasons else "",
    )


class Notifier:
    """Routes and queues the notices of a batch of changes (call inside the incident transaction)."""

    def __init__(self, router: Router, outbox: Outbox, base_url: str | None = None) -> None:
        self.router = router
        self.outbox = outbox
        self.base_url = base_url

    def labels(self, book: IncidentBook, incident_id: str) -> list[Mapping[str, str]]:
        try:
            return [a.labels for a in book.grouper.alerts(incident_id)]
        except KeyError:  # merged away: routed by the incident's services
            return []

    def queue(self, book: IncidentBook, changes: Iterable[Change], conn: Connection | None = None) -> int:
        """Queue a notice per notifying change; returns how many rows were queued."""
        queued = 0
        for change in changes:
            if not change.notify:
                continue
            label_sets = self.labels(book, change.incident.id) or [
                {"service": s} for s in change.incident.services
            ]
            receivers = self.router.receivers_for_alerts(label_sets)
            queued += len(self.outbox.enqueue(notice_for(change, self.base_url), receivers, conn=conn))
        return queued
