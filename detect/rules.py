"""Layer 0: static threshold rules and SLOs, read from a TOML rules file.

A rule is what an SRE already knows ("checkout's error ratio above 5% for two minutes is a page");
it needs no history and fires from the first step. The file format is documented in
``detect/rules.example.toml``::

    [[threshold]]
    name = "checkout-errors"        # optional; defaults to "threshold #N"
    kind = "error_ratio"            # a warroom.model.SignalKind value
    service = "checkout|payment"    # regex, must match the series' whole entity
    labels = { operation = "POST .*" }   # optional: regex per series label (all must match)
    op = ">"                        # one of >, >=, <, <=
    value = 0.05
    for_steps = 2                   # consecutive breaching steps before the rule fires
    severity = "critical"           # critical | warning | info

    [[slo]]                         # parsed by detect.slo (multi-window, multi-burn-rate alerts)
    service = "checkout"
    objective = 0.999

Conventions:

* A bad file never crashes the caller: :func:`load_rules` raises :class:`warroom.errors.InputError`
  (reason ``bad_rules``) naming the file, the entry (``[[threshold]] #2 'checkout-errors'``) and the
  field. Unknown fields are errors too, so a typo (``for_step``) does not silently disable a rule.
* A missing value (``None``, a gap in the series) neither breaks nor extends a run of breaching
  steps; NaN is treated the same way.
* A rule that fires yields a :class:`warroom.model.Finding` of layer ``"L0"`` whose score is
  :data:`SEVERITY_SCORE` of the rule's severity (critical 1.0, warning 0.75, info 0.4: an info rule
  is recorded but never opens an alert on its own).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warroom.errors import InputError
from warroom.model import Finding, SeriesKey, Severity, SignalKind

__all__ = [
    "OPS",
    "SEVERITY_SCORE",
    "RuleSet",
    "ThresholdRule",
    "ThresholdState",
    "entry_error",
    "load_rules",
    "parse_rules",
]

STATE_FORMAT = 1

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda x, v: x > v,
    ">=": lambda x, v: x >= v,
    "<": lambda x, v: x < v,
    "<=": lambda x, v: x <= v,
}

SEVERITY_SCORE: dict[Severity, float] = {Severity.CRITICAL: 1.0, Severity.WARNING: 0.75, Severity.INFO: 0.4}

_SEVERITIES = {s.value: s for s in Severity}


def entry_error(
    source: str, section: str, index: int, name: str | None, field: str, message: str
) -> InputError:
    """The one error shape for a bad rules entry: file, entry, field, then what is wrong."""
    label = f"[[{section}]] #{index + 1}" + (f" {name!r}" if name else "")
    return InputError(f"{source}: {label}: field {field!r}: {message}", reason="bad_rules")


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """A static threshold on every series of ``kind`` whose entity matches ``service``."""

    name: str
    kind: SignalKind
    service: re.Pattern[str]
    op: str
    value: float
    for_steps: int = 1
    severity: Severity = Severity.WARNING
    labels: tuple[tuple[str, re.Pattern[str]], ...] = ()
    description: str = ""

    def matches(self, key: SeriesKey) -> bool:
        if key.kind is not self.kind or self.service.fullmatch(key.entity) is None:
            return False
        have = key.label_dict
        return all(k in have and rx.fullmatch(have[k]) is not None for k, rx in self.labels)

    def breached(self, x: float) -> bool:
        return OPS[self.op](x, self.value)

    @property
    def score(self) -> float:
        return SEVERITY_SCORE[self.severity]

    def finding(self, x: float, run: int) -> Finding:
        return Finding(
            detector=f"threshold:{self.name}",
            layer="L0",
            score=self.score,
            observed=x,
            baseline=self.value,
            detail=f"{self.kind.value} {_fmt(x)} {self.op} {_fmt(self.value)} for {run} step(s)"
            + (f"; {self.description}" if self.description else ""),
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Everything a rules file holds; ``slos`` are :class:`detect.slo.SloSpec` objects."""

    thresholds: tuple[ThresholdRule, ...] = ()
    slos: tuple[Any, ...] = ()
    source: str = "<rules>"

    def thresholds_for(self, key: SeriesKey) -> list[ThresholdRule]:
        return [r for r in self.thresholds if r.matches(key)]


class ThresholdState:
    """Consecutive-breach counters per (rule, series fingerprint); versioned JSON state."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}

    def evaluate(self, rules: RuleSet, key: SeriesKey, x: float | None) -> list[Finding]:
        """Feed one point of ``key``; returns the findings of the rules that fire at this point."""
        fp = key.fingerprint()
        out: list[Finding] = []
        for rule in rules.thresholds_for(key):
            slot = f"{rule.name}|{fp}"
            run = self.runs.get(slot, 0)
            if x is None or not math.isfinite(x):
                pass  # a gap holds the run (documented in the module docstring)
            elif rule.breached(x):
                run += 1
            else:
                run = 0
            if run:
                self.runs[slot] = run
            else:
                self.runs.pop(slot, None)
            if x is not None and math.isfinite(x) and run >= rule.for_steps:
                out.append(rule.finding(x, run))
        return out

    def to_json(self) -> str:
        return json.dumps({"format": STATE_FORMAT, "runs": dict(sorted(self.runs.items()))})

    @classmethod
    def from_json(cls, text: str | bytes) -> ThresholdState:
        payload = json.loads(text)
        if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
            raise InputError("unsupported threshold state format", reason="bad_state_format")
        st = cls()
        st.runs = {str(k): int(v) for k, v in payload["runs"].items()}
        return st


# --- parsing ----------------------------------------------------------------------------------

_THRESHOLD_FIELDS = {
    "name",
    "kind",
    "service",
    "labels",
    "op",
    "value",
    "for_steps",
    "severity",
    "description",
}


def load_rules(path: str | Path) -> RuleSet:
    """Read a rules file; raises :class:`InputError` (reason ``bad_rules``) naming what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{p}: cannot read rules file: {exc.strerror or exc}", reason="bad_rules") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: rules file is not UTF-8: {exc}", reason="bad_rules") from exc
    return parse_rules(text, source=str(p))


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Parse rules TOML text; ``source`` names it in error messages."""
    from detect.slo import SloSpec  # slo imports this module's helpers

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: not valid TOML: {exc}", reason="bad_rules") from exc
    unknown = set(doc) - {"threshold", "slo"}
    if unknown:
        raise InputError(
            f"{source}: unknown section(s) {', '.join(sorted(unknown))}; expected [[threshold]] and [[slo]]",
            reason="bad_rules",
        )
    thresholds = [
        _parse_threshold(entry, i, source) for i, entry in enumerate(_entries(doc, "threshold", source))
    ]
    slos = [SloSpec.from_toml(entry, i, source) for i, entry in enumerate(_entries(doc, "slo", source))]
    for section, names in (("threshold", [r.name for r in thresholds]), ("slo", [s.name for s in slos])):
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                raise entry_error(
                    source, section, i, n, "name", "duplicate name (names identify alert state)"
                )
            seen.add(n)
    return RuleSet(thresholds=tuple(thresholds), slos=tuple(slos), source=source)


def _entries(doc: Mapping[str, Any], section: str, source: str) -> list[Mapping[str, Any]]:
    raw = doc.get(section, [])
    if not isinstance(raw, list):
        raise InputError(
            f"{source}: {section!r} must be an array of tables ([[{section}]])", reason="bad_rules"
        )
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise entry_error(source, section, i, None, section, "must be a table")
    return raw


def get_field(
    entry: Mapping[str, Any],
    field: str,
    kind: type | tuple[type, ...],
    where: tuple[str, str, int, str | None],
    default: Any = ...,
) -> Any:
    """Fetch and type-check one field of a rules entry (``where`` = source, section, index, name)."""
    source, section, index, name = where
    if field not in entry:
        if default is ...:
            raise entry_error(source, section, index, name, field, "is required")
        return default
    value = entry[field]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        want = " or ".join(k.__name__ for k in kinds)
        raise entry_error(source, section, index, name, field, f"must be {want} (got {value!r})")
    return value


def compile_regex(pattern: str, field: str, where: tuple[str, str, int, str | None]) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise entry_error(*where, field, f"invalid regular expression {pattern!r}: {exc}") from exc


def check_unknown(
    entry: Mapping[str, Any], allowed: set[str], where: tuple[str, str, int, str | None]
) -> None:
    extra = sorted(set(entry) - allowed)
    if extra:
        raise entry_error(*where, extra[0], f"unknown field; allowed: {', '.join(sorted(allowed))}")


def _parse_threshold(entry: Mapping[str, Any], index: int, source: str) -> ThresholdRule:
    raw_name = entry.get("name")
    name = raw_name if isinstance(raw_name, str) and raw_name else None
    where = (source, "threshold", index, name)
    get_field(entry, "name", str, where, default="")
    check_unknown(entry, _THRESHOLD_FIELDS, where)
    kind_text = get_field(entry, "kind", str, where)
    try:
        kind = SignalKind(kind_text)
    except ValueError:
        choices = ", ".join(k.value for k in SignalKind)
        raise entry_error(
            *where, "kind", f"unknown signal kind {kind_text!r}; choose from {choices}"
        ) from None
    service = compile_regex(get_field(entry, "service", str, where, default=".*"), "service", where)
    labels_raw = get_field(entry, "labels", dict, where, default={})
    labels: list[tuple[str, re.Pattern[str]]] = []
    for k, v in sorted(labels_raw.items()):
        if not isinstance(v, str):
            raise entry_error(*where, f"labels.{k}", f"must be a string regex (got {v!r})")
        labels.append((k, compile_regex(v, f"labels.{k}", where)))
    op = get_field(entry, "op", str, where)
    if op not in OPS:
        raise entry_error(*where, "op", f"must be one of {', '.join(OPS)} (got {op!r})")
    value = float(get_field(entry, "value", (int, float), where))
    if not math.isfinite(value):
        raise entry_error(*where, "value", f"must be a finite number (got {value!r})")
    for_steps = get_field(entry, "for_steps", int, where, default=1)
    if for_steps < 1:
        raise entry_error(*where, "for_steps", f"must be >= 1 (got {for_steps})")
    sev_text = get_field(entry, "severity", str, where, default="warning")
    if sev_text.lower() not in _SEVERITIES:
        raise entry_error(*where, "severity", f"must be critical, warning or info (got {sev_text!r})")
    return ThresholdRule(
        name=name or f"threshold #{index + 1}",
        kind=kind,
        service=service,
        op=op,
        value=value,
        for_steps=int(for_steps),
        severity=_SEVERITIES[sev_text.lower()],
        labels=tuple(labels),
        description=get_field(entry, "description", str, where, default=""),
    )


def _fmt(x: float) -> str:
    return f"{x:.4g}"
