"""score-csv: streaming CSV scoring and its input errors."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from detect.csv_score import score_csv
from tests.detect.conftest import noisy_series
from warroom.errors import InputError


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def series_rows(n: int = 800, spike_at: int = 700) -> list[str]:
    xs = noisy_series(n)
    xs[spike_at] += 15.0
    return [
        f"2024-01-01T00:00:00Z,{x}" if i == 0 else f"{1704067200 + 300 * i},{x}" for i, x in enumerate(xs)
    ]


def test_scores_rows_and_flags_the_spike(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", "timestamp,value", series_rows())
    out = tmp_path / "out.csv"
    res = score_csv(src, out=out, params={"warmup": 200})
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert res.rows == len(rows) == 800 and res.value_cols == ("value",)
    assert list(rows[0]) == ["timestamp", "score", "is_anomaly"]
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert rows[700]["is_anomaly"] == "1"
    assert res.anomalies == sum(r["is_anomaly"] == "1" for r in rows) <= 5


def test_multiple_value_columns_and_column_selection(tmp_path: Path) -> None:
    xs = noisy_series(400)
    lines = [f"{i},{x},{2 * x},ignored" for i, x in enumerate(xs)]
    src = write(tmp_path / "m.csv", "t,a,b,note", lines)
    buf = io.StringIO()
    res = score_csv(src, timestamp_col="t", value_cols=["a", "b"], out=buf, params={"warmup": 50})
    assert res.rows == 400 and res.value_cols == ("a", "b")
    assert buf.getvalue().startswith("timestamp,score,is_anomaly\n0,")


@pytest.mark.parametrize(
    ("header", "rows", "kwargs", "needle"),
    [
        ("timestamp,value", ["1,1.0", "2,abc"], {}, "line 3"),
        ("timestamp,value", ["1,1.0", "2,"], {}, "line 3"),
        ("timestamp,value", ["1,1.0", "2,nan"], {}, "line 3"),
        ("timestamp,value", ["1,1.0", "x-y-z,2.0"], {}, "line 3"),
        ("timestamp,value", ["5,1.0", "4,2.0"], {}, "line 3"),
        ("timestamp,value", ["1,1.0"], {"value_cols": ["missing"]}, "missing"),
        ("timestamp,value", ["1,1.0"], {"timestamp_col": "when"}, "when"),
        ("timestamp,value", [], {}, "no data rows"),
        ("timestamp,value", ["1"], {}, "line 2"),
    ],
)
def test_bad_input_names_the_line(
    tmp_path: Path, header: str, rows: list[str], kwargs: dict, needle: str
) -> None:
    src = write(tmp_path / "bad.csv", header, rows)
    with pytest.raises(InputError) as err:
        score_csv(src, out=io.StringIO(), **kwargs)
    assert needle in str(err.value)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError):
        score_csv(tmp_path / "empty.csv", out=io.StringIO())
    with pytest.raises(InputError):
        score_csv(tmp_path / "nope.csv", out=io.StringIO())


def test_duplicate_timestamps_are_accepted(tmp_path: Path) -> None:
    src = write(tmp_path / "dup.csv", "timestamp,value", ["1,1.0", "1,1.5", "2,1.0"])
    assert score_csv(src, out=io.StringIO()).rows == 3
