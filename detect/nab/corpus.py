"""Load the NAB corpus (data files plus ``labels/combined_windows.json``) read-only, in place.

The corpus is evaluation-only data: it is read from wherever it lives (``--data``, ``WARROOM_NAB_DIR``)
and never copied into the repository.

A few NAB files repeat a timestamp (daylight-saving artefacts, e.g. eleven rows stamped
``2014-03-09 03:00:00`` in ``ec2_disk_write_bytes_1ef3de.csv``). NAB scores by row index, so the loader
keeps every row in file order; detectors accept equal timestamps (see :mod:`detect.base`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from warroom.errors import InputError

__all__ = ["CATEGORIES", "NabFile", "load_corpus", "probation_length"]

CATEGORIES = (
    "artificialNoAnomaly",
    "artificialWithAnomaly",
    "realAdExchange",
    "realAWSCloudwatch",
    "realKnownCause",
    "realTraffic",
    "realTweets",
)

PROBATION_PERCENT = 0.15


def probation_length(n_rows: int) -> float:
    """NAB's probationary period: ``min(floor(0.15 * n), 0.15 * 5000)`` rows are never scored.

    Kept as a float exactly as ``nab/sweeper.py`` computes it; row ``i`` is scorable when ``i >= length``.
    """
    return float(min(np.floor(PROBATION_PERCENT * n_rows), PROBATION_PERCENT * 5000))


@dataclass(frozen=True, slots=True, eq=False)
class NabFile:
    """One NAB data file with its scoring windows as inclusive row-index ranges."""

    name: str  # relative path, e.g. "realKnownCause/nyc_taxi.csv"
    timestamps: np.ndarray  # datetime64[s], non-decreasing
    values: np.ndarray  # float64
    windows: tuple[tuple[int, int], ...]  # inclusive (first_row, last_row), ordered

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def epoch_seconds(self) -> np.ndarray:
        return self.timestamps.astype(np.int64).astype(np.float64)

    def __len__(self) -> int:
        return len(self.values)


def _read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = path.read_text().splitlines()
    if not lines or lines[0].strip().lower() != "timestamp,value":
        raise InputError(f"{path}: expected a 'timestamp,value' header", reason="bad_header")
    stamps: list[str] = []
    values: list[float] = []
    for row, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            stamp, value = line.split(",")
            values.append(float(value))
        except ValueError as exc:
            raise InputError(f"{path}:{row}: cannot parse {line!r}", reason="bad_row") from exc
        stamps.append(stamp.strip().replace(" ", "T"))
    return np.array(stamps, dtype="datetime64[s]"), np.array(values, dtype=np.float64)


def _window_rows(name: str, stamps: np.ndarray, windows: list[list[str]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for start, end in windows:
        bounds = []
        for edge in (start, end):
            t = np.datetime64(edge.replace(" ", "T")[:19], "s")
            hits = np.flatnonzero(stamps == t)
            if len(hits) == 0:
                raise InputError(f"{name}: window edge {edge} is not a row timestamp", reason="bad_label")
            bounds.append(int(hits[0]))  # NAB uses list.index(): the first matching row
        out.append((bounds[0], bounds[1]))
    return tuple(out)


def iter_corpus(data_dir: Path) -> Iterator[NabFile]:
    """Yield every labelled file under ``data_dir`` (the folder holding ``data/`` and ``labels/``)."""
    data_dir = Path(data_dir)
    labels_path = data_dir / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise InputError(f"NAB labels not found at {labels_path}", reason="missing_nab_data")
    windows = json.loads(labels_path.read_text())
    for name in sorted(windows):
        path = data_dir / "data" / name
        if not path.is_file():
            raise InputError(f"NAB data file missing: {path}", reason="missing_nab_data")
        stamps, values = _read_series(path)
        yield NabFile(name, stamps, values, _window_rows(name, stamps, windows[name]))


def load_corpus(data_dir: Path) -> list[NabFile]:
    """All 58 labelled NAB files, sorted by relative path."""
    return list(iter_corpus(data_dir))
