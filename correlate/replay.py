"""Offline, deterministic correlation of a recorded alert stream: alerts JSONL in, incidents JSONL out.

:func:`replay` reads every alert of a JSONL file, orders them canonically
(:func:`correlate.ordering.events`, so the result does not depend on the order of the input lines),
runs them through the live correlator's :class:`~correlate.lifecycle.IncidentBook` — grouping,
flapping, quiet-period resolves and reopens, with the clock at each record's time — ranks each
incident's root causes with :func:`~correlate.rootcause.rank` and writes one incident per line.
The same input (in any line order), topology and config give byte-identical output.

Alert JSONL format: see :mod:`warroom.alert_json`.

Incident JSONL format
---------------------

One object per incident, sorted by ``(started_at, id)``, keys sorted:

* ``id``, ``title``, ``severity``, ``status`` (``open`` | ``resolved``), ``started_at``;
* ``alert_count`` — alert occurrences grouped into the incident (duplicates not counted);
* ``fingerprints`` (arrival order), ``services`` (sorted);
* ``root_causes`` — the top 3 of :func:`~correlate.rootcause.rank`: ``service``, ``score``,
  ``confidence``, ``reasons``;
* ``decisions`` — "why grouped here", one per record that touched the incident: ``fingerprint``,
  ``starts_at``, ``incident_id``, ``joined``, ``duplicate``, ``reopened``, ``reason`` and
  ``candidates`` (``incident_id``,
  ``score`` and the ``factors`` ``topology``, ``resources``, ``text``, ``time``, ``change``).

Floats in the output are rounded to 6 decimals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from correlate.grouping import GroupingConfig, Incident
from correlate.grouping_state import decision_to_json
from correlate.lifecycle import IncidentBook, LifecycleConfig
from correlate.ordering import events
from correlate.rootcause import rank
from correlate.topology import Topology
from warroom.alert_json import alert_from_json, alert_to_json, read_alerts, time_text
from warroom.errors import InputError
from warroom.model import Alert

__all__ = ["ReplaySummary", "alert_from_json", "alert_to_json", "incident_to_json", "read_alerts", "replay"]

ROOT_CAUSES = 3
_DIGITS = 6


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """``alerts``: records read; ``duplicates``: records that updated an already-seen alert;
    ``compression``: ``1 - incidents / alerts`` (0 when there are no alerts)."""

    alerts: int
    incidents: int
    duplicates: int
    compression: float


# --- ordering -----------------------------------------------------------------------------------


# --- incidents → JSON ---------------------------------------------------------------------------


def incident_to_json(incident: Incident, members: list[Alert], topology: Topology | None) -> dict[str, Any]:
    """One incident line: summary, top-3 root causes of ``members`` and every grouping decision."""
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity.value,
        "status": incident.status,
        "started_at": time_text(incident.started_at),
        "alert_count": sum(1 for d in incident.decisions if not d.duplicate),
        "fingerprints": list(incident.fingerprints),
        "services": list(incident.services),
        "root_causes": [c.to_json() for c in rank(members, topology, ROOT_CAUSES)],  # rounded by rank
        "decisions": [decision_to_json(d, _DIGITS) for d in incident.decisions],
    }


def replay(
    alerts_path: Path,
    out_path: Path,
    topology: Topology | None = None,
    config: GroupingConfig | None = None,
    lifecycle: LifecycleConfig | None = None,
) -> ReplaySummary:
    """Group the alerts of ``alerts_path`` into incidents and write them to ``out_path`` (JSONL).

    Deterministic: the same alerts in any line order give byte-identical output.
    """
    alerts = read_alerts(alerts_path)
    book = IncidentBook(topology, config or GroupingConfig(), lifecycle or LifecycleConfig())
    for at, alert in events(alerts):
        book.tick(at)
        book.ingest(alert)
    incidents = sorted(book.incidents(), key=lambda i: (i.started_at, i.id))
    lines = [
        json.dumps(incident_to_json(i, book.grouper.alerts(i.id), topology), sort_keys=True) + "\n"
        for i in incidents
    ]
    try:
        out_path.write_bytes("".join(lines).encode("utf-8"))
    except OSError as exc:
        raise InputError(
            f"{out_path}: cannot write incidents: {exc.strerror or exc}", reason="unwritable"
        ) from exc
    count = len(alerts)
    occurrences = len({(a.fingerprint, a.starts_at) for a in alerts})
    return ReplaySummary(
        alerts=count,
        incidents=len(incidents),
        duplicates=count - occurrences,
        compression=round(1.0 - len(incidents) / count, _DIGITS) if count else 0.0,
    )
