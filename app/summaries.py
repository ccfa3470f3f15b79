"""Summaries composed from the stages: the incident (correlate), its alerts and telemetry (the
store), the evidence pack, digest, optional LLM narrative and proposals (summarize).

One function per thing a user asks for — an incident summary, a period digest — so the CLI, the API
and the demo all produce the same result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app import wiring
from correlate.store import IncidentStore
from summarize import digest, evidence, narrative
from summarize.approval import Approvals, Proposal, State
from summarize.catalog import Catalog
from summarize.llm import ChatClient, LLMConfig
from summarize.model import EvidencePack, Remediation, Summary
from summarize.period import PeriodDigest, build_period
from warroom import alerts as alert_table
from warroom import audit
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.incident import Incident
from warroom.model import Alert
from warroom.statedb import StateDB

__all__ = [
    "SummaryRun",
    "evidence_pack",
    "incident_alerts",
    "period_digest",
    "summarize_incident",
    "write_pages",
]

log = logging.getLogger("warroom.summarize")

#: Proposals in these states already stand for their action: the same one is not proposed again.
_STANDING = (State.PROPOSED, State.APPROVED, State.EXECUTING, State.SUCCEEDED)


@dataclass(frozen=True)
class SummaryRun:
    summary: Summary
    outcome: narrative.NarrativeOutcome | None  # None: no LLM configured (or not asked for)
    proposals: tuple[Proposal, ...]  # created by this run (standing ones are not repeated)


def incident_alerts(store: ClickHouse, incident: Incident, until: datetime) -> list[Alert]:
    """Every fire of the incident's alerts from an hour before it started (re-fires included)."""
    fingerprints = set(incident.fingerprints)
    since = incident.started_at - timedelta(hours=1)
    return [
        a
        for a in alert_table.read(store, since, until + timedelta(seconds=1))
        if a.fingerprint in fingerprints
    ]


def evidence_pack(
    store: ClickHouse,
    incidents: IncidentStore,
    incident_id: str,
    now: datetime,
    *,
    alerts: Sequence[Alert] | None = None,
    events: Sequence[Mapping[str, Any]] | None = None,
) -> EvidencePack:
    """The incident's evidence; ``alerts`` / ``events`` when the caller has already read them
    (the console shows them too), else read here."""
    incident = incidents.get(incident_id)
    return evidence.collect(
        store,
        incident,
        incident_alerts(store, incident, now) if alerts is None else alerts,
        timeline=incidents.events(incident_id) if events is None else events,
        now=now,
    )


def summarize_incident(
    settings: Settings,
    store: ClickHouse,
    state: StateDB,
    incidents: IncidentStore,
    incident_id: str,
    *,
    now: datetime | None = None,
    use_llm: bool = True,
    propose: bool = True,
    catalog: Catalog | None = None,
) -> SummaryRun:
    """The digest of one incident, plus the LLM narrative when one is configured, and its
    remediations stored as proposals awaiting approval (``propose``).

    ``now`` ends the window of an incident still open (default: the wall clock). The LLM's outcome
    — accepted or why not — is appended to the audit log, so a rejected answer is on record.
    """
    now = now or datetime.now(UTC)
    catalog = catalog or wiring.catalog(settings)
    pack = evidence_pack(store, incidents, incident_id, now)
    summary = digest.build(pack, catalog)
    outcome = None
    config = LLMConfig.from_settings(settings)
    if use_llm and config is not None:
        outcome = narrative.write(
            pack,
            ChatClient(config),
            catalog,
            narrative.redactor_from_settings(settings),
            narrative.describe_catalog(catalog),
        )
        summary = replace(summary, narrative=outcome.narrative, llm_status=outcome.status)
        with state.begin() as conn:
            audit.append(
                conn,
                actor="warroom",
                action="summary.narrative",
                subject=incident_id,
                reason=outcome.status,
                after={k: v for k, v in outcome.to_json().items() if k != "narrative"},
            )
    proposals: tuple[Proposal, ...] = ()
    if propose:
        proposals = _propose(Approvals.from_settings(state, settings, catalog), summary)
    return SummaryRun(summary, outcome, proposals)


def _propose(approvals: Approvals, summary: Summary) -> tuple[Proposal, ...]:
    incident_id = summary.pack.incident.id
    remedies: list[Remediation] = list(summary.remediations)
    if summary.narrative is not None:
        remedies.extend(summary.narrative.remediations)
    standing = {
        (p.action, tuple(sorted((k, str(v)) for k, v in p.params.items())))
        for p in approvals.list(incident=incident_id)
        if p.state in _STANDING
    }
    created = []
    for remedy in remedies:
        params = approvals.catalog.action(remedy.action).validate(remedy.params)
        key = (remedy.action, tuple(sorted((k, str(v)) for k, v in params.items())))
        if key in standing:
            continue
        standing.add(key)
        created.append(approvals.propose(incident_id, remedy, author="warroom", source=remedy.source))
    return tuple(created)


def period_digest(
    store: ClickHouse, incidents: IncidentStore, since: timedelta, now: datetime | None = None
) -> PeriodDigest:
    """Every incident that started in ``[now - since, now]`` or was still open then, with its events,
    and the alerts of the period."""
    now = now or datetime.now(UTC)
    start = now - since
    chosen = [
        i
        for i in incidents.incidents(limit=100_000)
        if i.started_at <= now and (i.started_at >= start or i.resolved_at is None or i.resolved_at >= start)
    ]
    events = {i.id: incidents.events(i.id) for i in chosen}
    return build_period(chosen, events, alert_table.read(store, start, now), start=start, end=now)


def write_pages(summary: Summary, folder: Path) -> Path:
    """The summary as ``<incident>.html`` and ``.md`` in ``folder`` (each written whole: a reader —
    the console, a person — never sees half a file); returns the HTML page's path."""
    from summarize.render import render

    folder.mkdir(parents=True, exist_ok=True)
    page = folder / f"{summary.pack.incident.id}.html"
    write_atomic(page, render(summary, "html"))
    write_atomic(page.with_suffix(".md"), render(summary, "md"))
    return page


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name beside ``path``, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
