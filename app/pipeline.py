"""The whole path on one scenario, step by step: generate → store → detect → correlate.

``warroom demo`` walks it with commentary; ``warroom bench summarize`` walks it over several
scenarios and scores the summaries. Both run on the embedded store in this one process.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app import wiring
from correlate.service import Correlator, RunSummary
from correlate.store import IncidentStore
from correlate.topology import TOPOLOGY_TABLE, Topology
from correlate.topology_refresh import refresh
from detect.run import DetectRunner, RunResult
from ingest.files import ingest_files
from ingest.stats import IngestStats
from warroom import schema as s
from warroom.alert_json import time_from_text
from warroom.alerts import ALERTS
from warroom.clickhouse import ClickHouse
from warroom.config import Settings
from warroom.errors import InputError
from warroom.statedb import StateDB

__all__ = [
    "Correlated",
    "correlate",
    "correlate_into",
    "detect",
    "generate",
    "ingest_dir",
    "reset",
    "window",
]


def generate(
    scenario: str, out: Path, *, duration: str, rate: float, seed: int, start: str | None = None
) -> dict[str, Any]:
    """Write the scenario's OTLP files and ground truth into ``out``; returns the truth as JSON."""
    from fixtures import main as fixtures_main

    argv = ["generate", "--scenario", scenario, "--out", str(out), "--duration", duration]
    argv += ["--rate", str(rate), "--seed", str(seed)]
    if start:
        argv += ["--start", start]
    code = fixtures_main(argv)
    if code:
        raise InputError(f"scenario generation failed with exit code {code}", reason="fixtures_failed")
    truth: dict[str, Any] = json.loads((out / "ground_truth.json").read_text())
    return truth


def window(truth: dict[str, Any]) -> tuple[datetime, datetime]:
    return time_from_text(truth["start"]), time_from_text(truth["end"])


def reset(store: ClickHouse) -> None:
    """Empty the telemetry, alert and topology tables, so a run's numbers are its own."""
    for table in (*s.TELEMETRY_TABLES, s.TRACE_ID_TS, s.DEAD_LETTERS, ALERTS, TOPOLOGY_TABLE):
        store.command(f"TRUNCATE TABLE {store.table(table)}")


def ingest_dir(
    settings: Settings, store: ClickHouse, out: Path, stats: IngestStats | None = None
) -> dict[str, int]:
    """Store the scenario's files directly (no broker); ``stats`` counts as it goes (progress)."""
    return ingest_files(
        [out / "traces.jsonl", out / "logs.jsonl", out / "metrics.jsonl"],
        settings,
        wiring.writer(settings, store),
        stats or IngestStats(),
    )


def detect(
    store: ClickHouse,
    state: Path,
    start: datetime,
    end: datetime,
    *,
    chunks: int = 1,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """The layered detectors over ``[start + a sixth, end)`` (the first sixth warms them up).

    ``chunks > 1`` runs the window as that many consecutive runs, each resuming from the state the
    previous one saved — the way ``detect watch`` advances — so ``progress(steps_done)`` can be
    reported between them. The alerts opened are the same; an alert that resolves in a later
    chunk is written again with its end (as in production), where one run writes it once.
    """
    state.unlink(missing_ok=True)
    runner = DetectRunner(store, state)
    step = runner.config.step_s
    first = int((start + (end - start) / 6).timestamp()) // step * step
    last = int(end.timestamp()) // step * step
    if last <= first:
        return runner.run(start + (end - start) / 6, end)  # says why the window is empty
    steps = (last - first) // step
    bounds = sorted({first + steps * i // max(1, chunks) * step for i in range(max(1, chunks))} | {last})
    results = []
    for a, b in itertools.pairwise(bounds):
        results.append(runner.run(datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC)))
        if progress is not None:
            progress((b - a) // step)
    return RunResult(
        start=results[0].start,
        end=results[-1].end,
        series=max(r.series for r in results),
        opened=[a for r in results for a in r.opened],
        written=sum(r.written for r in results),
        templates=results[-1].templates,
        new_templates=sum(r.new_templates for r in results),
    )


@dataclass
class Correlated:
    incidents: IncidentStore
    state: StateDB
    summary: RunSummary
    topology: Topology | None


def correlate(
    settings: Settings, store: ClickHouse, db_path: Path, start: datetime, end: datetime
) -> Correlated:
    """Alerts → incidents on a fresh SQLite state database at ``db_path``, topology learned from
    the scenario's traces."""
    db_path.unlink(missing_ok=True)
    state = wiring.state_db(settings.replace(state_dsn=f"sqlite:///{db_path}"))
    return correlate_into(settings, store, state, start, end)


def correlate_into(
    settings: Settings, store: ClickHouse, state: StateDB, start: datetime, end: datetime
) -> Correlated:
    """Alerts → incidents in ``state`` (the caller has emptied it), topology learned from the
    scenario's traces."""
    topology = refresh(store, end, end - start)
    incidents = wiring.incident_store(settings, state, lambda: topology)
    summary = Correlator(store, incidents).run(start, end)
    return Correlated(incidents, state, summary, topology)
