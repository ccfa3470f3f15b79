"""Inline SVG charts: well-formed, gaps stay gaps, flat and empty series do not divide by zero,
labels are escaped, and the same points give the same bytes."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

from summarize.charts import HEIGHT, WIDTH, line_chart, value_label

SVG = "{http://www.w3.org/2000/svg}"
T = 1_793_534_400  # 2026-11-01 12:00:00Z


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on malformed XML
    assert root.tag == f"{SVG}svg"
    assert root.get("width") == str(WIDTH) and root.get("height") == str(HEIGHT)
    return root


def _coords(element: ET.Element) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in (element.get("points") or "").split())]


def test_a_gap_splits_the_line() -> None:
    points = [(T + 60 * i, v) for i, v in enumerate([1.0, 2.0, None, 4.0, 5.0, None, 7.0])]
    root = _parse(line_chart(points, title="errors"))
    lines = root.findall(f"{SVG}polyline")
    assert [len(_coords(line)) for line in lines] == [2, 2]
    assert len(root.findall(f"{SVG}circle")) == 1  # the lone point after the second gap
    for line in lines:
        for x, y in _coords(line):
            assert 46 <= x <= WIDTH and 0 <= y <= HEIGHT


def test_nan_and_infinity_are_gaps_too() -> None:
    points = [(T, 1.0), (T + 60, math.nan), (T + 120, math.inf), (T + 180, 2.0), (T + 240, 3.0)]
    root = _parse(line_chart(points))
    assert [len(_coords(line)) for line in root.findall(f"{SVG}polyline")] == [2]
    assert "nan" not in line_chart(points).lower()


def test_constant_series_is_a_flat_line_in_the_middle() -> None:
    svg = line_chart([(T + 60 * i, 0.35) for i in range(10)])
    root = _parse(svg)
    (line,) = root.findall(f"{SVG}polyline")
    assert {y for _, y in _coords(line)} == {35.0}
    assert [t.text for t in root.findall(f"{SVG}text")][0] == "0.35"


def test_single_timestamp_and_empty_series() -> None:
    root = _parse(line_chart([(T, 5.0)]))
    assert len(root.findall(f"{SVG}circle")) == 1
    for points in ([], [(T, None), (T + 60, None)]):
        root = _parse(line_chart(points))
        assert [t.text for t in root.findall(f"{SVG}text")] == ["no data"]


def test_axis_labels_show_min_max_and_time_range() -> None:
    points = [(T + 60 * i, float(v)) for i, v in enumerate([120, 80, 4500, 12_000])]
    texts = [t.text for t in _parse(line_chart(points)).findall(f"{SVG}text")]
    assert texts == ["12k", "80", "12:00", "12:03 UTC"]
    week = [(T, 1.0), (T + 7 * 86_400, 2.0)]
    assert [t.text for t in _parse(line_chart(week)).findall(f"{SVG}text")][-2:] == [
        "11-01 12:00",
        "11-08 12:00 UTC",
    ]


def test_incident_band_and_start_marker() -> None:
    points = [(T + 60 * i, float(i)) for i in range(-30, 20)]
    root = _parse(line_chart(points, start=T))
    band = [r for r in root.findall(f"{SVG}rect") if r.get("fill-opacity")]
    assert len(band) == 1
    (marker,) = root.findall(f"{SVG}line")
    x = float(marker.get("x1") or 0)
    assert x == float(band[0].get("x") or 0)
    assert 46 + (WIDTH - 52) * 30 / 49 - 0.1 <= x <= 46 + (WIDTH - 52) * 30 / 49 + 0.1
    # A resolved incident's band ends at its end; one that started before the chart has no marker.
    resolved = _parse(line_chart(points, start=T, end=T + 600)).findall(f"{SVG}rect")[-1]
    assert float(resolved.get("width") or 0) < float(band[0].get("width") or 0)
    early = _parse(line_chart(points, start=T - 86_400))
    assert early.findall(f"{SVG}line") == []
    # An incident entirely after the series draws nothing.
    late = _parse(line_chart(points, start=T + 86_400))
    assert [r for r in late.findall(f"{SVG}rect") if r.get("fill-opacity")] == []


def test_title_is_escaped() -> None:
    svg = line_chart([(T, 1.0), (T + 60, 2.0)], title='<script>alert(1)</script> "x" & y')
    assert "<script" not in svg
    root = _parse(svg)
    assert root.findtext(f"{SVG}title") == '<script>alert(1)</script> "x" & y'


def test_deterministic_and_unsorted_input() -> None:
    points = [(T + 60 * i, math.sin(i / 3)) for i in range(40)]
    assert line_chart(points, start=T + 600) == line_chart(list(points), start=T + 600)
    assert line_chart(list(reversed(points))) == line_chart(points)
    assert not re.search(r"-0\.0\b", line_chart(points))


def test_value_label() -> None:
    assert value_label(0.052) == "0.052"
    assert value_label(412.0) == "412"
    assert value_label(12_345.0) == "12.3k"
    assert value_label(4_100_000.0) == "4.1M"
    assert value_label(-3.0) == "-3"
    assert value_label(2.5e9) == "2.5G"
