"""The notification interface: what a receiver is told about an incident, and what it answers.

A :class:`Receiver` turns one :class:`IncidentNotice` into one delivery try and reports it as an
:class:`Attempt`; it never raises for a failed delivery. Retrying, back-off and the attempt log are
the job of :func:`correlate.notify.delivery.deliver` (in memory) and
:class:`correlate.notify.outbox.Outbox` (durable), so every receiver gets the same policy.

``Attempt.status`` is the notice's status (``open`` / ``update`` / ``acknowledged`` / ``resolved``),
i.e. *which* message was sent; ``ok`` says whether it was delivered. ``retryable`` is the receiver's
verdict on a failure (network error, timeout, 429, 5xx, SMTP 4xx) and ``retry_after`` the wait the
far end asked for (HTTP ``Retry-After``), if any.

``acknowledged`` means an on-call took the incident: PagerDuty gets an ``acknowledge`` event for the
same dedup key, the other receivers a message saying who acknowledged it. ``actor`` and ``note``
(default empty) say who changed the state and why; they are informative and round-trip through JSON.

A notice carries no labels: routing happens *before* a notice is queued, from the labels of the
incident's alerts (see :mod:`correlate.notify.routing`), so the notice stays the message itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

from warroom.errors import InputError
from warroom.model import Severity

NoticeStatus = Literal["open", "update", "acknowledged", "resolved"]
STATUSES: tuple[NoticeStatus, ...] = ("open", "update", "acknowledged", "resolved")
#: How human-facing receivers (Slack, email) tag a notice of each status.
STATUS_TAGS: Mapping[str, str] = MappingProxyType({s: s.upper() for s in STATUSES})


@dataclass(frozen=True, slots=True)
class IncidentNotice:
    """One grouped message about one incident: the unit every receiver delivers."""

    incident_id: str
    title: str
    severity: Severity
    status: NoticeStatus
    services: tuple[str, ...]
    root_cause: str | None
    summary: str
    url: str | None
    started_at: datetime
    alert_count: int
    actor: str = ""
    """Who changed the state (the on-call who acknowledged or resolved); empty when unknown."""
    note: str = ""
    """Why, in the actor's words (an ack comment, a resolution note); empty when none."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise InputError(f"notice status must be one of {STATUSES}, got {self.status!r}", "bad_status")
        if not self.incident_id:
            raise InputError("notice needs an incident_id", "bad_notice")

    def to_json(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "title": self.title,
            "severity": self.severity.value,
            "status": self.status,
            "services": list(self.services),
            "root_cause": self.root_cause,
            "summary": self.summary,
            "url": self.url,
            "started_at": self.started_at.isoformat(),
            "alert_count": self.alert_count,
            "actor": self.actor,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IncidentNotice:
        return cls(
            incident_id=str(data["incident_id"]),
            title=str(data["title"]),
            severity=Severity(data["severity"]),
            status=data["status"],
            services=tuple(data.get("services", ())),
            root_cause=data.get("root_cause"),
            summary=str(data.get("summary", "")),
            url=data.get("url"),
            started_at=datetime.fromisoformat(data["started_at"]),
            alert_count=int(data.get("alert_count", 0)),
            actor=str(data.get("actor") or ""),
            note=str(data.get("note") or ""),
        )


def status_line(notice: IncidentNotice) -> str:
    """``"Acknowledged by alice: looking at it"``: who moved the incident and why ('' if unsaid)."""
    if not notice.actor and not notice.note:
        return ""
    verb = {"acknowledged": "Acknowledged", "resolved": "Resolved"}.get(notice.status, "Updated")
    line = f"{verb} by {notice.actor}" if notice.actor else verb
    return f"{line}: {notice.note}" if notice.note else line


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at delivering one notice to one receiver."""

    receiver: str
    incident_id: str
    status: NoticeStatus
    ok: bool
    http_status: int | None
    error: str | None
    at: datetime
    attempt_no: int = 1
    retryable: bool = False
    retry_after: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "incident_id": self.incident_id,
            "status": self.status,
            "ok": self.ok,
            "http_status": self.http_status,
            "error": self.error,
            "at": self.at.isoformat(),
            "attempt_no": self.attempt_no,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            receiver=str(data["receiver"]),
            incident_id=str(data["incident_id"]),
            status=data["status"],
            ok=bool(data["ok"]),
            http_status=data.get("http_status"),
            error=data.get("error"),
            at=datetime.fromisoformat(data["at"]),
            attempt_no=int(data.get("attempt_no", 1)),
            retryable=bool(data.get("retryable", False)),
            retry_after=data.get("retry_after"),
        )


@runtime_checkable
class Receiver(Protocol):
    """Delivers a notice once. Must not raise for delivery failures: report them in the Attempt."""

    @property
    def name(self) -> str:
        """Identifies the receiver in attempts and logs (never a secret such as a webhook URL)."""
        ...

    def send(self, notice: IncidentNotice) -> Attempt: ...


def now() -> datetime:
    return datetime.now(UTC)


def attempt(
    receiver: str,
    notice: IncidentNotice,
    *,
    ok: bool,
    http_status: int | None = None,
    error: str | None = None,
    retryable: bool = False,
    retry_after: float | None = None,
) -> Attempt:
    """Build an Attempt for ``notice`` stamped now (``deliver`` sets the attempt number)."""
    return Attempt(
        receiver=receiver,
        incident_id=notice.incident_id,
        status=notice.status,
        ok=ok,
        http_status=http_status,
        error=error,
        at=now(),
        retryable=retryable,
        retry_after=retry_after,
    )


def describe(exc: BaseException) -> str:
    """One line naming the exception type, without a traceback."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
