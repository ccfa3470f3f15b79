"""Detection quality on the fixture scenarios, against their ground truth.

A scenario is simulated, ingested through the real writer into a database, and detection runs
over it as ``warroom detect run`` would. Two checks, per the product's promise:

* **caught**: every injected (non-harmless) fault raises an alert on an affected service within
  ``within_steps`` steps of its start;
* **quiet**: outside the faults, no service gets more than one alert per simulated day.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from detect.run import DetectRunner, RunConfig
from fixtures import FaultTruth
from ingest.otlp_parse import Limits
from ingest.writer import NativeWriter, Prepared, Record
from warroom.clickhouse import ClickHouse
from warroom.model import Alert

START = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    faults: int
    caught: int
    delays_steps: tuple[int | None, ...]
    quiet_alerts: dict[str, int]
    allowed_per_service: int
    alerts: tuple[Alert, ...]

    @property
    def ok(self) -> bool:
        quiet = all(n <= self.allowed_per_service for n in self.quiet_alerts.values())
        return self.caught == self.faults and quiet


def load(store: ClickHouse, scenario: str, seed: int, duration: timedelta, rate: float) -> None:
    import fixtures

    writer = NativeWriter(store, Limits(), time.time_ns)
    batches: dict[str, list[Prepared]] = {"traces": [], "logs": [], "metrics": []}
    for signal, request in fixtures.iter_requests(
        scenario, seed=seed, start=START, duration=duration, rate=rate
    ):
        items = batches[signal]
        items.append(
            writer.prepare(
                Record(signal, "otlp_proto", request.SerializeToString(), "eval", scenario, 0, len(items))
            )
        )
    for kind, items in batches.items():
        for i in range(0, len(items), 2000):
            writer.write(kind, items[i : i + 2000], f"eval:{scenario}:{seed}:{kind}:{i}:{time.time_ns()}")


def evaluate(
    store: ClickHouse,
    scenario: str,
    state_dir: Path,
    seed: int = 7,
    duration: timedelta = timedelta(minutes=120),
    rate: float = 1.0,
    within_steps: int = 3,
    config: RunConfig | None = None,
) -> ScenarioResult:
    import fixtures

    config = config or RunConfig()
    step = timedelta(seconds=config.step_s)
    load(store, scenario, seed, duration, rate)
    truth = fixtures.ground_truth(scenario, seed=seed, start=START, duration=duration, step=step, rate=rate)
    runner = DetectRunner(store, state_dir / f"{scenario}.json", config)
    result = runner.run(START + timedelta(minutes=30), START + duration)
    alerts = tuple(sorted(result.opened, key=lambda a: a.starts_at))
    faults = [f for f in truth.faults if not f.harmless]
    delays: list[int | None] = []
    for fault in faults:
        affected = {str(s) for s in (*fault.affected_services, fault.root_cause_service) if s}
        hits = [
            a
            for a in alerts
            if _touches(a, affected)
            and fault.start - step <= a.starts_at <= fault.start + within_steps * step
        ]
        delays.append(min((int((a.starts_at - fault.start) / step) for a in hits), default=None))
    quiet = _episodes([a for a in alerts if not any(_during(a, f) for f in faults)])
    days = max(1, math.ceil(duration / timedelta(days=1)))
    return ScenarioResult(
        scenario, len(faults), sum(d is not None for d in delays), tuple(delays), dict(quiet), days, alerts
    )


def _episodes(alerts: list[Alert], gap: timedelta = timedelta(minutes=10)) -> dict[str, int]:
    """Alert episodes per service: alerts of one service opening within ``gap`` of each other are
    one page's worth (correlation groups them into one incident anyway)."""
    last: dict[str, datetime] = {}
    count: Counter[str] = Counter()
    for a in sorted(alerts, key=lambda a: a.starts_at):
        if a.service not in last or a.starts_at - last[a.service] > gap:
            count[a.service] += 1
        last[a.service] = a.starts_at
    return dict(count)


def _touches(alert: Alert, services: set[str]) -> bool:
    values = {alert.service, alert.labels.get("edge", ""), *alert.labels.get("edge", "").split("->")}
    return bool(values & services)


def _during(alert: Alert, fault: FaultTruth) -> bool:
    return fault.start - timedelta(minutes=2) <= alert.starts_at <= fault.end + timedelta(minutes=10)
