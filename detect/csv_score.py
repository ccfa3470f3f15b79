"""``warroom detect score-csv``: score a CSV time series row by row, in streaming order.

Input: a header row, one timestamp column and one or more numeric value columns. Timestamps may be
epoch seconds or ISO 8601 (naive stamps are read as UTC); they must not go backwards, equal stamps are
allowed. Every row goes through one detector in file order (several value columns form one vector, the
worst dimension wins), so each score only depends on the rows above it.

Output: ``timestamp,score,is_anomaly`` with the input's timestamp text, the score in ``[0, 1]`` and
``1`` where a :class:`~detect.base.Decision` (threshold, no hysteresis) says the point is anomalous.

Bad input stops with :class:`~warroom.errors.InputError` naming the line: a missing column, an empty
or non-numeric cell (there is no silent imputation: a gap in the data is for the caller to decide
about), a timestamp that does not parse or goes backwards, or a file with no data rows.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from detect.base import Decision
from detect.registry import create
from warroom.errors import InputError

__all__ = ["CsvScoreResult", "score_csv"]

_TIME_NAMES = ("timestamp", "time", "ts", "datetime", "date")


@dataclass(frozen=True, slots=True)
class CsvScoreResult:
    """What :func:`score_csv` did: rows scored, rows flagged, where the output went."""

    rows: int
    anomalies: int
    out: str
    value_cols: tuple[str, ...]


def _parse_time(text: str, line: int) -> float:
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(
            f"line {line}: timestamp {text!r} is neither epoch seconds nor ISO 8601", reason="bad_timestamp"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _resolve_columns(
    header: list[str], timestamp_col: str | None, value_cols: Sequence[str] | None
) -> tuple[int, list[int]]:
    names = [h.strip() for h in header]
    if timestamp_col is None:
        lowered = [n.lower() for n in names]
        ts_idx = next((lowered.index(c) for c in _TIME_NAMES if c in lowered), 0)
    elif timestamp_col in names:
        ts_idx = names.index(timestamp_col)
    else:
        raise InputError(
            f"line 1: no timestamp column {timestamp_col!r} (columns: {', '.join(names)})",
            reason="missing_column",
        )
    if value_cols is None:
        v_idx = [i for i in range(len(names)) if i != ts_idx]
    else:
        missing = [c for c in value_cols if c not in names]
        if missing:
            raise InputError(
                f"line 1: no column {missing[0]!r} (columns: {', '.join(names)})", reason="missing_column"
            )
        v_idx = [names.index(c) for c in value_cols]
    if not v_idx:
        raise InputError("line 1: no value column to score", reason="missing_column")
    return ts_idx, v_idx


def score_csv(
    path: str | Path,
    timestamp_col: str | None = None,
    value_cols: Sequence[str] | None = None,
    out: str | Path | TextIO | None = None,
    *,
    detector: str = "default",
    params: dict[str, Any] | None = None,
    threshold: float = 0.6,
) -> CsvScoreResult:
    """Score ``path`` and write ``timestamp,score,is_anomaly`` to ``out`` (a path, a stream, or stdout).

    ``timestamp_col`` defaults to a column named timestamp/time/ts/datetime/date, else the first one;
    ``value_cols`` defaults to every other column. ``threshold`` feeds the decision that sets
    ``is_anomaly``; the ensemble's scores pass 0.5 when a point is more surprising than anything in its
    recent history, and the NAB-optimised thresholds sit around 0.5-0.6.
    """
    src = Path(path)
    if not src.is_file():
        raise InputError(f"{src}: no such file", reason="missing_file")
    det = create(detector, **(params or {}))
    decision = Decision(threshold=threshold)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["timestamp", "score", "is_anomaly"])
    rows = anomalies = 0
    with src.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise InputError(f"{src}: empty file (a header row is required)", reason="empty")
        ts_idx, v_idx = _resolve_columns(header, timestamp_col, value_cols)
        width = max([ts_idx, *v_idx]) + 1
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < width:
                raise InputError(
                    f"line {line}: expected at least {width} cells, got {len(row)}", reason="short_row"
                )
            t = _parse_time(row[ts_idx], line)
            values: list[float] = []
            for i in v_idx:
                cell = row[i].strip()
                try:
                    v = float(cell)
                except ValueError:
                    raise InputError(
                        f"line {line}: column {header[i].strip()!r} has non-numeric value {cell!r}",
                        reason="non_numeric",
                    ) from None
                if not math.isfinite(v):
                    raise InputError(
                        f"line {line}: column {header[i].strip()!r} is {cell!r}; values must be finite",
                        reason="non_finite",
                    )
                values.append(v)
            try:
                score = det.update(t, values[0] if len(values) == 1 else values)
            except InputError as exc:
                raise InputError(f"line {line}: {exc}", reason=exc.reason) from exc
            decision.step(t, score)
            flag = int(decision.is_open)
            anomalies += flag
            rows += 1
            writer.writerow([row[ts_idx].strip(), f"{score:.6f}", flag])
    if rows == 0:
        raise InputError(f"{src}: no data rows", reason="empty")
    text = buffer.getvalue()
    if out is None:
        sys.stdout.write(text)
        target = "<stdout>"
    elif isinstance(out, str | Path):
        Path(out).write_text(text)
        target = str(out)
    else:
        out.write(text)
        target = getattr(out, "name", "<stream>")
    names = tuple(header[i].strip() for i in v_idx)
    return CsvScoreResult(rows=rows, anomalies=anomalies, out=target, value_cols=names)
