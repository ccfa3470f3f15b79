"""The summary's models: numbered evidence, the claims that cite it, hypotheses and remediations.

Every sentence a summary shows is a :class:`Claim` (or a :class:`Hypothesis` /
:class:`Remediation`, which are claims too) carrying the ids of the :class:`EvidenceItem` s behind
it; an item carries the exact ClickHouse query (with its bound parameters) that produced it, so a
reader can re-run it. Whoever wrote the sentence — the deterministic digest or an LLM — the same
checks apply to it (:mod:`summarize.grounding`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from warroom.alert_json import time_from_text, time_text
from warroom.incident import Incident

__all__ = [
    "FORMAT",
    "ActionCheck",
    "Claim",
    "EvidenceItem",
    "EvidenceKind",
    "EvidencePack",
    "FaultKind",
    "Hypothesis",
    "Narrative",
    "Remediation",
    "Summary",
    "numbers_in",
]

FORMAT = 1
"""Version of the evidence pack's and summary's JSON."""

Scalar = float | int | str


class EvidenceKind(StrEnum):
    IMPACT = "impact"  # error/latency figures of an affected service or endpoint
    ANOMALY = "anomaly"  # one alert: detector, observed against baseline
    LOG_TEMPLATE = "log_template"  # a new or spiking error log pattern, counts and samples
    TRACE_EXEMPLAR = "trace_exemplar"  # slow or failing traces
    TOPOLOGY = "topology"  # a call path from the symptom to the candidate cause
    CHANGE = "change"  # a deploy: service.version changed
    SATURATION = "saturation"  # CPU, memory, restarts of a workload or node


class FaultKind(StrEnum):
    """What kind of fault a hypothesis names (the fixture scenarios' kinds plus ``unknown``)."""

    BAD_DEPLOY = "bad_deploy"
    DEPENDENCY_LATENCY = "dependency_latency"
    CPU_SATURATION = "cpu_saturation"
    MEMORY_LEAK = "memory_leak"
    ERROR_SPIKE = "error_spike"
    LATENCY_REGRESSION = "latency_regression"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        return _FAULT_LABELS[self]


_FAULT_LABELS = {
    FaultKind.BAD_DEPLOY: "bad deploy",
    FaultKind.DEPENDENCY_LATENCY: "slow dependency",
    FaultKind.CPU_SATURATION: "CPU saturation",
    FaultKind.MEMORY_LEAK: "memory leak",
    FaultKind.ERROR_SPIKE: "error spike",
    FaultKind.LATENCY_REGRESSION: "latency regression",
    FaultKind.UNKNOWN: "unknown fault",
}

# Spans written with digits that are not quantities, blanked before numbers are read: ISO dates and
# timestamps, clock times (12:03, 12:03:07Z), dotted versions and addresses (2.4.0, 10.0.0.1) and
# v-prefixed versions (v2.4). Grounding checks versions separately, as strings.
_NOT_A_NUMBER = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|(?<![\w.:])\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?(?![\w:])"
    r"|(?<![\w.])v?\d+(?:\.\d+){2,}(?:[-+][0-9A-Za-z.-]*[0-9A-Za-z])?"
    r"|(?<![\w.])v\d+(?:\.\d+)+"
)

# Units a quoted figure may carry, attached ("35%", "1.2s") or after one space ("420 ms").
_UNITS = (
    r"%|percent|ms|µs|us|ns|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|k|x"
    r"|[KMGT]iB|[kKMGT]B|bytes"
)

# A number stands alone: not glued to a word (E3, p95, a1b2, 5xx), not the tail of a hyphenated
# name (db-1, INC-42, a uuid's groups), except for a unit right after it.
_NUMBER = re.compile(
    r"(?<![\w.])(?<!\w-)(?P<number>[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    rf"(?=(?:{_UNITS})?(?!\w))"
    rf"(?:\s?(?P<unit>{_UNITS})(?!\w))?"
)


def numbers_in(text: str) -> list[float]:
    """The quantities written in ``text`` ("1,200", "0.35", "35%", "420 ms"), thousands separators
    removed.

    Digits inside identifiers (``E3``, ``p95``, ``v2``, ``a1b2``, ``db-1``, trace ids) and in
    dates, clock times, versions and IP addresses are not quantities: a claim may mention them
    without them counting as figures, and an evidence item's timestamps do not become figures a
    claim could appear to quote.
    """
    out = []
    for match in _NUMBER.finditer(_NOT_A_NUMBER.sub(lambda m: " " * len(m.group(0)), text)):
        try:
            value = float(match.group("number").replace(",", ""))
        except ValueError:
            continue
        if math.isfinite(value):
            out.append(value)
    return out


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One numbered fact (``E1`` …) with the query that produced it.

    ``values`` are the named figures a claim may quote (``observed``, ``baseline``, ``count``,
    ``p95_ms`` …); ``points`` the key series as (unix seconds, value) for charts; ``samples`` raw
    examples (log lines, trace ids). ``query`` is ClickHouse SQL with ``{name:Type}`` placeholders
    and ``params`` their values: ``clickhouse-client --param_name=value`` re-runs it as is.
    """

    id: str
    kind: EvidenceKind
    service: str
    title: str
    start: datetime
    end: datetime
    values: Mapping[str, Scalar] = field(default_factory=dict)
    samples: tuple[str, ...] = ()
    points: tuple[tuple[int, float | None], ...] = ()
    query: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    def figures(self) -> set[float]:
        """Every number this item states: its values and the numbers in its title and samples."""
        out: set[float] = set()
        for value in self.values.values():
            if isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                if math.isfinite(value):
                    out.add(float(value))
            else:
                out.update(numbers_in(value))
        for text in (self.title, *self.samples):
            out.update(numbers_in(text))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "service": self.service,
            "title": self.title,
            "start": time_text(self.start),
            "end": time_text(self.end),
            "values": dict(self.values),
            "samples": list(self.samples),
            "points": [list(p) for p in self.points],
            "query": self.query,
            "params": dict(self.params),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvidenceItem:
        return cls(
            id=str(data["id"]),
            kind=EvidenceKind(data["kind"]),
            service=str(data.get("service", "")),
            title=str(data["title"]),
            start=time_from_text(str(data["start"])),
            end=time_from_text(str(data["end"])),
            values=dict(data.get("values", {})),
            samples=tuple(str(s) for s in data.get("samples", ())),
            points=tuple((int(t), None if v is None else float(v)) for t, v in data.get("points", ())),
            query=str(data.get("query", "")),
            params=dict(data.get("params", {})),
        )


@dataclass(frozen=True, slots=True)
class EvidencePack:
    """Everything known about one incident, numbered: the only input a summary may draw on."""

    incident: Incident
    start: datetime
    end: datetime
    items: tuple[EvidenceItem, ...]
    timeline: tuple[Mapping[str, Any], ...] = ()  # the incident's lifecycle events (store.events)

    def get(self, evidence_id: str) -> EvidenceItem | None:
        for item in self.items:
            if item.id == evidence_id:
                return item
        return None

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(item.id for item in self.items)

    def of_kind(self, kind: EvidenceKind, service: str | None = None) -> list[EvidenceItem]:
        return [i for i in self.items if i.kind is kind and (service is None or i.service == service)]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "incident": self.incident.to_json(),
            "start": time_text(self.start),
            "end": time_text(self.end),
            "items": [item.to_json() for item in self.items],
            "timeline": [dict(e) for e in self.timeline],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvidencePack:
        return cls(
            incident=Incident.from_json(data["incident"]),
            start=time_from_text(str(data["start"])),
            end=time_from_text(str(data["end"])),
            items=tuple(EvidenceItem.from_json(i) for i in data.get("items", ())),
            timeline=tuple(dict(e) for e in data.get("timeline", ())),
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """One sentence of a summary and the evidence ids behind it."""

    text: str
    evidence: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "evidence": list(self.evidence)}


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """A probable cause: which service, what kind of fault, how sure, and why (evidence ids)."""

    service: str
    fault_kind: FaultKind
    confidence: float  # [0, 1]
    text: str
    evidence: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "fault_kind": self.fault_kind.value,
            "confidence": self.confidence,
            "text": self.text,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class Remediation:
    """A proposed fix: a catalog action with parameters, why, and from whom (``rule`` or ``llm``).

    Only a proposal: nothing runs until the approval workflow (:mod:`summarize.approval`) says so.
    """

    action: str
    params: Mapping[str, Scalar]
    text: str
    evidence: tuple[str, ...]
    source: str = "rule"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "params": dict(self.params),
            "text": self.text,
            "evidence": list(self.evidence),
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Narrative:
    """An LLM's account of the incident, accepted only after :mod:`summarize.grounding` checked it."""

    summary: tuple[Claim, ...]
    impact: tuple[Claim, ...]
    hypotheses: tuple[Hypothesis, ...]
    remediations: tuple[Remediation, ...]
    model: str

    def claims(self) -> Iterator[Claim | Hypothesis | Remediation]:
        yield from self.summary
        yield from self.impact
        yield from self.hypotheses
        yield from self.remediations

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": [c.to_json() for c in self.summary],
            "impact": [c.to_json() for c in self.impact],
            "hypotheses": [h.to_json() for h in self.hypotheses],
            "remediations": [r.to_json() for r in self.remediations],
            "model": self.model,
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """The digest of one incident: always built deterministically; ``narrative`` when an LLM's
    answer passed the checks, else ``llm_status`` says why not ("off", "rejected: …")."""

    pack: EvidencePack
    title: str
    impact: tuple[Claim, ...]
    hypotheses: tuple[Hypothesis, ...]
    timeline: tuple[Claim, ...]
    next_checks: tuple[Claim, ...]
    remediations: tuple[Remediation, ...]
    narrative: Narrative | None = None
    llm_status: str = "off"

    def claims(self) -> Iterator[Claim | Hypothesis | Remediation]:
        """Every statement the summary makes (what ``cited_claims_share`` counts)."""
        yield from self.impact
        yield from self.hypotheses
        yield from self.timeline
        yield from self.next_checks
        yield from self.remediations
        if self.narrative is not None:
            yield from self.narrative.claims()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "incident": self.pack.incident.id,
            "title": self.title,
            "impact": [c.to_json() for c in self.impact],
            "hypotheses": [h.to_json() for h in self.hypotheses],
            "timeline": [c.to_json() for c in self.timeline],
            "next_checks": [c.to_json() for c in self.next_checks],
            "remediations": [r.to_json() for r in self.remediations],
            "narrative": self.narrative.to_json() if self.narrative else None,
            "llm_status": self.llm_status,
            "evidence": [item.to_json() for item in self.pack.items],
        }


class ActionCheck(Protocol):
    """What grounding needs of the remediation catalog (:class:`summarize.catalog.Catalog`)."""

    def check(self, action: str, params: Mapping[str, Any]) -> list[str]:
        """Violations of ``action`` with ``params`` (unknown action, missing/invalid/extra
        parameters); empty when the action may be proposed."""
        ...
