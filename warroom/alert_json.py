"""The alert JSON format: one alert as a JSON object, shared by the JSONL files of ``correlate replay``
and the HTTP intake's generic alert endpoint (``POST /api/v1/alerts``).

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
`minor` → warning; anything else → info). With ``strict=True`` (the HTTP intake) a spelling
`Severity.parse_strict` does not know is rejected instead, so a typo cannot downgrade a page.

A finding has `detector` and `layer` (strings) and `score` (number), optionally `observed` and
`baseline` (number or `null`) and `detail` (string). Evidence has `window_start` and `step_s`
(integers), `values` (numbers or `null`), `trace_ids` and `log_samples` (lists of strings),
`log_template` and `query` (strings); all optional. Labels used by correlation: `service`, `edge`
(`caller->callee`), `signal`, `host.name`, `k8s.node.name`, `k8s.pod.name`, `service.version`,
`template`.

Example::

    {"fingerprint": "a1", "title": "checkout error ratio high", "severity": "critical",
     "starts_at": "2026-11-01T12:00:00Z", "score": 0.9,
     "labels": {"service": "checkout", "signal": "error_ratio", "service.version": "2.4.0"}}

(one line in the file). Records with the same ``fingerprint`` and ``starts_at`` are versions of
one alert: the first is grouped, later ones (a re-send, a resolve with ``ends_at``) update it and
count as duplicates. Every problem raises :class:`~warroom.errors.InputError` naming the line
(or item) and the field.

Ordering: alerts are processed by ``(starts_at, fingerprint)``; later versions of an alert are
processed at their own time (``updated_at``, else ``ends_at``), so a resolve does not close an
incident before the alerts that fired while it was open have been grouped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warroom.errors import InputError
from warroom.model import Alert, Evidence, Finding, Severity

__all__ = ["alert_from_json", "alert_to_json", "read_alerts", "time_from_text", "time_text"]


def _fail(at: str, field: str, problem: str, reason: str = "invalid_field") -> InputError:
    where = at + (f": {field}" if field else "")
    return InputError(f"{where}: {problem}", reason=reason)


def time_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def time_from_text(text: str) -> datetime:
    """The inverse of :func:`time_text` (for warroom's own trusted JSON; input is validated elsewhere)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _parse_time(value: Any, at: str, field: str) -> datetime:
    if not isinstance(value, str):
        raise _fail(at, field, "expected an RFC 3339 time string", "invalid_time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise _fail(at, field, f"{value!r} is not an RFC 3339 time", "invalid_time") from exc
    if parsed.tzinfo is None:
        raise _fail(at, field, f"{value!r} has no UTC offset", "invalid_time")
    return parsed.astimezone(UTC)


def _optional_time(obj: Mapping[str, Any], at: str, field: str) -> datetime | None:
    value = obj.get(field)
    return None if value is None else _parse_time(value, at, field)


def _string(value: Any, at: str, field: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str) or (non_empty and not value):
        raise _fail(at, field, "expected a non-empty string" if non_empty else "expected a string")
    return value


def _number(value: Any, at: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(at, field, f"expected a finite number, got {value!r}")
    return float(value)


def _optional_number(value: Any, at: str, field: str) -> float | None:
    return None if value is None else _number(value, at, field)


def _integer(value: Any, at: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(at, field, f"expected an integer, got {value!r}")
    return value


def _object(value: Any, at: str, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(at, field, "expected an object")
    return value


def _list(value: Any, at: str, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(at, field, "expected a list")
    return value


def _labels(value: Any, at: str) -> dict[str, str]:
    labels = _object(value, at, "labels")
    for key, item in labels.items():
        if not isinstance(item, str):
            raise _fail(at, f"labels.{key}", f"expected a string value, got {item!r}", "invalid_labels")
    return dict(labels)


def _finding(value: Any, at: str, field: str) -> Finding:
    obj = _object(value, at, field)
    for key in ("detector", "layer", "score"):
        if key not in obj:
            raise _fail(at, f"{field}.{key}", "is required", "missing_field")
    return Finding(
        detector=_string(obj["detector"], at, f"{field}.detector"),
        layer=_string(obj["layer"], at, f"{field}.layer"),
        score=_number(obj["score"], at, f"{field}.score"),
        observed=_optional_number(obj.get("observed"), at, f"{field}.observed"),
        baseline=_optional_number(obj.get("baseline"), at, f"{field}.baseline"),
        detail=_string(obj.get("detail", ""), at, f"{field}.detail"),
    )


def _evidence(value: Any, at: str) -> Evidence:
    obj = _object(value, at, "evidence")

    def strings(key: str) -> tuple[str, ...]:
        items = _list(obj.get(key, []), at, f"evidence.{key}")
        return tuple(_string(v, at, f"evidence.{key}[{i}]") for i, v in enumerate(items))

    values = _list(obj.get("values", []), at, "evidence.values")
    return Evidence(
        window_start=_integer(obj.get("window_start", 0), at, "evidence.window_start"),
        step_s=_integer(obj.get("step_s", 60), at, "evidence.step_s"),
        values=tuple(_optional_number(v, at, f"evidence.values[{i}]") for i, v in enumerate(values)),
        trace_ids=strings("trace_ids"),
        log_samples=strings("log_samples"),
        log_template=_string(obj.get("log_template", ""), at, "evidence.log_template"),
        query=_string(obj.get("query", ""), at, "evidence.query"),
    )


def _severity(value: Any, at: str, strict: bool) -> Severity:
    text = _string(value, at, "severity")
    if not strict:
        return Severity.parse(text)
    try:
        return Severity.parse_strict(text)
    except ValueError as exc:
        raise _fail(at, "severity", str(exc), "unknown_severity") from exc


def alert_from_json(obj: Any, line_no: int = 0, *, strict: bool = False, where: str | None = None) -> Alert:
    """One decoded record → :class:`Alert`; every problem is an InputError naming the record and field.

    Errors name the record as ``line {line_no}``, or as ``where`` when given (the HTTP intake passes
    ``item 3``). ``strict`` rejects a severity that :meth:`Severity.parse_strict` does not know
    (reason ``unknown_severity``) instead of mapping it to info.
    """
    at = where if where is not None else f"line {line_no}"
    if not isinstance(obj, dict):
        raise _fail(at, "", "expected a JSON object", "invalid_payload")
    for key in ("fingerprint", "title", "severity", "starts_at"):
        if key not in obj:
            raise _fail(at, key, "is required", "missing_field")
    findings = _list(obj.get("findings", []), at, "findings")
    evidence = obj.get("evidence")
    return Alert(
        fingerprint=_string(obj["fingerprint"], at, "fingerprint", non_empty=True),
        title=_string(obj["title"], at, "title"),
        severity=_severity(obj["severity"], at, strict),
        starts_at=_parse_time(obj["starts_at"], at, "starts_at"),
        ends_at=_optional_time(obj, at, "ends_at"),
        score=_number(obj.get("score", 0.0), at, "score"),
        labels=_labels(obj.get("labels", {}), at),
        findings=tuple(_finding(f, at, f"findings[{i}]") for i, f in enumerate(findings)),
        evidence=Evidence() if evidence is None else _evidence(evidence, at),
        source=_string(obj.get("source", "warroom"), at, "source"),
        updated_at=_optional_time(obj, at, "updated_at"),
    )


def alert_to_json(alert: Alert) -> dict[str, Any]:
    """:class:`Alert` → one JSONL record; ``alert_from_json(alert_to_json(a), n) == a`` for UTC times."""
    return {
        "fingerprint": alert.fingerprint,
        "title": alert.title,
        "severity": alert.severity.value,
        "starts_at": time_text(alert.starts_at),
        "ends_at": time_text(alert.ends_at) if alert.ends_at is not None else None,
        "updated_at": time_text(alert.updated_at) if alert.updated_at is not None else None,
        "score": alert.score,
        "labels": dict(sorted(alert.labels.items())),
        "source": alert.source,
        "findings": [f.to_json() for f in alert.findings],
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
            raise _fail(f"line {line_no}", "", "not valid UTF-8", "invalid_json") from exc
        except json.JSONDecodeError as exc:
            raise _fail(
                f"line {line_no}", "", f"malformed JSON ({exc.msg} at column {exc.colno})", "invalid_json"
            ) from exc
        out.append(alert_from_json(obj, line_no))
    return out
