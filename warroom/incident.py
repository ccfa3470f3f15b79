"""The incident: the one model correlation writes and the summaries, CLI and API read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from warroom.alert_json import time_from_text, time_text

__all__ = ["Incident"]


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident as correlation left it: what the CLI, the API and the summaries read.

    ``root_causes`` are ranked candidates, each ``{service, score, confidence, reasons}``.
    """

    id: str
    title: str
    severity: str
    status: str
    started_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acknowledged_by: str
    alert_count: int
    services: tuple[str, ...]
    fingerprints: tuple[str, ...]
    flapping: tuple[str, ...]
    root_causes: tuple[dict[str, Any], ...]
    merged_into: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "status": self.status,
            "started_at": time_text(self.started_at),
            "updated_at": time_text(self.updated_at),
            "resolved_at": time_text(self.resolved_at) if self.resolved_at else None,
            "acknowledged_by": self.acknowledged_by,
            "alert_count": self.alert_count,
            "services": list(self.services),
            "fingerprints": list(self.fingerprints),
            "flapping": list(self.flapping),
            "root_causes": list(self.root_causes),
            "merged_into": self.merged_into,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Incident:
        resolved = data.get("resolved_at")
        return cls(
            id=str(data["id"]),
            title=str(data["title"]),
            severity=str(data["severity"]),
            status=str(data["status"]),
            started_at=time_from_text(str(data["started_at"])),
            updated_at=time_from_text(str(data["updated_at"])),
            resolved_at=time_from_text(str(resolved)) if resolved else None,
            acknowledged_by=str(data.get("acknowledged_by", "")),
            alert_count=int(data.get("alert_count", 0)),
            services=tuple(data.get("services", ())),
            fingerprints=tuple(data.get("fingerprints", ())),
            flapping=tuple(data.get("flapping", ())),
            root_causes=tuple(dict(c) for c in data.get("root_causes", ())),
            merged_into=data.get("merged_into"),
        )
