"""Offline, deterministic correlation of a recorded alert stream: alerts JSONL in, incidents JSONL out.

:func:`replay` reads every alert of a JSONL file, orders them canonically (so the result does not
depend on the order of the input lines), groups them with :class:`~correlate.grouping.Grouper`,
ranks each incident's root causes with :func:`~correlate.rootcause.rank` and writes one incident
per line. The same input (in any line order), topology and config give byte-identical output.

Alert JSONL format
------------------

One JSON object per line; blank lines are skipped; unknown keys are ignored. Times are RFC 3339
strings with an offset (``2026-11-01T12:00:00Z``, ``2026-11-01T13:00:00+01:00``).

| key | required | value |
|---|---|---|
| `fingerprint` | yes | non-empty string, stable per entity and signal |
| `title` | yes | string |
| `severity` | yes | `critical`, `warning` or `info`; other spellings mapped (see below) |
| `starts_at` | yes | RFC 3339 time |
| `ends_at` | no | RFC 3339 time or `null`; set on a resolved alert |
| `updated_at` | no | RFC 3339 time or `null`; when this version was produced |
| `score` | no | number, default `0` |
| `labels` | no | object of string values: `service`, `edge`, `signal`, `host.name` … |
| `source` | no | string, default `"warroom"` |
| `findings` | no | list of finding objects (see below) |
| `evidence` | no | object as `Evidence.to_json()` (see below) |

Severity spellings map as in `Severity.parse` (`page`, `p1`, `high` → critical; `warn`, `p2`,
`minor` → warning; anything else → info). A finding has `detector` and `layer` (strings) and
`score` (number), optionally `observed` and `baseline` (number or `null`) and `detail` (string).
Evidence has `window_start` and `step_s` (integers), `values` (numbers or `null`), `trace_ids`
and `log_samples` (lists of strings), `log_template` and `query` (strings); all optional.
Labels used by correlation: `service`, `edge` (`caller->callee`), `signal`, `host.name`,
`k8s.node.name`, `k8s.pod.name`, `service.version`, `template`.

Example::

    {"fingerprint": "a1", "title": "checkout error ratio high", "severity": "critical",
     "starts_at": "2026-11-01T12:00:00Z", "score": 0.9,
     "labels": {"service": "checkout", "signal": "error_ratio", "service.version": "2.4.0"}}

(one line in the file). Records with the same ``fingerprint`` and ``starts_at`` are versions of
one alert: the first is grouped, later ones (a re-send, a resolve with ``ends_at``) update it and
count as duplicates. Every problem raises :class:`~warroom.errors.InputError` naming the line and
the field.

Ordering: alerts are processed by ``(starts_at, fingerprint)``; later versions of an alert are
processed at their own time (``updated_at``, else ``ends_at``), so a resolve does not close an
incident before the alerts that fired while it was open have been grouped.

Incident JSONL format
---------------------

One object per incident, sorted by ``(started_at, id)``, keys sorted:

* ``id``, ``title``, ``severity``, ``status`` (``open`` | ``resolved``), ``started_at``;
* ``alert_count`` — alert occurrences grouped into the incident (duplicates not counted);
* ``fingerprints`` (arrival order), ``services`` (sorted);
* ``root_causes`` — the top 3 of :func:`~correlate.rootcause.rank`: ``service``, ``score``,
  ``confidence``, ``reasons``;
* ``decisions`` — "why grouped here", one per record that touched the incident: ``fingerprint``,
  ``starts_at``, ``joined``, ``duplicate``, ``reason`` and ``candidates`` (``incident_id``,
  ``score`` and the ``factors`` ``topology``, ``resources``, ``text``, ``time``, ``change``).

Floats in the output are rounded to 6 decimals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from correlate.grouping import GroupDecision, Grouper, GroupingConfig, Incident
from correlate.rootcause import rank
from correlate.topology import Topology
from warroom.errors import InputError
from warroom.model import Alert, Evidence, Finding, Severity

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


# --- alerts: JSON <-> model ---------------------------------------------------------------------


def _fail(line_no: int, field: str, problem: str, reason: str = "invalid_field") -> InputError:
    where = f"line {line_no}" + (f": {field}" if field else "")
    return InputError(f"{where}: {problem}", reason=reason)


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any, line_no: int, field: str) -> datetime:
    if not isinstance(value, str):
        raise _fail(line_no, field, "expected an RFC 3339 time string", "invalid_time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise _fail(line_no, field, f"{value!r} is not an RFC 3339 time", "invalid_time") from exc
    if parsed.tzinfo is None:
        raise _fail(line_no, field, f"{value!r} has no UTC offset", "invalid_time")
    return parsed.astimezone(UTC)


def _optional_time(obj: Mapping[str, Any], line_no: int, field: str) -> datetime | None:
    value = obj.get(field)
    return None if value is None else _parse_time(value, line_no, field)


def _string(value: Any, line_no: int, field: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str) or (non_empty and not value):
        raise _fail(line_no, field, "expected a non-empty string" if non_empty else "expected a string")
    return value


def _number(value: Any, line_no: int, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(line_no, field, f"expected a finite number, got {value!r}")
    return float(value)


def _optional_number(value: Any, line_no: int, field: str) -> float | None:
    return None if value is None else _number(value, line_no, field)


def _integer(value: Any, line_no: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(line_no, field, f"expected an integer, got {value!r}")
    return value


def _object(value: Any, line_no: int, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(line_no, field, "expected an object")
    return value


def _list(value: Any, line_no: int, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(line_no, field, "expected a list")
    return value


def _labels(value: Any, line_no: int) -> dict[str, str]:
    labels = _object(value, line_no, "labels")
    for key, item in labels.items():
        if not isinstance(item, str):
            raise _fail(line_no, f"labels.{key}", f"expected a string value, got {item!r}", "invalid_labels")
    return dict(labels)


def _finding(value: Any, line_no: int, field: str) -> Finding:
    obj = _object(value, line_no, field)
    for key in ("detector", "layer", "score"):
        if key not in obj:
            raise _fail(line_no, f"{field}.{key}", "is required", "missing_field")
    return Finding(
        detector=_string(obj["detector"], line_no, f"{field}.detector"),
        layer=_string(obj["layer"], line_no, f"{field}.layer"),
        score=_number(obj["score"], line_no, f"{field}.score"),
        observed=_optional_number(obj.get("observed"), line_no, f"{field}.observed"),
        baseline=_optional_number(obj.get("baseline"), line_no, f"{field}.baseline"),
        detail=_string(obj.get("detail", ""), line_no, f"{field}.detail"),
    )


def _evidence(value: Any, line_no: int) -> Evidence:
    obj = _object(value, line_no, "evidence")

    def strings(key: str) -> tuple[str, ...]:
        items = _list(obj.get(key, []), line_no, f"evidence.{key}")
        return tuple(_string(v, line_no, f"evidence.{key}[{i}]") for i, v in enumerate(items))

    values = _list(obj.get("values", []), line_no, "evidence.values")
    return Evidence(
        window_start=_integer(obj.get("window_start", 0), line_no, "evidence.window_start"),
        step_s=_integer(obj.get("step_s", 60), line_no, "evidence.step_s"),
        values=tuple(_optional_number(v, line_no, f"evidence.values[{i}]") for i, v in enumerate(values)),
        trace_ids=strings("trace_ids"),
        log_samples=strings("log_samples"),
        log_template=_string(obj.get("log_template", ""), line_no, "evidence.log_template"),
        query=_string(obj.get("query", ""), line_no, "evidence.query"),
    )


def alert_from_json(obj: Any, line_no: int) -> Alert:
    """One decoded JSONL record → :class:`Alert`; every problem is an InputError naming line and field."""
    if not isinstance(obj, dict):
        raise _fail(line_no, "", "expected a JSON object", "invalid_payload")
    for key in ("fingerprint", "title", "severity", "starts_at"):
        if key not in obj:
            raise _fail(line_no, key, "is required", "missing_field")
    findings = _list(obj.get("findings", []), line_no, "findings")
    evidence = obj.get("evidence")
    return Alert(
        fingerprint=_string(obj["fingerprint"], line_no, "fingerprint", non_empty=True),
        title=_string(obj["title"], line_no, "title"),
        severity=Severity.parse(_string(obj["severity"], line_no, "severity")),
        starts_at=_parse_time(obj["starts_at"], line_no, "starts_at"),
        ends_at=_optional_time(obj, line_no, "ends_at"),
        score=_number(obj.get("score", 0.0), line_no, "score"),
        labels=_labels(obj.get("labels", {}), line_no),
        findings=tuple(_finding(f, line_no, f"findings[{i}]") for i, f in enumerate(findings)),
        evidence=Evidence() if evidence is None else _evidence(evidence, line_no),
        source=_string(obj.get("source", "warroom"), line_no, "source"),
        updated_at=_optional_time(obj, line_no, "updated_at"),
    )


def _finding_to_json(f: Finding) -> dict[str, Any]:
    return {
        "detector": f.detector,
        "layer": f.layer,
        "score": f.score,
        "observed": f.observed,
        "baseline": f.baseline,
        "detail": f.detail,
    }


def alert_to_json(alert: Alert) -> dict[str, Any]:
    """:class:`Alert` → one JSONL record; ``alert_from_json(alert_to_json(a), n) == a`` for UTC times."""
    return {
        "fingerprint": alert.fingerprint,
        "title": alert.title,
        "severity": alert.severity.value,
        "starts_at": _time_text(alert.starts_at),
        "ends_at": _time_text(alert.ends_at) if alert.ends_at is not None else None,
        "updated_at": _time_text(alert.updated_at) if alert.updated_at is not None else None,
        "score": alert.score,
        "labels": dict(sorted(alert.labels.items())),
        "source": alert.source,
        "findings": [_finding_to_json(f) for f in alert.findings],
        "evidence": alert.evidence.to_json(),
    }


def read_alerts(path: Path) -> list[Alert]:
    """Every alert of a JSONL file, in file order (blank lines skipped)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read alerts: {exc.strerror or exc}", reason="unreadable") from exc
    out = []
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _fail(line_no, "", "not valid UTF-8", "invalid_json") from exc
        except json.JSONDecodeError as exc:
            raise _fail(
                line_no, "", f"malformed JSON ({exc.msg} at column {exc.colno})", "invalid_json"
            ) from exc
        out.append(alert_from_json(obj, line_no))
    return out


# --- ordering -----------------------------------------------------------------------------------


def _canonical(alert: Alert) -> str:
    return json.dumps(alert_to_json(alert), sort_keys=True)


def _ordered(alerts: list[Alert]) -> list[Alert]:
    """Canonical processing order, independent of input order.

    Records sharing ``(fingerprint, starts_at)`` are versions of one alert: firing before resolved,
    then by ``ends_at``, ``updated_at`` and content. The first version is processed at
    ``starts_at``; later ones at their own time (``updated_at``, else ``ends_at``), never earlier.
    """
    versions: dict[tuple[str, datetime], list[Alert]] = {}
    for a in alerts:
        versions.setdefault((a.fingerprint, a.starts_at), []).append(a)
    floor = datetime.min.replace(tzinfo=UTC)
    keyed: list[tuple[datetime, int, datetime, str, int, Alert]] = []
    for (fingerprint, starts_at), group in versions.items():
        group.sort(
            key=lambda a: (a.ends_at is not None, a.ends_at or floor, a.updated_at or floor, _canonical(a))
        )
        for i, a in enumerate(group):
            at = starts_at if i == 0 else max(starts_at, a.updated_at or a.ends_at or starts_at)
            keyed.append((at, 0 if i == 0 else 1, starts_at, fingerprint, i, a))
    keyed.sort(key=lambda t: t[:5])
    return [t[5] for t in keyed]


# --- incidents → JSON ---------------------------------------------------------------------------


def _round(value: float) -> float:
    return round(float(value), _DIGITS)


def _decision_json(d: GroupDecision) -> dict[str, Any]:
    return {
        "fingerprint": d.fingerprint,
        "starts_at": _time_text(d.starts_at),
        "joined": d.joined,
        "duplicate": d.duplicate,
        "reason": d.reason,
        "candidates": [
            {
                "incident_id": c.incident_id,
                "score": _round(c.score),
                "factors": {
                    "topology": _round(c.factors.topology),
                    "resources": _round(c.factors.resources),
                    "text": _round(c.factors.text),
                    "time": _round(c.factors.time),
                    "change": _round(c.factors.change),
                },
            }
            for c in d.candidates
        ],
    }


def incident_to_json(incident: Incident, members: list[Alert], topology: Topology | None) -> dict[str, Any]:
    """One incident line: summary, top-3 root causes of ``members`` and every grouping decision."""
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity.value,
        "status": incident.status,
        "started_at": _time_text(incident.started_at),
        "alert_count": sum(1 for d in incident.decisions if not d.duplicate),
        "fingerprints": list(incident.fingerprints),
        "services": list(incident.services),
        "root_causes": [
            {
                "service": c.service,
                "score": _round(c.score),
                "confidence": _round(c.confidence),
                "reasons": list(c.reasons),
            }
            for c in rank(members, topology, ROOT_CAUSES)
        ],
        "decisions": [_decision_json(d) for d in incident.decisions],
    }


def replay(
    alerts_path: Path,
    out_path: Path,
    topology: Topology | None = None,
    config: GroupingConfig | None = None,
) -> ReplaySummary:
    """Group the alerts of ``alerts_path`` into incidents and write them to ``out_path`` (JSONL).

    Deterministic: the same alerts in any line order give byte-identical output.
    """
    alerts = read_alerts(alerts_path)
    grouper = Grouper(topology, config)
    decisions = [grouper.add(a) for a in _ordered(alerts)]
    incidents = sorted(grouper.incidents(), key=lambda i: (i.started_at, i.id))
    lines = [
        json.dumps(incident_to_json(i, grouper.alerts(i.id), topology), sort_keys=True) + "\n"
        for i in incidents
    ]
    try:
        out_path.write_bytes("".join(lines).encode("utf-8"))
    except OSError as exc:
        raise InputError(
            f"{out_path}: cannot write incidents: {exc.strerror or exc}", reason="unwritable"
        ) from exc
    count = len(alerts)
    return ReplaySummary(
        alerts=count,
        incidents=len(incidents),
        duplicates=sum(1 for d in decisions if d.duplicate),
        compression=round(1.0 - len(incidents) / count, _DIGITS) if count else 0.0,
    )
