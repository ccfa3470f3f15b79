"""Small inline SVG line charts of an evidence item's key series, for the HTML digest.

Pure Python on purpose: the HTML digest must render anywhere the deterministic digest does (no
plotting library, no fonts, no network), and the same points must give the same bytes so digests
can be diffed and cached. Conventions:

* ``points`` are ``(unix seconds, value)``; ``None`` (or a NaN/infinite value) is a gap in the
  line, never a zero, because a missing scrape is not a healthy reading.
* The y axis spans the series' own min and max, labelled at the top and bottom left; a constant
  series is drawn as a flat line through the middle instead of dividing by a zero range.
* The incident window (``start``/``end`` unix seconds, ``end=None`` while ongoing) is a shaded
  band with a dashed line at the start, so a reader sees whether the series moved before or after.
* Every coordinate is written with one decimal and every label through :func:`html.escape`, so
  the SVG is deterministic and telemetry text cannot inject markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

__all__ = ["HEIGHT", "WIDTH", "line_chart", "value_label"]

WIDTH = 320
HEIGHT = 80

# Plot-area margins: room for the y labels on the left and the time labels below.
_LEFT = 46
_RIGHT = 6
_TOP = 6
_BOTTOM = 16

_LINE = "#1f6feb"
_BAND = "#d1242f"
_INK = "#57606a"


def value_label(value: float) -> str:
    """A short, exact-enough label for an axis: ``0.052``, ``412``, ``12.3k``, ``4.1M``."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size >= 1e9:
        return f"{value / 1e9:.3g}G"
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    if value == int(value):
        return str(int(value))
    return f"{value:.3g}"


def _time_label(seconds: int, with_date: bool) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%m-%d %H:%M" if with_date else "%H:%M")


def _coord(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _segments(points: Sequence[tuple[int, float | None]]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive finite points; a gap (None, NaN, ±inf) ends a run."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for at, value in sorted(points, key=lambda p: p[0]):
        if value is None or not math.isfinite(value):
            if current:
                runs.append(current)
                current = []
            continue
        current.append((int(at), float(value)))
    if current:
        runs.append(current)
    return runs


def line_chart(
    points: Sequence[tuple[int, float | None]],
    *,
    title: str = "",
    start: int | None = None,
    end: int | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """An ``<svg>`` element drawing ``points`` as a line, with the incident window from ``start``.

    ``title`` becomes the accessible name (``<title>`` and ``aria-label``). A series without any
    finite value renders as a labelled empty frame ("no data"), so the layout does not jump.
    """
    name = escape(title, quote=True)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{name}" class="chart">'
        f"<title>{name}</title>"
    )
    x0, x1 = float(_LEFT), float(width - _RIGHT)
    y0, y1 = float(_TOP), float(height - _BOTTOM)
    frame = (
        f'<rect x="{_coord(x0)}" y="{_coord(y0)}" width="{_coord(x1 - x0)}" height="{_coord(y1 - y0)}" '
        f'fill="none" stroke="#d0d7de" stroke-width="1"/>'
    )
    runs = _segments(points)
    if not runs:
        middle = _coord((x0 + x1) / 2)
        text = (
            f'<text x="{middle}" y="{_coord((y0 + y1) / 2 + 3)}" font-size="10" fill="{_INK}" '
            f'text-anchor="middle">no data</text>'
        )
        return head + frame + text + "</svg>"

    times = [at for at, _ in points]
    t_lo, t_hi = min(times), max(times)
    values = [v for run in runs for _, v in run]
    lo, hi = min(values), max(values)
    span = hi - lo
    flat = span == 0 or not math.isfinite(span)

    def x_of(at: float) -> float:
        if t_hi == t_lo:
            return (x0 + x1) / 2
        return x0 + (at - t_lo) / (t_hi - t_lo) * (x1 - x0)

    def y_of(value: float) -> float:
        if flat:
            return (y0 + y1) / 2
        return y1 - (value - lo) / span * (y1 - y0)

    parts = [head, frame]
    if start is not None and start <= t_hi and (end is None or end >= t_lo):
        left = x_of(max(start, t_lo))
        right = x_of(t_hi if end is None else min(end, t_hi))
        parts.append(
            f'<rect x="{_coord(left)}" y="{_coord(y0)}" width="{_coord(max(right - left, 1.0))}" '
            f'height="{_coord(y1 - y0)}" fill="{_BAND}" fill-opacity="0.08"/>'
        )
        if start >= t_lo:
            parts.append(
                f'<line x1="{_coord(left)}" y1="{_coord(y0)}" x2="{_coord(left)}" y2="{_coord(y1)}" '
                f'stroke="{_BAND}" stroke-width="1" stroke-dasharray="3,2"/>'
            )
    for run in runs:
        if len(run) == 1:
            at, value = run[0]
            parts.append(
                f'<circle cx="{_coord(x_of(at))}" cy="{_coord(y_of(value))}" r="1.5" fill="{_LINE}"/>'
            )
            continue
        coords = " ".join(f"{_coord(x_of(at))},{_coord(y_of(value))}" for at, value in run)
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{_LINE}" stroke-width="1.5" '
            f'stroke-linejoin="round"/>'
        )
    label = f'font-size="9" fill="{_INK}"'
    top = y_of(hi) + 3 if flat else y0 + 7  # a flat series has one label, beside its line
    parts.append(
        f'<text x="{_coord(x0 - 3)}" y="{_coord(top)}" {label} text-anchor="end">'
        f"{escape(value_label(hi))}</text>"
    )
    if not flat:
        parts.append(
            f'<text x="{_coord(x0 - 3)}" y="{_coord(y1)}" {label} text-anchor="end">'
            f"{escape(value_label(lo))}</text>"
        )
    with_date = t_hi - t_lo >= 86_400
    parts.append(
        f'<text x="{_coord(x0)}" y="{_coord(height - 4.0)}" {label}>{_time_label(t_lo, with_date)}</text>'
    )
    if t_hi != t_lo:
        parts.append(
            f'<text x="{_coord(x1)}" y="{_coord(height - 4.0)}" {label} text-anchor="end">'
            f"{_time_label(t_hi, with_date)} UTC</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
