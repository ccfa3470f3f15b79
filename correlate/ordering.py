"""The order alerts are decided in: deterministic, and faithful to when each version happened.

A recorded stream (a JSONL file, a range of the alerts table) holds *versions* of alert
occurrences: records sharing ``(fingerprint, starts_at)`` are one occurrence fired, re-sent,
resolved. :func:`events` turns them into ``(time, alert)`` events, independent of input order:
the first version at ``starts_at`` and later ones at their own time (``updated_at``, else
``ends_at``), never earlier. An occurrence first seen already resolved also fires first, at its
start, and resolves at its end — so the lifecycle sees it open, as a live correlator would have.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from warroom.alert_json import alert_to_json
from warroom.model import Alert

__all__ = ["events", "version_events"]

_FLOOR = datetime.min.replace(tzinfo=UTC)


def _canonical(alert: Alert) -> str:
    return json.dumps(alert_to_json(alert), sort_keys=True)


def version_events(alert: Alert, known: bool) -> list[tuple[datetime, Alert]]:
    """One version as events; ``known``: an earlier version of its occurrence was decided already."""
    start = alert.starts_at
    if known:
        return [(max(start, alert.updated_at or alert.ends_at or start), alert)]
    if alert.ends_at is None:
        return [(start, alert)]
    firing = replace(alert, ends_at=None, updated_at=start)
    return [(start, firing), (max(start, alert.ends_at), alert)]


def events(alerts: Iterable[Alert]) -> list[tuple[datetime, Alert]]:
    """Every version of ``alerts`` as ``(time, alert)``, in canonical order (see the module doc).

    Versions of one occurrence go firing before resolved, then by ``ends_at``, ``updated_at`` and
    content; ties in time go first versions first, then by start and fingerprint.
    """
    versions: dict[tuple[str, datetime], list[Alert]] = {}
    for a in alerts:
        versions.setdefault((a.fingerprint, a.starts_at), []).append(a)
    keyed: list[tuple[datetime, int, datetime, str, int, Alert]] = []
    for (fingerprint, starts_at), group in versions.items():
        group.sort(
            key=lambda a: (a.ends_at is not None, a.ends_at or _FLOOR, a.updated_at or _FLOOR, _canonical(a))
        )
        n = 0
        for i, version in enumerate(group):
            for at, event in version_events(version, known=i > 0):
                keyed.append((at, 0 if n == 0 else 1, starts_at, fingerprint, n, event))
                n += 1
    keyed.sort(key=lambda t: t[:5])
    return [(t[0], t[5]) for t in keyed]
