"""``warroom bench nab``: run a detector over the whole NAB corpus, score it, compare with a baseline.

Every file is streamed point by point through a fresh detector (no look-ahead), then scored with
:mod:`detect.nab.scoring` under NAB's rules, one corpus-wide threshold per profile. The same
invocation runs NAB's windowed Gaussian as a baseline, so a run always carries a known reference
(published: 39.65 / 20.87 / 47.41).

NAB conventions the bench follows, stated so they are not mistaken for leaks:

* Detectors that take a ``warmup`` get NAB's probationary length for the file
  (``min(floor(0.15 n), 750)``), the same number NAB hands every detector; no other file-level fact
  (length, min, max, labels) reaches a detector.
* One file (``machine_temperature_system_failure.csv``) steps back an hour at a DST change. NAB
  scores rows in file order, so the bench feeds ``max(t, previous t)``; detectors otherwise reject
  timestamps that go backwards.
* The baseline's scores are rounded to 12 significant digits before scoring, because NAB's published
  results went through Python 2 CSV files that stored exactly that; without it the Gaussian's many
  near-1.0 scores tie differently and the low-FP figure moves by about 3 points.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detect.nab.corpus import NabFile, load_corpus, probation_length
from detect.nab.scoring import CorpusScore, score_profiles
from detect.registry import BUILTINS, DEFAULT_DETECTOR
from warroom.errors import InputError

__all__ = ["BASELINE", "PUBLISHED", "default_data_dir", "main", "run", "run_detector"]

BASELINE = "windowed_gaussian"
PUBLISHED = {
    "windowed_gaussian": {"standard": 39.65, "low_fp": 20.87, "low_fn": 47.41},
    "ARTime (field best standard / low-FN)": {"standard": 74.85, "low_fp": 65.15, "low_fn": 80.36},
    "CAD OSE (field best low-FP)": {"standard": 69.90, "low_fp": 66.98, "low_fn": 73.18},
}
_PROFILE_KEYS = {"standard": "standard", "reward_low_FP_rate": "low_fp", "reward_low_FN_rate": "low_fn"}


def default_data_dir() -> Path:
    """``$WARROOM_NAB_DIR``, else ``../shared/datasets/nab`` beside the repository root."""
    env = os.environ.get("WARROOM_NAB_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "nab"


def _round12(scores: np.ndarray) -> np.ndarray:
    return np.array([float(f"{s:.12g}") for s in scores.tolist()])


def run_detector(name: str, files: Sequence[NabFile]) -> tuple[dict[str, np.ndarray], float]:
    """Stream every file through a fresh ``name`` detector; returns per-file scores and seconds spent."""
    key = DEFAULT_DETECTOR if name == "default" else name
    if key not in BUILTINS:
        raise InputError(
            f"unknown detector {name!r}; choose from {', '.join(sorted(BUILTINS))}", reason="unknown_detector"
        )
    cls = BUILTINS[key]
    takes_warmup = "warmup" in inspect.signature(cls).parameters
    scores: dict[str, np.ndarray] = {}
    elapsed = 0.0
    for f in files:
        params = {"warmup": int(probation_length(len(f)))} if takes_warmup else {}
        det = cls(**params)
        stamps = np.maximum.accumulate(f.epoch_seconds).tolist()
        values = f.values.tolist()
        update = det.update
        start = time.perf_counter()
        out = [update(t, v) for t, v in zip(stamps, values, strict=True)]
        elapsed += time.perf_counter() - start
        scores[f.name] = np.asarray(out, dtype=np.float64)
    if key == BASELINE:
        scores = {k: _round12(v) for k, v in scores.items()}
    return scores, elapsed


def _summary(results: dict[str, CorpusScore], points: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for prof, key in _PROFILE_KEYS.items():
        out[key] = round(results[prof].score, 2)
    out["points_per_s"] = round(points / seconds) if seconds > 0 else None
    out["thresholds"] = {_PROFILE_KEYS[p]: r.threshold for p, r in results.items()}
    std = results["standard"]
    out["counts_standard"] = {"tp_rows": std.tp, "fp_rows": std.fp, "fn_rows": std.fn, "tn_rows": std.tn}
    cats = sorted(std.per_category)
    out["per_category"] = {
        c: {_PROFILE_KEYS[p]: round(r.per_category[c], 2) for p, r in results.items()} for c in cats
    }
    out["fp_rows_per_category_standard"] = dict(std.fp_per_category)
    return out


def run(data_dir: Path, as_json: bool = False, detector: str = "default") -> dict[str, Any]:
    """Bench ``detector`` and the windowed-Gaussian baseline on NAB; prints a report and returns it.

    With ``as_json`` the last printed line is one JSON object with at least ``standard``, ``low_fp``,
    ``low_fn`` and ``points_per_s`` (plus ``baseline`` with the same keys).
    """
    files = load_corpus(Path(data_dir))
    points = sum(len(f) for f in files)
    scores, seconds = run_detector(detector, files)
    rss_detector = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    results = score_profiles(files, scores)
    base_scores, base_seconds = run_detector(BASELINE, files)
    base_results = score_profiles(files, base_scores)
    report: dict[str, Any] = {
        "detector": DEFAULT_DETECTOR if detector == "default" else detector,
        **_summary(results, points, seconds),
        "peak_rss_mb": round(rss_detector, 1),
        "files": len(files),
        "points": points,
        "windows": sum(len(f.windows) for f in files),
        "baseline": {"detector": BASELINE, **_summary(base_results, points, base_seconds)},
        "published": PUBLISHED,
    }
    report["peak_rss_mb_total"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    _print_report(report)
    if as_json:
        print(json.dumps(report, separators=(",", ":")))
    return report


def _print_report(r: dict[str, Any]) -> None:
    b = r["baseline"]
    print(f"NAB v1.1: {r['files']} files, {r['points']:,} points, {r['windows']} windows")
    print(f"{'':30s} {'standard':>9s} {'low FP':>9s} {'low FN':>9s} {'points/s':>10s}")
    for label, s in ((r["detector"], r), (f"{b['detector']} (baseline)", b)):
        print(
            f"{label:30s} {s['standard']:9.2f} {s['low_fp']:9.2f} {s['low_fn']:9.2f} {s['points_per_s']:>10,}"
        )
    print(f"per category ({r['detector']}; normalised by the category's own windows, raw FP total if none):")
    for cat, vals in r["per_category"].items():
        bv = b["per_category"][cat]
        print(
            f"  {cat:22s} {vals['standard']:7.2f} {vals['low_fp']:7.2f} {vals['low_fn']:7.2f}"
            f"   baseline {bv['standard']:7.2f} {bv['low_fp']:7.2f} {bv['low_fn']:7.2f}"
        )
    print(f"peak RSS: {r['peak_rss_mb']} MB after the detector run, {r['peak_rss_mb_total']} MB overall")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="warroom bench nab", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="NAB folder holding data/ and labels/")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument(
        "--detector", default="default", help=f"one of: default, {', '.join(sorted(BUILTINS))}"
    )
    args = parser.parse_args(argv)
    try:
        run(args.data or default_data_dir(), as_json=args.json, detector=args.detector)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
