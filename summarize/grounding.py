"""Code, not the prompt, decides whether an LLM's answer may be shown: every statement must stand
on evidence the pack actually holds.

:func:`check` takes the model's answer (JSON text or the parsed object) and returns a
:class:`~summarize.model.Narrative` only when there are no violations. The rules:

* Structure: the four lists of :data:`ANSWER_SCHEMA`, each statement with non-empty text, a
  confidence in [0, 1], a ``fault_kind`` among :class:`~summarize.model.FaultKind`.
* Citations: every statement cites at least one evidence id, and every cited id exists.
* Figures: every number a statement's text quotes is among the figures of the evidence it cites,
  allowing rounding to the precision written (35 for 34.97, 1,200 for 1203) and the usual unit
  changes (35% for 0.3497, 1.2 s for 1203 ms). Numbers inside ids, dates and clock times are not
  figures; a version or address (2.4.1, 10.0.0.7) must appear verbatim in the cited evidence.
* Subjects: a hypothesis names a service of this incident; a remediation is a catalog action whose
  parameters the catalog accepts, and whose target (``service``, ``deployment``, ``database``,
  ``target``) is a service of this incident — so a log line cannot talk the model into acting on
  something the evidence never mentioned.

Violations are short sentences naming the statement (``hypotheses[0]: cites E9, which does not
exist``): they are recorded, and sent back to the model once so it can correct itself.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from summarize.model import (
    _NOT_A_NUMBER,
    _NUMBER,
    ActionCheck,
    Claim,
    EvidenceItem,
    EvidencePack,
    FaultKind,
    Hypothesis,
    Narrative,
    Remediation,
)

__all__ = ["ANSWER_SCHEMA", "TARGET_PARAMS", "check", "cited_claims_share", "count_cited", "services_of"]

MAX_STATEMENTS = 12  # per list: a narrative is a page, not a report
MAX_TEXT = 1000  # characters per statement

TARGET_PARAMS = frozenset({"service", "deployment", "database", "target"})
"""Remediation parameters that name what to act on: their value must be a service of the pack."""

_EVIDENCE = {"type": "array", "items": {"type": "string"}, "description": "Evidence ids, e.g. E1."}
_CLAIM = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "evidence": _EVIDENCE},
    "required": ["text", "evidence"],
    "additionalProperties": False,
}

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "array", "items": _CLAIM},
        "impact": {"type": "array", "items": _CLAIM},
        "hypotheses": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "service": {"type": "string"},
                    "fault_kind": {"type": "string", "enum": [k.value for k in FaultKind]},
                    "confidence": {"type": "number", "description": "0 to 1"},
                    "text": {"type": "string"},
                    "evidence": _EVIDENCE,
                },
                "required": ["service", "fault_kind", "confidence", "text", "evidence"],
                "additionalProperties": False,
            },
        },
        "remediations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "action": {"type": "string"},
                    "params": {
                        "type": "array",
                        "description": "The action's parameters as name/value pairs.",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "value": {
                                    "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
                                },
                            },
                            "required": ["name", "value"],
                            "additionalProperties": False,
                        },
                    },
                    "text": {"type": "string"},
                    "evidence": _EVIDENCE,
                },
                "required": ["action", "params", "text", "evidence"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["summary", "impact", "hypotheses", "remediations"],
    "additionalProperties": False,
}
"""The JSON the model must answer in. It is valid for OpenAI's strict structured outputs, which is
why ``params`` is a list of name/value pairs (strict mode allows no open-ended objects) and
ranges are checked here rather than with ``minimum``/``maximum``. :func:`check` also accepts
``params`` as a plain object, for servers that ignore the schema."""

_SECTIONS = ("summary", "impact", "hypotheses", "remediations")

# Versions and addresses (2.4.1, v2.4, 10.0.0.7): not quantities, but still facts that must be in
# the cited evidence, compared as strings.
_VERSION = re.compile(
    r"(?<![\w.])v?(\d+(?:\.\d+){2,}(?:[-+][0-9A-Za-z.-]*[0-9A-Za-z])?)|(?<![\w.])v(\d+(?:\.\d+)+)"
)

# unit → factors that turn an evidence figure into the quoted unit (1: same unit). Figures carry no
# unit of their own, so each unit lists the sources it is commonly derived from.
_SCALES: dict[str, tuple[float, ...]] = {
    "%": (1, 100),  # a ratio 0.3497 is quoted as 35%
    "ms": (1, 1e3),  # from seconds
    "µs": (1, 1e6, 1e3),
    "us": (1, 1e6, 1e3),
    "ns": (1, 1e9, 1e6),
    "s": (1, 1e-3),  # from milliseconds
    "m": (1, 1 / 60, 1 / 60e3),  # minutes, from seconds or milliseconds
    "h": (1, 1 / 3600, 1 / 60),
    "KB": (1, 1e-3, 1 / 1024),
    "MB": (1, 1e-6, 2.0**-20, 1e-3, 1 / 1024),
    "GB": (1, 1e-9, 2.0**-30, 1e-3, 1 / 1024),
    "TB": (1, 1e-12, 2.0**-40, 1e-3, 1 / 1024),
}
_UNIT_ALIASES = {
    "percent": "%",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "kB": "KB",
    "KiB": "KB",
    "MiB": "MB",
    "GiB": "GB",
    "TiB": "TB",
}
_RELATIVE = 0.005  # "about 1,200" for 1203: a quote may be off by half a percent


def check(
    answer: Any, pack: EvidencePack, catalog: ActionCheck, model: str = ""
) -> tuple[Narrative | None, list[str]]:
    """(the narrative, []) when ``answer`` passes every rule; (None, violations) otherwise.

    ``answer`` is the model's text (JSON, optionally in a Markdown code fence) or the parsed JSON.
    """
    if isinstance(answer, str | bytes):
        try:
            answer = json.loads(_unfence(answer if isinstance(answer, str) else answer.decode()))
        except (ValueError, UnicodeDecodeError) as exc:
            return None, [f"the answer is not valid JSON ({_short(str(exc))})"]
    if not isinstance(answer, Mapping):
        return None, [f"the answer must be a JSON object, not {_json_type(answer)}"]
    violations: list[str] = []
    sections: dict[str, list[Any]] = {}
    for name in _SECTIONS:
        value = answer.get(name)
        if not isinstance(value, list):
            violations.append(f"{name}: missing or not a list")
            value = []
        elif len(value) > MAX_STATEMENTS:
            violations.append(f"{name}: {len(value)} statements, at most {MAX_STATEMENTS} allowed")
            value = value[:MAX_STATEMENTS]
        sections[name] = value
    if isinstance(answer.get("summary"), list) and not answer["summary"]:
        violations.append("summary: empty; state at least one cited sentence")

    services = services_of(pack)
    summary = [_claim(f"summary[{i}]", s, pack, violations) for i, s in enumerate(sections["summary"])]
    impact = [_claim(f"impact[{i}]", s, pack, violations) for i, s in enumerate(sections["impact"])]
    hypotheses = [
        _hypothesis(f"hypotheses[{i}]", s, pack, services, violations)
        for i, s in enumerate(sections["hypotheses"])
    ]
    remediations = [
        _remediation(f"remediations[{i}]", s, pack, services, catalog, violations)
        for i, s in enumerate(sections["remediations"])
    ]
    if violations:
        return None, violations
    return (
        Narrative(
            summary=tuple(c for c in summary if c is not None),
            impact=tuple(c for c in impact if c is not None),
            hypotheses=tuple(h for h in hypotheses if h is not None),
            remediations=tuple(r for r in remediations if r is not None),
            model=model,
        ),
        [],
    )


def services_of(pack: EvidencePack) -> frozenset[str]:
    """The services an answer may name: the incident's, its root-cause candidates', the evidence's."""
    names = set(pack.incident.services)
    names.update(str(c.get("service", "")) for c in pack.incident.root_causes)
    names.update(item.service for item in pack.items)
    names.discard("")
    return frozenset(names)


def count_cited(claims: Iterable[Claim | Hypothesis | Remediation], ids: Collection[str]) -> tuple[int, int]:
    """(statements citing at least one id and only ids in ``ids``, all statements)."""
    cited = total = 0
    for claim in claims:
        total += 1
        if claim.evidence and all(e in ids for e in claim.evidence):
            cited += 1
    return cited, total


def cited_claims_share(claims: Iterable[Claim | Hypothesis | Remediation], ids: Collection[str]) -> float:
    """Share of statements that are properly cited; 0.0 without statements (nothing is grounded)."""
    cited, total = count_cited(claims, ids)
    return cited / total if total else 0.0


# --------------------------------------------------------------------------- statements


def _claim(where: str, raw: Any, pack: EvidencePack, out: list[str]) -> Claim | None:
    if not isinstance(raw, Mapping):
        out.append(f"{where}: must be an object, not {_json_type(raw)}")
        return None
    text = _text(where, raw, out)
    evidence = _evidence(where, raw, pack, out)
    if text is None or evidence is None:
        return None
    _figures(where, text, evidence, pack, out)
    return Claim(text, evidence)


def _hypothesis(
    where: str, raw: Any, pack: EvidencePack, services: frozenset[str], out: list[str]
) -> Hypothesis | None:
    claim = _claim(where, raw, pack, out)
    if not isinstance(raw, Mapping):
        return None
    service = raw.get("service")
    if not isinstance(service, str) or not service:
        out.append(f"{where}: service must be a non-empty string")
    elif service not in services:
        out.append(f"{where}: service {service!r} is not in this incident (known: {_names(services)})")
    fault = raw.get("fault_kind")
    kinds = [k.value for k in FaultKind]
    if fault not in kinds:
        out.append(f"{where}: fault_kind {_short(repr(fault))} is not one of {', '.join(kinds)}")
    confidence = raw.get("confidence")
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not math.isfinite(confidence)
        or not 0 <= confidence <= 1
    ):
        out.append(f"{where}: confidence must be a number from 0 to 1, not {_short(repr(confidence))}")
        return None
    if claim is None or not isinstance(service, str) or service not in services or fault not in kinds:
        return None
    return Hypothesis(service, FaultKind(fault), float(confidence), claim.text, claim.evidence)


def _remediation(
    where: str,
    raw: Any,
    pack: EvidencePack,
    services: frozenset[str],
    catalog: ActionCheck,
    out: list[str],
) -> Remediation | None:
    claim = _claim(where, raw, pack, out)
    if not isinstance(raw, Mapping):
        return None
    action = raw.get("action")
    if not isinstance(action, str) or not action:
        out.append(f"{where}: action must be a non-empty string")
        return None
    params = _params(where, raw.get("params"), out)
    if params is None:
        return None
    before = len(out)
    out.extend(f"{where}: {problem}" for problem in catalog.check(action, params))
    for name, value in params.items():
        if name in TARGET_PARAMS and value not in services:
            out.append(
                f"{where}: {name} {_short(repr(value))} is not a service of this incident "
                f"(known: {_names(services)})"
            )
    if claim is None or len(out) > before:
        return None
    return Remediation(action, params, claim.text, claim.evidence, source="llm")


def _params(where: str, raw: Any, out: list[str]) -> dict[str, Any] | None:
    """Name → scalar value, from name/value pairs (the schema's form) or a plain object."""
    if raw is None:
        return {}
    pairs: list[tuple[Any, Any]]
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, list) and all(isinstance(p, Mapping) and set(p) == {"name", "value"} for p in raw):
        pairs = [(p["name"], p["value"]) for p in raw]
    else:
        out.append(f"{where}: params must be a list of {{name, value}} pairs")
        return None
    params: dict[str, Any] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not name:
            out.append(f"{where}: a parameter name must be a non-empty string")
            return None
        if name in params:
            out.append(f"{where}: parameter {name!r} given twice")
            return None
        if not isinstance(value, str | int | float) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            out.append(f"{where}: parameter {name!r} must be a string or a number")
            return None
        params[name] = value
    return params


def _text(where: str, raw: Mapping[str, Any], out: list[str]) -> str | None:
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        out.append(f"{where}: text must be a non-empty string")
        return None
    if len(text) > MAX_TEXT:
        out.append(f"{where}: text is {len(text)} characters, at most {MAX_TEXT} allowed")
        return None
    return text.strip()


def _evidence(
    where: str, raw: Mapping[str, Any], pack: EvidencePack, out: list[str]
) -> tuple[str, ...] | None:
    cited = raw.get("evidence")
    if not isinstance(cited, list) or not all(isinstance(e, str) for e in cited):
        out.append(f"{where}: evidence must be a list of evidence ids")
        return None
    ids = tuple(dict.fromkeys(e.strip() for e in cited))
    if not ids:
        out.append(f"{where}: cites no evidence; every statement must cite at least one evidence id")
        return None
    missing = [e for e in ids if pack.get(e) is None]
    if missing:
        which = ", ".join(_short(e, 20) for e in missing)
        verb = "which does not exist" if len(missing) == 1 else "which do not exist"
        out.append(f"{where}: cites {which}, {verb}")
        return None
    return ids


def _figures(where: str, text: str, ids: tuple[str, ...], pack: EvidencePack, out: list[str]) -> None:
    """Every quantity and version quoted in ``text`` must come from the cited evidence."""
    items = [item for e in ids if (item := pack.get(e)) is not None]
    figures = set().union(*(item.figures() for item in items))
    source = " ".join(_strings(item) for item in items)
    cited = ", ".join(ids)
    for match in _VERSION.finditer(text):
        version = match.group(1) or match.group(2)
        if not re.search(rf"(?<![\d.]){re.escape(version)}(?!\w|\.\d)", source):
            out.append(f"{where}: quotes {match.group(0)}, which is not in the cited evidence ({cited})")
    for match in _NUMBER.finditer(_NOT_A_NUMBER.sub(lambda m: " " * len(m.group(0)), text)):
        token, unit = match.group("number"), match.group("unit")
        if not _grounded(token, unit, figures):
            quoted = match.group(0).strip()
            out.append(f"{where}: quotes {quoted}, which is not in the cited evidence ({cited})")


def _grounded(token: str, unit: str | None, figures: set[float]) -> bool:
    """Whether the quoted ``token`` (in ``unit``) is one of ``figures``, rounded as written."""
    try:
        quoted = abs(float(token.replace(",", "")))
    except ValueError:
        return True  # not a quantity after all
    decimals = len(token.split(".", 1)[1]) if "." in token and "e" not in token.lower() else 0
    tolerance = 0.5 * 10.0**-decimals
    if unit == "k":  # 1.2k requests: thousands, rounded at the written precision
        quoted, tolerance, unit = quoted * 1e3, tolerance * 1e3, None
    unit = _UNIT_ALIASES.get(unit or "", unit)
    scales = _SCALES.get(unit or "", (1,))
    for figure in figures:
        for scale in scales:
            candidate = abs(figure * scale)
            if abs(candidate - quoted) <= max(tolerance, _RELATIVE * candidate) + 1e-9 * max(1.0, candidate):
                return True
    return False


def _strings(item: EvidenceItem) -> str:
    """The item's text where a version or address may be written."""
    parts = [item.title, *item.samples]
    parts.extend(str(v) for v in item.values.values() if isinstance(v, str))
    parts.extend(str(v) for v in item.params.values() if isinstance(v, str))
    return "\n".join(parts)


def _unfence(text: str) -> str:
    """The JSON inside a lone Markdown code fence (some models add one despite the schema)."""
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*\n(.*)\n\s*```", stripped, flags=re.S)
    return fenced.group(1) if fenced else stripped


def _names(services: Iterable[str]) -> str:
    return ", ".join(sorted(services)) or "none"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
