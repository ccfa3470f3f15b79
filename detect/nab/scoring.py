"""A faithful, vectorised reimplementation of the NAB v1.1 scorer (``numenta/NAB@ea702d7``).

The algorithm follows ``nab/sweeper.py``, ``nab/optimizer.py``, ``nab/scorer.py`` and ``nab/runner.py``;
no NAB code is copied, only its rules:

* **Probation.** Row ``i`` of an ``n``-row file is ignored when ``i < min(floor(0.15 n), 750)``.
* **Per-row weight** (the "sweep score"). Inside a window of ``width`` rows whose last row is ``r``,
  row ``i`` is worth ``A_TP * sigma(-(r - i + 1) / width) / sigma(-1)``, where
  ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` (and ``-1`` when ``y > 3``). Outside windows a row is worth
  ``A_FP * sigma(|i - r_prev| / (width_prev - 1))`` after a window, and ``-A_FP`` before the first one.
* **Detections.** With threshold ``T`` a scorable row is a detection when ``score >= T``. A window
  contributes ``max(-A_FN, best detected row weight)``, so only the earliest detection counts and an
  undetected window costs ``A_FN``; every detection outside a window adds its (negative) weight.
* **Threshold.** One threshold per detector and profile, chosen over the whole corpus: every distinct
  score is tried (highest first, plus "nothing detected" at 1.1), and the first best total wins.
* **Normalisation.** ``100 * (S - S_null) / (S_perfect - S_null)`` with ``S_perfect = windows * A_TP``
  and ``S_null = -windows * A_FN`` (the null detector's best threshold is "detect nothing").

Sweeping all thresholds is one sort plus cumulative sums, so the whole 365k-row corpus scores in well
under a second per profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from detect.nab.corpus import NabFile, probation_length
from warroom.errors import InputError

__all__ = [
    "PROFILES",
    "CorpusScore",
    "Profile",
    "normalise",
    "scaled_sigmoid",
    "score_corpus",
    "score_profiles",
]


@dataclass(frozen=True, slots=True)
class Profile:
    """One NAB application profile (``config/profiles.json``); ``A_TN`` is unused by NAB."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES: Mapping[str, Profile] = {
    "standard": Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
}

# NAB's threshold sweep starts above every possible score: "detect nothing".
_NO_DETECTION_THRESHOLD = 1.1


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: ``2 / (1 + exp(5 y)) - 1``, and exactly ``-1`` where ``y > 3``."""
    arr = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        val = 2.0 / (1.0 + np.exp(5.0 * arr)) - 1.0
    return np.where(arr > 3.0, -1.0, val)


_MAX_TP = float(scaled_sigmoid(-1.0))


@dataclass(frozen=True, slots=True, eq=False)
class _FileSweep:
    """Profile-independent per-row facts for one file (scorable rows only)."""

    name: str
    category: str
    rows: np.ndarray  # row indices that are past probation
    window: np.ndarray  # global window id per scorable row, -1 outside windows
    unit_weight: np.ndarray  # sigma(...)/sigma(-1) inside windows, sigma(...) outside (unweighted)
    n_windows: int


def _sweep_file(f: NabFile, window_offset: int) -> _FileSweep:
    n = len(f)
    idx = np.arange(n)
    window = np.full(n, -1, dtype=np.int64)
    weight = np.full(n, -1.0)  # before the first window: "really far away" from any window
    for k, (lo, hi) in enumerate(f.windows):
        width = float(hi - lo + 1)
        inside = slice(lo, hi + 1)
        window[inside] = window_offset + k
        weight[inside] = scaled_sigmoid(-(hi - idx[inside] + 1) / width) / _MAX_TP
        nxt = f.windows[k + 1][0] if k + 1 < len(f.windows) else n
        after = slice(hi + 1, nxt)
        weight[after] = scaled_sigmoid(np.abs(hi - idx[after]) / (width - 1.0))
    keep = idx >= probation_length(n)
    return _FileSweep(f.name, f.category, idx[keep], window[keep], weight[keep], len(f.windows))


@dataclass(frozen=True, slots=True)
class CorpusScore:
    """The outcome of one profile: NAB's raw total, its normalised score and the confusion counts."""

    profile: str
    threshold: float
    raw: float
    score: float  # normalised, 0 = null detector, 100 = perfect
    tp: int
    fp: int
    fn: int
    tn: int
    per_file: Mapping[str, float] = field(default_factory=dict)  # raw score per file at the threshold
    per_category: Mapping[str, float] = field(default_factory=dict)  # normalised per category
    fp_per_category: Mapping[str, int] = field(default_factory=dict)


def normalise(raw: float, n_windows: int, profile: Profile) -> float:
    """NAB's ``runner.normalize``: 100 * (raw - null) / (perfect - null)."""
    null = -n_windows * profile.fn
    perfect = n_windows * profile.tp
    if perfect == null:
        return float("nan")
    return 100.0 * (raw - null) / (perfect - null)


class _Prepared:
    """Concatenated scorable rows of the whole corpus, ready for repeated sweeps."""

    def __init__(self, files: Sequence[NabFile], scores: Mapping[str, np.ndarray]) -> None:
        sweeps: list[_FileSweep] = []
        offset = 0
        for f in files:
            sw = _sweep_file(f, offset)
            offset += sw.n_windows
            sweeps.append(sw)
        self.sweeps = sweeps
        self.n_windows = offset
        parts = []
        for f, sw in zip(files, sweeps, strict=True):
            s = np.asarray(scores[f.name], dtype=np.float64)
            if s.shape != (len(f),):
                raise InputError(
                    f"{f.name}: expected {len(f)} scores, got {s.shape}", reason="score_length_mismatch"
                )
            if not np.all(np.isfinite(s)) or s.min(initial=0.0) < 0.0 or s.max(initial=0.0) > 1.0:
                raise InputError(f"{f.name}: scores must be finite and in [0, 1]", reason="score_range")
            parts.append(s[sw.rows])
        self.score = np.concatenate(parts) if parts else np.zeros(0)
        self.window = np.concatenate([sw.window for sw in sweeps]) if sweeps else np.zeros(0, np.int64)
        self.unit = np.concatenate([sw.unit_weight for sw in sweeps]) if sweeps else np.zeros(0)
        self.file_of_row = (
            np.concatenate([np.full(len(sw.rows), i) for i, sw in enumerate(sweeps)])
            if sweeps
            else np.zeros(0, np.int64)
        )
        # Highest score first; a stable sort keeps NAB's file order among ties (irrelevant to totals).
        self.order = np.argsort(-self.score, kind="stable")

    def weights(self, profile: Profile) -> np.ndarray:
        return np.where(self.window >= 0, self.unit * profile.tp, self.unit * profile.fp)

    def best_threshold(self, profile: Profile) -> float:
        """Sweep every distinct score as a threshold and return NAB's optimum (highest on ties)."""
        if len(self.score) == 0:
            return _NO_DETECTION_THRESHOLD
        order = self.order
        s = self.score[order]
        w = self.weights(profile)[order]
        win = self.window[order]
        delta = np.where(win < 0, w, 0.0)
        # Inside windows the total only moves when a window's best detected weight improves.
        pos = np.flatnonzero(win >= 0)
        if len(pos):
            g = win[pos]
            by_window = np.lexsort((pos, g))
            pos, g = pos[by_window], g[by_window]
            _, dense = np.unique(g, return_inverse=True)
            # Offsetting each window by a large constant lets one accumulate run per window segment.
            shifted = w[pos] + 10.0 * dense
            running = np.maximum.accumulate(shifted) - 10.0 * dense
            running = np.maximum(running, -profile.fn)
            first = np.r_[True, g[1:] != g[:-1]]
            previous = np.where(first, -profile.fn, np.r_[-profile.fn, running[:-1]])
            delta[pos] = running - previous
        total = -self.n_windows * profile.fn + np.cumsum(delta)
        # A threshold's total is read after the last row holding that score.
        ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
        totals = np.r_[-self.n_windows * profile.fn, total[ends]]
        thresholds = np.r_[_NO_DETECTION_THRESHOLD, s[ends]]
        return float(thresholds[int(np.argmax(totals))])

    def score_at(self, profile: Profile, threshold: float) -> CorpusScore:
        detected = self.score >= threshold
        w = self.weights(profile)
        outside = self.window < 0
        n_files = len(self.sweeps)
        fp_rows = detected & outside
        per_file = np.bincount(self.file_of_row[fp_rows], weights=w[fp_rows], minlength=n_files).astype(float)
        window_best = np.full(self.n_windows, -profile.fn)
        tp_rows = detected & ~outside
        np.maximum.at(window_best, self.window[tp_rows], w[tp_rows])
        window_file = np.concatenate(
            [np.full(sw.n_windows, i) for i, sw in enumerate(self.sweeps)] or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        per_file += np.bincount(window_file, weights=window_best, minlength=n_files)
        raw = float(per_file.sum())
        cats: dict[str, list[int]] = {}
        for i, sw in enumerate(self.sweeps):
            cats.setdefault(sw.category, []).append(i)
        per_category: dict[str, float] = {}
        fp_per_category: dict[str, int] = {}
        fp_by_file = np.bincount(self.file_of_row[fp_rows], minlength=n_files)
        for cat, members in sorted(cats.items()):
            n_win = sum(self.sweeps[i].n_windows for i in members)
            cat_raw = float(per_file[members].sum())
            per_category[cat] = normalise(cat_raw, n_win, profile) if n_win else cat_raw
            fp_per_category[cat] = int(fp_by_file[members].sum())
        return CorpusScore(
            profile=profile.name,
            threshold=threshold,
            raw=raw,
            score=normalise(raw, self.n_windows, profile),
            tp=int(tp_rows.sum()),
            fp=int(fp_rows.sum()),
            fn=int((~detected & ~outside).sum()),
            tn=int((~detected & outside).sum()),
            per_file={sw.name: float(per_file[i]) for i, sw in enumerate(self.sweeps)},
            per_category=per_category,
            fp_per_category=fp_per_category,
        )


def score_corpus(
    files: Sequence[NabFile], scores: Mapping[str, np.ndarray], profile: Profile | str = "standard"
) -> CorpusScore:
    """Optimise one corpus-wide threshold for ``profile`` and score ``scores`` (file name -> per-row scores).

    Per-category figures use the same corpus threshold and normalise by the category's own windows
    (categories without windows report their raw, FP-only total instead).
    """
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    prepared = _Prepared(files, scores)
    return prepared.score_at(prof, prepared.best_threshold(prof))


def score_profiles(files: Sequence[NabFile], scores: Mapping[str, np.ndarray]) -> dict[str, CorpusScore]:
    """:func:`score_corpus` for the three NAB profiles, sharing the per-row preparation."""
    prepared = _Prepared(files, scores)
    return {name: prepared.score_at(p, prepared.best_threshold(p)) for name, p in PROFILES.items()}
