"""JSON shapes the API answers with, for the models that have no ``to_json`` of their own.

Conventions, as everywhere in the API: times are ISO-8601 UTC strings, durations are seconds
(float, ``null`` when unknown), and a pair list such as ``by_severity`` becomes an object.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from starlette.responses import Response

from correlate.lifecycle import Change
from summarize.period import DurationStats, PeriodDigest
from warroom.audit import AuditEntry

__all__ = ["audit_json", "change_json", "json_response", "jsonable", "period_json", "seconds"]


def jsonable(value: Any) -> Any:
    """``value`` with what strict JSON cannot carry replaced: NaN and ±inf → null (a gap in a
    series), times → ISO-8601, durations → seconds, anything else unknown → its ``str``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def json_response(value: Any, status_code: int = 200) -> Response:
    """A JSON answer for model dumps that may hold NaN or datetimes (evidence values, query params),
    which Starlette's strict ``JSONResponse`` would turn into a 500."""
    body = json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return Response(body, status_code=status_code, media_type="application/json")


def seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "reason": entry.reason,
        "before": entry.before,
        "after": entry.after,
        "hash": entry.hash,
    }


def change_json(change: Change) -> dict[str, Any]:
    """One incident change a command made: which incident, and its status as the command left it."""
    return {
        "kind": change.kind,
        "incident_id": change.incident.id,
        "status": change.incident.status,
        "fingerprints": list(change.incident.fingerprints),
        "at": change.at.isoformat(),
        "notify": change.notify,
        "reasons": list(change.reasons),
        "actor": change.actor,
    }


def _stats(stats: DurationStats) -> dict[str, Any]:
    return {"count": stats.count, "median_s": seconds(stats.median), "p90_s": seconds(stats.p90)}


def _counts(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    return dict(pairs)


def period_json(digest: PeriodDigest) -> dict[str, Any]:
    """The SRE digest as JSON: what :func:`summarize.render.render_period` shows, as data."""
    return {
        "start": digest.start.isoformat(),
        "end": digest.end.isoformat(),
        "incident_count": len(digest.incidents),
        "by_severity": _counts(digest.by_severity),
        "by_status": _counts(digest.by_status),
        "time_to_acknowledge": _stats(digest.tta),
        "time_to_resolve": _stats(digest.ttr),
        "alert_count": digest.alert_count,
        "alerts_by_severity": _counts(digest.alerts_by_severity),
        "incidents": [
            {
                "id": row.id,
                "title": row.title,
                "severity": row.severity,
                "status": row.status,
                "services": list(row.services),
                "started_at": row.started_at.isoformat(),
                "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
                "tta_s": seconds(row.tta),
                "ttr_s": seconds(row.ttr),
                "root_cause": row.root_cause or None,
                "acknowledged_by": row.acknowledged_by,
                "alert_count": row.alert_count,
                "reopened": row.reopened,
                "merged_into": row.merged_into,
            }
            for row in digest.incidents
        ],
        "noisiest": [
            {
                "fingerprint": n.fingerprint,
                "title": n.title,
                "service": n.service,
                "severity": n.severity,
                "fires": n.fires,
                "firing_s": seconds(n.firing),
            }
            for n in digest.noisiest
        ],
        "flapping": [
            {
                "fingerprint": f.fingerprint,
                "title": f.title,
                "service": f.service,
                "fires": f.fires,
                "incidents": list(f.incidents),
            }
            for f in digest.flapping
        ],
    }
