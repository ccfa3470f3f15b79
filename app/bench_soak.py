"""``warroom bench soak``: does ``warroom up`` hold steady under hours of traffic? A bounded version.

A process that runs for months fails by creeping, not by crashing: memory that grows with every
batch, a consumer that falls behind a little more each minute, an error logged once an hour. None
of that shows in a unit test, so this bench runs the product as it is deployed on the embedded
defaults — one ``warroom up`` subprocess with every service (ingest, detect, correlate, summarize,
API), its own ``WARROOM_HOME``, embedded ClickHouse and SQLite state — and feeds it scenario traffic
at a steady rate through a local Kafka-protocol broker, on the settings' topic names:

* **traffic** — a fixture scenario (:mod:`fixtures`, ``mixed`` by default: overlapping faults, so
  detection, correlation and summaries have work to do, not just ingest) simulated once at
  ``--rate`` entry requests per second of the simulated shop (about five spans each, plus logs and
  metrics) with 5-second steps, then replayed in real time and in a loop: every record's
  timestamps are shifted so that its step has just ended when it is sent, and each loop rewrites
  the trace and span ids, so a soak longer than the scenario still sends fresh, current telemetry.
  A step's records are spread evenly over the next step, as a Collector's batches would be;
* **samples** — every ``--sample-every`` seconds, the process's RSS and the consumer lag (records
  behind the high watermark, from ingest's status endpoint);
* **after** — SIGTERM, which must end the process with exit 0 once the last records are stored;
  then the rows in the store (the embedded engine can be opened by one process only, so only now)
  must equal the items produced, and the process's JSON logs must hold no error;
* **baseline** — the same ``warroom up`` idle (no traffic) for a fifth of the duration, before the
  soak: the RSS slope it shows is what start-up settling and idle housekeeping cost, so the
  reader can tell traffic-induced growth from that.

The RSS slope is fitted by least squares over the second half of each run, after start-up and the
first allocations have settled. ``--json`` prints one JSON object as the last line.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import click
import httpx
import psutil
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.bench_ingest import _count_rows, _status
from fixtures import SCENARIOS, iter_requests
from fixtures.output import _count
from warroom.config import load_settings
from warroom.localbroker import LocalBroker, free_port

__all__ = ["Phase", "Record", "Sample", "retime", "run", "scenario_cycle", "slope_per_min"]

STEP = timedelta(seconds=5)
#: Where the scenario is simulated before it is shifted to now: at 09:00 UTC the fixtures' diurnal
#: factor is 1, so ``--rate`` is the rate sent, and a fixed start makes every soak send the same data.
REFERENCE_START = datetime(2025, 3, 4, 9, tzinfo=UTC)
BASELINE_SHARE = 0.2
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 120.0
#: What a step's item counts are called in :func:`fixtures.output._count`'s volume, per signal.
ITEMS = {"traces": "spans", "logs": "log_records", "metrics": "metric_points"}
REQUESTS: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}


# -- traffic ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record of the scenario: sent ``at_steps`` steps after the cycle's live start."""

    at_steps: float
    signal: str
    payload: bytes
    items: int


def scenario_cycle(scenario: str, rate: float, steps: int) -> list[Record]:
    """The first ``steps`` steps of the scenario at its shortest full length, as the records to send.

    The scenario is laid out over its minimum length (every fault and the calm before it at least
    15 steps) and only the steps a run needs are simulated: a 20-second test does not pay for the
    whole scenario. Step ``i``'s records are scheduled evenly over ``[i, i + 1)`` steps after the
    live start, whose data is one step earlier, so nothing is sent before its step has ended.
    """
    chosen = SCENARIOS[scenario]
    requests = iter_requests(
        scenario, seed=7, start=REFERENCE_START, duration=STEP * chosen.min_steps, step=STEP, rate=rate
    )
    records: list[Record] = []
    for index, step in enumerate(islice(_steps(requests), min(steps, chosen.min_steps))):
        for j, (signal_name, message) in enumerate(step):
            volume: dict[str, int] = {}
            _count(volume, signal_name, message)
            records.append(
                Record(
                    index + j / len(step),
                    signal_name,
                    message.SerializeToString(),
                    volume[ITEMS[signal_name]],
                )
            )
    return records


def _steps(requests: Iterator[tuple[str, Any]]) -> Iterator[list[tuple[str, Any]]]:
    """Group :func:`fixtures.iter_requests` into steps: each step ends with its one metrics request."""
    step: list[tuple[str, Any]] = []
    for signal_name, message in requests:
        step.append((signal_name, message))
        if signal_name == "metrics":
            yield step
            step = []


def retime(signal_name: str, payload: bytes, delta_ns: int, loop: int) -> bytes:
    """``payload`` with every timestamp moved by ``delta_ns``, and its ids made new for ``loop``.

    Loop 0 keeps the ids; a later loop XORs its number into the last four bytes of every trace and
    span id, everywhere they occur (spans, parents, links, log records, exemplars), so traces stay
    whole and the replayed ones are new traces rather than duplicates of the first loop's.
    """
    message = REQUESTS[signal_name].FromString(payload)

    def new(identifier: bytes) -> bytes:
        if not loop or not identifier:
            return identifier
        tail = int.from_bytes(identifier[-4:], "big") ^ loop
        return identifier[:-4] + tail.to_bytes(4, "big")

    if isinstance(message, ExportTraceServiceRequest):
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    span.start_time_unix_nano += delta_ns
                    span.end_time_unix_nano += delta_ns
                    span.trace_id, span.span_id = new(span.trace_id), new(span.span_id)
                    span.parent_span_id = new(span.parent_span_id)
                    for event in span.events:
                        event.time_unix_nano += delta_ns
                    for link in span.links:
                        link.trace_id, link.span_id = new(link.trace_id), new(link.span_id)
    elif isinstance(message, ExportLogsServiceRequest):
        for rl in message.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    if record.time_unix_nano:
                        record.time_unix_nano += delta_ns
                    if record.observed_time_unix_nano:
                        record.observed_time_unix_nano += delta_ns
                    record.trace_id, record.span_id = new(record.trace_id), new(record.span_id)
    else:
        for rm in message.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points if kind else ():
                        point.time_unix_nano += delta_ns
                        if point.start_time_unix_nano:
                            point.start_time_unix_nano += delta_ns
                        for exemplar in getattr(point, "exemplars", ()):  # a summary has none
                            exemplar.time_unix_nano += delta_ns
                            exemplar.trace_id, exemplar.span_id = (
                                new(exemplar.trace_id),
                                new(exemplar.span_id),
                            )
    return message.SerializeToString()


class Traffic:
    """The cycle replayed from ``live_start`` (monotonic) on: :meth:`due` yields what is due by
    ``now``, in order, its timestamps placed after ``wall_start`` (the same instant, in Unix time)."""

    def __init__(
        self, cycle: Sequence[Record], cycle_steps: int, live_start: float, wall_start: float
    ) -> None:
        self.cycle, self.cycle_steps, self.live_start = cycle, cycle_steps, live_start
        self.wall_start_ns = int(wall_start * 1e9)
        self.index = 0  # records sent, over all loops
        self.produced = dict.fromkeys(ITEMS, 0)

    def next_at(self) -> float:
        loop, i = divmod(self.index, len(self.cycle))
        return self.live_start + (loop * self.cycle_steps + self.cycle[i].at_steps) * STEP.total_seconds()

    def due(self, now: float) -> Iterator[tuple[str, bytes]]:
        step_ns = int(STEP.total_seconds() * 1e9)
        data_start_ns = self.wall_start_ns - step_ns  # step i is sent during step i + 1
        while self.next_at() <= now:
            loop, i = divmod(self.index, len(self.cycle))
            record = self.cycle[i]
            delta = data_start_ns + loop * self.cycle_steps * step_ns - _ns(REFERENCE_START)
            yield record.signal, retime(record.signal, record.payload, delta, loop)
            self.produced[record.signal] += record.items
            self.index += 1


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 10**9


# -- the process under test -------------------------------------------------------------------------


@dataclass
class Sample:
    """One look at the process: RSS, Kafka lag (records not yet polled), items stored so far, and
    the backlog — items produced but not yet stored, which also counts what ingest has polled and
    still buffers, so a consumer that polls promptly but stores slowly shows here and not as lag.

    RSS is split (Linux) into anonymous memory — the heap: what a leak grows — and file-backed
    pages: mostly the code of the embedded engine's large shared library, faulted in as new query
    paths run, which grows for a while without being a leak."""

    t: float
    rss_mb: float
    lag: int | None
    items: int | None = None
    backlog: int | None = None
    anon_mb: float | None = None
    file_mb: float | None = None


@dataclass
class Phase:
    """One ``warroom up`` run: its samples, what it logged and what it stored."""

    name: str
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    produced: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ITEMS, 0))
    stored: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ITEMS, 0))
    errors: list[str] = field(default_factory=list)
    other_stderr: list[str] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)  # "logger: message" → times logged
    ready_s: float = 0.0
    drain_s: float = 0.0
    stop_s: float = 0.0

    def during(self) -> list[Sample]:
        """The samples taken while traffic ran (a drain after it is not part of the curve's fit)."""
        return [s for s in self.samples if s.t <= self.seconds + 1e-6]

    def figures(self) -> dict[str, Any]:
        rss = [s.rss_mb for s in self.samples]
        lags = [s.lag for s in self.samples if s.lag is not None]
        backlogs = [s.backlog for s in self.samples if s.backlog is not None]
        half = [s for s in self.during() if s.t >= self.seconds / 2]
        return {
            "rss_mb_start": round(rss[0], 1) if rss else None,
            "rss_mb_end": round(rss[-1], 1) if rss else None,
            "rss_mb_max": round(max(rss), 1) if rss else None,
            "rss_slope_mb_per_min": slope_per_min([(s.t, s.rss_mb) for s in half]),
            "rss_anon_slope_mb_per_min": slope_per_min(
                [(s.t, s.anon_mb) for s in half if s.anon_mb is not None]
            ),
            "rss_file_slope_mb_per_min": slope_per_min(
                [(s.t, s.file_mb) for s in half if s.file_mb is not None]
            ),
            **fifths(self.during(), self.seconds),
            "max_lag": max(lags) if lags else None,
            "max_backlog_items": max(backlogs) if backlogs else None,
            "error_logs": len(self.errors),
        }


def fifths(samples: Sequence[Sample], seconds: float) -> dict[str, Any]:
    """The median RSS of each fifth of the run, and the growth between the last two, per minute.

    Why medians: RSS samples swing by tens of MB with allocation bursts (a merge, a summary), so a
    slope fitted through them moves with where the bursts fall; the median of each window does not,
    and the last two windows say whether the curve is still rising once warmed up.
    """
    windows: list[list[float]] = [[] for _ in range(5)]
    for sample in samples:
        windows[min(4, int(sample.t / seconds * 5))].append(sample.rss_mb)
    medians = [round(statistics.median(w), 1) if w else None for w in windows]
    last, before = medians[4], medians[3]
    growth = None if last is None or before is None else round((last - before) / (seconds / 5 / 60), 3)
    return {"rss_mb_median_by_fifth": medians, "rss_growth_last_fifth_mb_per_min": growth}


def slope_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, MB)`` points, in MB per minute; None below two points."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (y - mean_y) for t, y in points)
    return round(cov / var * 60, 3)


class Up:
    """``warroom up`` (every service) as a subprocess with its own home, ports and stderr file."""

    #: The Python arguments that run it; an investigation may swap in a wrapper (e.g. tracemalloc).
    command: tuple[str, ...] = ("-m", "app.cli", "up")

    def __init__(self, root: Path, broker: LocalBroker) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.home = root / "home"
        self.stderr_path = root / "up.stderr"
        self.api_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARROOM_")}
        env.update(
            {
                "WARROOM_HOME": str(self.home),
                "WARROOM_KAFKA_BOOTSTRAP": broker.bootstrap,
                # Its own group: a member left over from the previous run would hold up the assignment.
                "WARROOM_KAFKA_GROUP_ID": f"warroom-soak-{root.name}",
                "WARROOM_API_PORT": str(self.api_port),
                "WARROOM_LOG_LEVEL": "INFO",
            }
        )
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, *self.command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        self.ps = psutil.Process(self.process.pid)

    def check_alive(self, during: str) -> None:
        if self.process.poll() is not None:
            raise click.ClickException(
                f"warroom up exited with {self.process.returncode} {during}:\n{self.stderr_tail()}"
            )

    def stderr_tail(self, chars: int = 3000) -> str:
        return self.stderr_path.read_text(errors="replace")[-chars:]

    def _get(self, url: str) -> httpx.Response | None:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            return None

    def wait_ready(self) -> float:
        """Seconds until ingest consumes and the API answers; raises if the process dies first."""
        deadline = self.started + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive("while starting")
            api = self._get(f"http://127.0.0.1:{self.api_port}/healthz")
            if self.status().get("state") == "running" and api is not None and api.status_code == 200:
                return time.monotonic() - self.started
            time.sleep(0.5)
        raise click.ClickException(
            f"warroom up was not ready within {READY_TIMEOUT_S:.0f} s:\n{self.stderr_tail()}"
        )

    def status(self) -> dict[str, Any]:
        """Ingest's snapshot, ``$WARROOM_HOME/ingest-status.json`` (rewritten every 2 s); {} before it."""
        return _status(self.home)

    def sample(self, t: float, produced: int) -> Sample:
        rss = self.ps.memory_info().rss / 2**20
        status = self.status()
        items = status.get("items")
        stored = sum(items.values()) if isinstance(items, dict) else None
        split = self.rss_split()
        return Sample(
            round(t, 1),
            round(rss, 1),
            status.get("consumer_lag_total"),
            stored,
            None if stored is None else max(0, produced - stored),
            split.get("RssAnon"),
            split.get("RssFile"),
        )

    def rss_split(self) -> dict[str, float]:
        """``RssAnon`` and ``RssFile`` of ``/proc/PID/status`` in MB; {} where there is no such file."""
        try:
            lines = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        except OSError:
            return {}
        fields = (line.split() for line in lines if line.startswith(("RssAnon:", "RssFile:")))
        return {f[0].rstrip(":"): round(int(f[1]) / 1024, 1) for f in fields}

    def stop(self) -> float:
        """SIGTERM; the seconds it took to exit 0. Anything else is the failure the soak looks for."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise click.ClickException(
                f"warroom up did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM"
            ) from None
        self._stderr.close()
        if code != 0:
            raise click.ClickException(f"warroom up exited with {code} on SIGTERM:\n{self.stderr_tail()}")
        return time.monotonic() - sent

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


def read_logs(path: Path, phase: Phase) -> None:
    """Sort the process's stderr: error-level JSON logs, warnings, and lines that are not JSON logs.

    ``warroom up``'s one plain line (which services run, where the API is) is expected; any other
    non-JSON line — a traceback, a library printing — is kept for the reader.
    """
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            if not line.startswith("warroom up: "):
                phase.other_stderr.append(line)
            continue
        level = entry.get("level") if isinstance(entry, dict) else None
        if level in ("ERROR", "CRITICAL"):
            phase.errors.append(line)
        elif level == "WARNING":
            phase.warnings[f"{entry.get('logger')}: {entry.get('message')}"] += 1


# -- the run ----------------------------------------------------------------------------------------


def _phase(
    name: str,
    root: Path,
    broker: LocalBroker,
    seconds: float,
    sample_every: float,
    traffic: Callable[[float], Traffic] | None,
) -> Phase:
    """Start ``warroom up``, sample it for ``seconds`` (sending the traffic, if any), drain, stop it,
    then read what it stored and logged."""
    from kafka import KafkaProducer

    phase = Phase(name, seconds)
    up = Up(root, broker)
    producer = None
    failed: list[BaseException] = []
    try:
        phase.ready_s = round(up.wait_ready(), 1)
        click.echo(f"[{name}] warroom up ready in {phase.ready_s:.0f} s (pid {up.process.pid})", err=True)
        start = time.monotonic()
        source = traffic(start) if traffic is not None else None
        if source is not None:
            producer = KafkaProducer(
                bootstrap_servers=broker.bootstrap, max_request_size=16 << 20, linger_ms=5
            )
        topics = {sig: topic for sig, (topic, _encoding) in _settings_topics(root).items()}
        next_sample, end = start, start + seconds
        while True:
            now = time.monotonic()
            if now >= next_sample:
                phase.samples.append(up.sample(now - start, sum(source.produced.values()) if source else 0))
                next_sample += sample_every
                _progress(name, phase.samples[-1], seconds)
            if now >= end:
                break
            up.check_alive(f"{now - start:.0f} s into the {name} run")
            if source is not None and producer is not None:
                for signal_name, payload in source.due(now):
                    producer.send(topics[signal_name], payload).add_errback(failed.append)
                wake = min(next_sample, end, source.next_at())
            else:
                wake = min(next_sample, end)
            time.sleep(max(0.0, min(wake - time.monotonic(), 1.0)))
        if source is not None and producer is not None:
            producer.flush()
            producer.close()
            producer = None
            if failed:
                raise click.ClickException(f"{len(failed)} records could not be produced: {failed[0]}")
            phase.produced = dict(source.produced)
            phase.drain_s = _drain(up, phase, start, sample_every)
        phase.stop_s = round(up.stop(), 1)
    except BaseException:
        up.kill()
        raise
    finally:
        if producer is not None:
            producer.close()
    read_logs(up.stderr_path, phase)
    if traffic is not None:
        phase.stored = {sig: _count_rows(up.home, sig) for sig in ITEMS}
    return phase


def _settings_topics(root: Path) -> dict[str, tuple[str, str]]:
    """The topics (and encodings) ``warroom up`` reads with no ``WARROOM_*`` variables set."""
    return load_settings(env={}, home=str(root / "home")).topics()


def _drain(up: Up, phase: Phase, start: float, sample_every: float) -> float:
    """Wait (sampling on) until ingest has stored every item produced; the seconds it took.

    Stopping earlier would leave records in Kafka and make "stored == produced" fail for a reason
    that is not a loss. A consumer that never catches up ends the wait after as long as the run.
    """
    began, total = time.monotonic(), sum(phase.produced.values())
    deadline = began + max(60.0, phase.seconds)
    while time.monotonic() < deadline:
        time.sleep(min(sample_every, 2.0))
        up.check_alive("while draining")
        sample = up.sample(time.monotonic() - start, total)
        phase.samples.append(sample)
        if sample.items is not None and sample.items >= total:
            break
    return round(time.monotonic() - began, 1)


def _progress(name: str, sample: Sample, seconds: float) -> None:
    click.echo(
        f"[{name}] {sample.t:>6.0f}/{seconds:.0f} s  RSS {sample.rss_mb:>7.1f} MB  "
        f"lag {_cell(sample.lag)}  backlog {_cell(sample.backlog)}",
        err=True,
    )


def _cell(value: float | None) -> str:
    return "?" if value is None else str(value)


def run(
    duration: float,
    rate: float,
    sample_every: float,
    as_json: bool,
    scenario: str = "mixed",
    baseline_s: float | None = None,
) -> dict[str, Any]:
    """The idle baseline, then the soak; prints the curves and figures, raises if the soak failed."""
    if scenario not in SCENARIOS:
        raise click.BadParameter(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    baseline_s = duration * BASELINE_SHARE if baseline_s is None else baseline_s
    steps = math.ceil(duration / STEP.total_seconds()) + 1
    cycle_steps = min(steps, SCENARIOS[scenario].min_steps)
    with (
        tempfile.TemporaryDirectory(prefix="warroom-soak-") as tmp,
        LocalBroker(log_path=Path(tmp) / "tansu.log") as broker,
        ThreadPoolExecutor(1) as pool,
    ):
        root = Path(tmp)
        broker.create_topics([topic for topic, _ in _settings_topics(root / "soak").values()])
        click.echo(
            f"simulating {scenario!r} at {rate:g} req/s ({cycle_steps} steps of {STEP.seconds} s) …", err=True
        )
        # The simulation is CPU work in this process; the idle baseline is not disturbed by it.
        pending = pool.submit(scenario_cycle, scenario, rate, steps)
        baseline = _phase("baseline", root / "baseline", broker, baseline_s, sample_every, None)
        cycle = pending.result()
        click.echo(
            f"cycle: {len(cycle)} records, {sum(r.items for r in cycle):,} items over "
            f"{cycle_steps * STEP.seconds} s, replayed for {duration:.0f} s",
            err=True,
        )
        soak = _phase(
            "soak",
            root / "soak",
            broker,
            duration,
            sample_every,
            lambda start: Traffic(cycle, cycle_steps, start, time.time() - (time.monotonic() - start)),
        )
    summary = _summary(soak, baseline, duration, rate)
    _print(soak, baseline, summary, scenario, as_json)
    problems = _problems(soak, baseline)
    if problems:
        raise click.ClickException("soak failed: " + "; ".join(problems))
    return summary


def _summary(soak: Phase, baseline: Phase, duration: float, rate: float) -> dict[str, Any]:
    figures = soak.figures()
    idle = baseline.figures()
    return {
        "duration_s": duration,
        "rate_per_s": rate,
        **figures,
        "baseline_rss_slope_mb_per_min": idle["rss_slope_mb_per_min"],
        "baseline_rss_anon_slope_mb_per_min": idle["rss_anon_slope_mb_per_min"],
        "baseline_rss_mb_start": idle["rss_mb_start"],
        "baseline_rss_mb_end": idle["rss_mb_end"],
        "baseline_error_logs": idle["error_logs"],
        "produced": sum(soak.produced.values()),
        "stored": sum(soak.stored.values()),
        "produced_by_signal": soak.produced,
        "stored_by_signal": soak.stored,
        "drain_s": soak.drain_s,
        "stop_s": soak.stop_s,
        "curve": [[s.t, s.rss_mb, s.lag] for s in soak.samples],
        "curve_detail": [[s.t, s.rss_mb, s.anon_mb, s.file_mb, s.lag, s.backlog] for s in soak.samples],
    }


def _problems(soak: Phase, baseline: Phase) -> list[str]:
    problems = []
    if soak.stored != soak.produced:
        problems.append(f"stored {soak.stored} of produced {soak.produced}")
    for phase in (baseline, soak):
        if phase.errors:
            problems.append(f"{len(phase.errors)} error log line(s) in the {phase.name} run")
    return problems


def _curve(phase: Phase, rows: int = 25) -> None:
    """The samples as a table, thinned to about ``rows`` lines (the JSON has all of them)."""
    every = max(1, math.ceil(len(phase.samples) / rows))
    shown = phase.samples[::every]
    if phase.samples and shown[-1] is not phase.samples[-1]:
        shown.append(phase.samples[-1])
    click.echo(f"{phase.name}: {'t (s)':>8}{'RSS (MB)':>10}{'anon':>8}{'file':>8}{'lag':>8}{'backlog':>10}")
    for s in shown:
        drain = "  (drain)" if s.t > phase.seconds + 1e-6 else ""
        split = f"{_cell(s.anon_mb):>8}{_cell(s.file_mb):>8}"
        row = f"{s.t:>8.0f}{s.rss_mb:>10.1f}{split}{_cell(s.lag):>8}{_cell(s.backlog):>10}{drain}"
        click.echo(f"{'':<{len(phase.name) + 2}}{row}")


def _print(soak: Phase, baseline: Phase, summary: dict[str, Any], scenario: str, as_json: bool) -> None:
    click.echo(
        f"warroom up, all services: {summary['duration_s']:.0f} s of {scenario!r} traffic at "
        f"{summary['rate_per_s']:g} req/s, beside {baseline.seconds:.0f} s idle"
    )
    _curve(baseline)
    _curve(soak)
    ours, idle = soak.figures(), baseline.figures()

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"

    click.echo(f"{'figure':<36}{'soak':>14}{'idle baseline':>16}")
    for key, label in (
        ("rss_mb_start", "RSS at start (MB)"),
        ("rss_mb_end", "RSS at end (MB)"),
        ("rss_mb_max", "RSS max (MB)"),
        ("rss_slope_mb_per_min", "RSS slope, 2nd half (MB/min)"),
        ("rss_anon_slope_mb_per_min", "  of which anonymous (heap)"),
        ("rss_file_slope_mb_per_min", "  of which file-backed (code)"),
        ("rss_growth_last_fifth_mb_per_min", "RSS median growth, last fifth (MB/min)"),
        ("max_lag", "max consumer lag (records)"),
        ("max_backlog_items", "max backlog (items not yet stored)"),
        ("error_logs", "error log lines"),
    ):
        click.echo(f"{label:<36}{cell(ours[key]):>14}{cell(idle[key]):>16}")
    medians = " / ".join(_cell(m) for m in ours["rss_mb_median_by_fifth"])
    click.echo(f"{'RSS median by fifth (MB)':<36}{medians}")
    click.echo(f"{'warnings logged':<36}{soak.warnings.total():>14,}{baseline.warnings.total():>16,}")
    click.echo(f"{'ready after (s)':<36}{soak.ready_s:>14,.1f}{baseline.ready_s:>16,.1f}")
    click.echo(f"{'stopped after SIGTERM (s)':<36}{soak.stop_s:>14,.1f}{baseline.stop_s:>16,.1f}")
    click.echo(f"items produced / stored: {summary['produced']:,} / {summary['stored']:,} ({soak.stored})")
    click.echo(f"drained in {soak.drain_s:.1f} s after the traffic stopped")
    for phase in (baseline, soak):
        for line in phase.errors[:20]:
            click.echo(f"{phase.name} error: {line}")
        for line in phase.other_stderr[:20]:
            click.echo(f"{phase.name} stderr: {line}")
        for message, times in phase.warnings.most_common(10):
            click.echo(f"{phase.name} warning (x{times}): {message}")
    if as_json:
        click.echo(json.dumps(summary))
