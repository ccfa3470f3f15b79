"""``warroom bench correlate``: alert → incident grouping and root-cause ranking against ground truth.

Nobody publishes grouping precision and recall; "noise reduction" is always compression, which
rewards over-merging. So this bench scores both, beside an Alertmanager-style baseline run in the
same invocation:

* **quality** — the recorded streams of :mod:`fixtures.alert_stream` (every named fixture scenario
  plus random overlapping mixes, flapping and one-off noise) are replayed through
  :class:`~correlate.grouping.Grouper` in the canonical order of :mod:`correlate.replay`, and each
  incident is ranked with :func:`~correlate.rootcause.rank`. Figures, over alert *occurrences*
  (``(fingerprint, starts_at)``; re-sends and resolves are versions of one):

  - compression = occurrences / incidents (``truth_compression``: the same for a perfect grouping);
  - pairwise precision / recall / F1: a pair of occurrences is predicted together when they share an
    incident and truly together when they share a fault (each noise alert is its own group; all
    occurrences of one flapping series are one group);
  - AC@1 / AC@3 per true fault: the incident holding most of the fault's occurrences is ranked; hit
    when the fault's root-cause service is in the top 1 / top 3;

* **baseline** — Alertmanager with ``group_by: [service]``: an occurrence joins the open group of its
  ``service`` label when that group's last alert is at most 5 minutes old; its root cause is the
  group's service;
* **throughput** — a synthetic load on a 150-service graph at ``--rate`` alerts per simulated
  minute (1,000 by default) for 15 minutes, with many concurrent incidents and distinct
  fingerprints. A decision is ``Grouper.add`` plus re-ranking the touched incident; the bench
  reports decisions/s on this core, p50/p99/max decision latency, and whether the slowest
  simulated minute took less than a minute to process.

``--json`` prints one JSON object as the last line.
"""

from __future__ import annotations

import json
import math
import random
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from correlate.lifecycle import IncidentBook, LifecycleConfig
from correlate.ordering import events
from correlate.topology import Edge, Topology, make_topology
from fixtures.alert_stream import DEFAULT_ROUNDS, AlertStream, generate_stream, load_stream
from warroom.model import Alert, Severity, SignalKind

K = TypeVar("K", bound=Hashable)
Key = tuple[str, datetime]

BASELINE_WINDOW = timedelta(minutes=5)
TARGETS = {"f1": 0.9, "compression": 10.0, "ac1": 0.8, "ac3": 0.95, "p99_decision_ms": 100.0}


# --- metrics --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairScores:
    precision: float
    recall: float
    f1: float


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def pairwise(predicted: Mapping[K, str], truth: Mapping[K, str]) -> PairScores:
    """Pairwise precision/recall/F1 of a clustering of the keys of ``truth``.

    Counted from the contingency table, so it is linear in the number of items. With no predicted
    (true) pairs precision (recall) is 1: nothing was claimed (nothing was there to find).
    """
    cells = Counter((predicted[k], truth[k]) for k in truth)
    together = sum(_pairs(n) for n in cells.values())
    claimed = sum(_pairs(n) for n in Counter(predicted[k] for k in truth).values())
    real = sum(_pairs(n) for n in Counter(truth.values()).values())
    precision = together / claimed if claimed else 1.0
    recall = together / real if real else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairScores(precision, recall, f1)


def compression(occurrences: int, incidents: int) -> float:
    """Alert occurrences per incident (0 without incidents)."""
    return occurrences / incidents if incidents else 0.0


def main_incident(predicted: Mapping[K, str], members: Sequence[K]) -> str | None:
    """The incident holding most of ``members`` (ties: the one that got its first member first)."""
    counts = Counter(predicted[k] for k in members)
    if not counts:
        return None
    return max(counts, key=lambda inc: counts[inc])  # Counter keeps first-seen order for ties


def accuracy_at(k: int, ranked: Mapping[str, Sequence[str]], roots: Mapping[str, str]) -> float:
    """Share of faults whose root cause is in the top ``k`` of their ranking (``ranked[fault]``)."""
    if not roots:
        return 0.0
    hits = sum(1 for fault, root in roots.items() if root in ranked.get(fault, ())[:k])
    return hits / len(roots)


# --- runs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One method's verdict: each occurrence's incident, and each incident's ranked services."""

    name: str
    predicted: dict[Key, str]
    ranked: dict[str, list[str]]
    seconds: float


def topology_of(edges: Sequence[tuple[str, str, str]], at: datetime) -> Topology:
    """A :class:`Topology` from plain ``(caller, callee, kind)`` edges (call statistics unknown: 0)."""
    kinds = {"rpc": "rpc", "db": "db", "messaging": "messaging"}
    built = [Edge(a, b, kinds.get(k, "rpc"), 0, 0.0, 0.0, 0.0) for a, b, k in edges]  # type: ignore[arg-type]
    return make_topology(at - timedelta(hours=1), at, built)


def _occurrences(alerts: Sequence[Alert]) -> list[Alert]:
    """The first version of each occurrence, in canonical order."""
    seen: set[Key] = set()
    out = []
    for _, a in events(alerts):
        if (a.fingerprint, a.starts_at) not in seen:
            seen.add((a.fingerprint, a.starts_at))
            out.append(a)
    return out


def run_warroom(stream: AlertStream, topology: Topology | None) -> Run:
    """The real correlator: :class:`~correlate.lifecycle.IncidentBook` (grouping, flapping,
    quiet-period resolve, reopen), its clock moved to each record's time as a live run would."""
    began = time.perf_counter()
    book = IncidentBook(topology, config=LifecycleConfig(keep=timedelta(days=365)))
    occurrences: set[Key] = set()
    for at, alert in events(stream.alerts):
        book.tick(at)
        book.ingest(alert)
        occurrences.add((alert.fingerprint, alert.starts_at))
    # Membership at the end, after every merge and split.
    predicted = {k: owner for k in occurrences if (owner := book.grouper.owner(*k)) is not None}
    ranked = {i.id: [c.service for c in book.root_causes(i.id)] for i in book.incidents()}
    return Run("warroom", predicted, ranked, time.perf_counter() - began)


def run_baseline(stream: AlertStream, window: timedelta = BASELINE_WINDOW) -> Run:
    """Alertmanager ``group_by: [service]``: join the service's group while its last alert is recent."""
    began = time.perf_counter()
    open_groups: dict[str, tuple[str, datetime]] = {}
    predicted: dict[Key, str] = {}
    ranked: dict[str, list[str]] = {}
    for alert in _occurrences(stream.alerts):
        service = alert.service
        current = open_groups.get(service)
        if current is None or alert.starts_at - current[1] > window:
            current = (f"am-{len(ranked)}", alert.starts_at)
            ranked[current[0]] = [service] if service else []
        open_groups[service] = (current[0], alert.starts_at)
        predicted[(alert.fingerprint, alert.starts_at)] = current[0]
    return Run("baseline", predicted, ranked, time.perf_counter() - began)


def score(run: Run, stream: AlertStream) -> dict[str, Any]:
    """The quality figures of ``run`` against the stream's truth, with a per-fault breakdown."""
    truth = {k: g for k, g in stream.truth.items() if k in run.predicted}
    pairs = pairwise(run.predicted, truth)
    members: dict[str, list[Key]] = defaultdict(list)
    for key, group in truth.items():
        members[group].append(key)
    roots: dict[str, str] = {}
    per_fault_rank: dict[str, list[str]] = {}
    breakdown = []
    for fault in stream.faults:
        keys = sorted(members.get(fault.id, ()), key=lambda k: (k[1], k[0]))
        if not keys or fault.root_cause_service is None:
            continue
        incident = main_incident(run.predicted, keys)
        top = run.ranked.get(incident or "", [])
        roots[fault.id] = fault.root_cause_service
        per_fault_rank[fault.id] = top
        held = sum(1 for k in keys if run.predicted[k] == incident)
        breakdown.append(
            {
                "fault": fault.id,
                "root": fault.root_cause_service,
                "alerts": len(keys),
                "in_main_incident": held,
                "top3": top[:3],
            }
        )
    incidents = len(set(run.predicted.values()))
    return {
        "precision": pairs.precision,
        "recall": pairs.recall,
        "f1": pairs.f1,
        "compression": compression(len(truth), incidents),
        "incidents": incidents,
        "ac1": accuracy_at(1, per_fault_rank, roots),
        "ac3": accuracy_at(3, per_fault_rank, roots),
        "seconds": run.seconds,
        "per_fault": breakdown,
    }


# --- throughput -----------------------------------------------------------------------------------

_LOAD_SIGNALS = (
    (SignalKind.ERROR_RATIO, "error ratio high"),
    (SignalKind.LATENCY_P95, "p95 latency high"),
    (SignalKind.LATENCY_P99, "p99 latency high"),
    (SignalKind.SLO_BURN, "availability SLO burn rate high"),
    (SignalKind.LOG_RATE, "ERROR log rate high"),
    (SignalKind.NEW_LOG_TEMPLATE, "new log template"),
)


def _load_graph(rng: random.Random, layers: int = 5, width: int = 30) -> list[tuple[str, str, str]]:
    names = [[f"svc-{layer}-{i}" for i in range(width)] for layer in range(layers)]
    edges = []
    for layer in range(layers - 1):
        for caller in names[layer]:
            for callee in rng.sample(names[layer + 1], 3):
                edges.append((caller, callee, "rpc"))
    for callee in names[-1]:
        edges.append((callee, f"db-{rng.randrange(10)}", "db"))
    return edges


def synthetic_load(
    seed: int, per_minute: int, minutes: int, start: datetime
) -> tuple[list[Alert], list[tuple[str, str, str]]]:
    """``per_minute`` alerts a minute: faults on random services spreading to their callers, plus noise."""
    rng = random.Random(f"correlate-load/{seed}")
    edges = _load_graph(rng)
    callers: dict[str, list[str]] = defaultdict(list)
    for a, b, _ in edges:
        callers[b].append(a)
    services = sorted({a for a, _, _ in edges})
    alerts: list[Alert] = []
    total = per_minute * minutes
    fault = 0
    while len(alerts) < total:
        fault += 1
        at = start + timedelta(seconds=rng.uniform(0, minutes * 60 - 300))
        affected = [rng.choice(services)]
        for s in affected:
            if len(affected) >= 12:
                break
            affected += [c for c in rng.sample(callers[s], min(2, len(callers[s]))) if c not in affected]
        for depth, service in enumerate(affected):
            for kind, words in rng.sample(_LOAD_SIGNALS, rng.randint(3, len(_LOAD_SIGNALS))):
                onset = at + timedelta(seconds=30 * depth + rng.uniform(0, 120))
                labels = {
                    "service": service,
                    "signal": kind.value,
                    "host.name": f"node-{zlib.crc32(service.encode()) % 40}",
                }
                if kind is SignalKind.NEW_LOG_TEMPLATE:
                    labels["template"] = f"Exception in handler {fault % 17} for order <*>"
                alerts.append(
                    Alert(
                        f"{service}/{kind.value}/{fault}",
                        f"{service} {words}",
                        Severity.WARNING,
                        onset,
                        ends_at=onset + timedelta(minutes=rng.uniform(3, 12)),
                        score=round(rng.uniform(0.5, 1.0), 3),
                        labels=labels,
                    )
                )
        if rng.random() < 0.3:  # a one-off on an unrelated service
            service = rng.choice(services)
            kind, words = rng.choice(_LOAD_SIGNALS)
            alerts.append(
                Alert(
                    f"{service}/{kind.value}/noise-{fault}",
                    f"{service} {words}",
                    Severity.WARNING,
                    noise_at := at + timedelta(seconds=rng.uniform(0, 300)),
                    ends_at=noise_at + timedelta(minutes=rng.uniform(1, 5)),
                    score=0.5,
                    labels={"service": service, "signal": kind.value},
                )
            )
    alerts = sorted(alerts[:total], key=lambda a: (a.starts_at, a.fingerprint))
    return alerts, edges


def throughput(seed: int, per_minute: int = 1000, minutes: int = 15) -> dict[str, Any]:
    """Time each decision (the book's ``ingest``: group, lifecycle, re-rank the touched incident)
    on a synthetic load; fires and resolves are both decisions."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    alerts, edges = synthetic_load(seed, per_minute, minutes, start)
    topology = topology_of(edges, start)
    book = IncidentBook(topology)
    latencies: list[float] = []
    per_minute_s: dict[int, float] = defaultdict(float)
    for at, alert in events(alerts):  # each alert fires, and resolves minutes later
        began = time.perf_counter()
        book.tick(at)
        book.ingest(alert)  # groups, applies the lifecycle and re-ranks the touched incident
        spent = time.perf_counter() - began
        latencies.append(spent)
        per_minute_s[int((at - start).total_seconds() // 60)] += spent
    ordered = sorted(latencies)
    total = sum(latencies)
    open_in_window = len(book.incidents())
    return {
        "load_alerts": len(alerts),
        "load_minutes": minutes,
        "load_rate_per_min": per_minute,
        "load_incidents": open_in_window,
        "load_decisions": len(latencies),
        "decisions_per_s": len(latencies) / total if total else 0.0,
        "p50_decision_ms": 1000 * ordered[len(ordered) // 2],
        "p99_decision_ms": 1000 * ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)],
        "max_decision_ms": 1000 * ordered[-1],
        "slowest_minute_s": max(per_minute_s.values()),
        "keeps_up": max(per_minute_s.values()) < 60.0,
    }


# --- the command ----------------------------------------------------------------------------------


def run(
    seed: int = 0,
    rounds: int = DEFAULT_ROUNDS,
    alerts_path: Path | None = None,
    truth_path: Path | None = None,
    write_stream: Path | None = None,
    as_json: bool = False,
    verbose: bool = False,
    load_rate: int = 1000,
    load_minutes: int = 15,
) -> dict[str, Any]:
    began = time.perf_counter()
    if alerts_path is not None and truth_path is not None:
        stream = load_stream(alerts_path, truth_path)
        source = f"{alerts_path} + {truth_path}"
    else:
        stream = generate_stream(seed, rounds)
        source = f"generated: seed {seed}, {rounds} round(s)"
    if write_stream is not None:
        paths = stream.write(write_stream)
        click.echo(f"wrote {paths[0]} and {paths[1]}")
    first = min((a.starts_at for a in stream.alerts), default=datetime(2026, 1, 1, tzinfo=UTC))
    topology = topology_of(stream.edges, first) if stream.edges else None
    ours = score(run_warroom(stream, topology), stream)
    base = score(run_baseline(stream), stream)
    load = throughput(seed, load_rate, load_minutes) if load_minutes > 0 else {}
    occurrences = len(stream.truth)
    summary: dict[str, Any] = {
        "alerts": occurrences,
        "records": len(stream.alerts),
        "faults": len(stream.faults),
        "true_groups": len(stream.groups),
        "truth_compression": compression(occurrences, len(stream.groups)),
        **{k: v for k, v in ours.items() if k != "per_fault"},
        **{f"baseline_{k}": v for k, v in base.items() if k != "per_fault"},
        **load,
        "seconds": time.perf_counter() - began,
    }
    _print(source, summary, ours, base, verbose, as_json)
    return summary


def _print(
    source: str,
    s: Mapping[str, Any],
    ours: Mapping[str, Any],
    base: Mapping[str, Any],
    verbose: bool,
    as_json: bool,
) -> None:
    click.echo(f"stream: {source}")
    click.echo(
        f"  {s['alerts']} alert occurrences ({s['records']} records), {s['faults']} faults, "
        f"{s['true_groups']} true groups (perfect grouping compresses {s['truth_compression']:.1f}x)"
    )
    click.echo(f"{'':22}{'warroom':>10}{'baseline':>10}{'target':>10}")
    rows = [
        ("pairwise precision", "precision", "{:.3f}", None),
        ("pairwise recall", "recall", "{:.3f}", None),
        ("pairwise F1", "f1", "{:.3f}", "f1"),
        ("compression (x)", "compression", "{:.1f}", "compression"),
        ("incidents", "incidents", "{:d}", None),
        ("root cause AC@1", "ac1", "{:.3f}", "ac1"),
        ("root cause AC@3", "ac3", "{:.3f}", "ac3"),
        ("replay seconds", "seconds", "{:.2f}", None),
    ]
    for label, key, fmt, target in rows:
        goal = f">= {TARGETS[target]:g}" if target else ""
        click.echo(f"{label:22}{fmt.format(ours[key]):>10}{fmt.format(base[key]):>10}{goal:>10}")
    if "decisions_per_s" in s:
        click.echo(
            f"throughput: {s['load_alerts']} alerts at {s['load_rate_per_min']}/min for {s['load_minutes']} "
            f"simulated min, {s['load_incidents']} incidents: "
            f"{s['decisions_per_s']:.0f} decisions/s on one core; "
            f"decision p50 {s['p50_decision_ms']:.2f} ms, p99 {s['p99_decision_ms']:.2f} ms "
            f"(target < 100), max {s['max_decision_ms']:.1f} ms; slowest simulated minute took "
            f"{s['slowest_minute_s']:.1f} s -> {'keeps up' if s['keeps_up'] else 'FALLS BEHIND'}"
        )
    if verbose:
        click.echo("per fault (warroom | baseline): alerts, share in main incident, top-3 vs root")
        for mine, theirs in zip(ours["per_fault"], base["per_fault"], strict=True):
            mark = (
                "ok "
                if mine["top3"][:1] == [mine["root"]]
                else ("top3" if mine["root"] in mine["top3"] else "MISS")
            )
            click.echo(
                f"  {mine['fault']:45} {mine['alerts']:3d} {mine['in_main_incident'] / mine['alerts']:5.0%} "
                f"{mark} {','.join(mine['top3']):40} | {theirs['in_main_incident'] / theirs['alerts']:5.0%} "
                f"{','.join(theirs['top3'])} (root {mine['root']})"
            )
    click.echo(f"total {s['seconds']:.1f} s")
    if as_json:
        click.echo(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in s.items()}))
