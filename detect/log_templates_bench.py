"""Loghub-2k benchmark for :mod:`detect.log_templates`: grouping and parsing accuracy vs. Drain.

Run ``python -m detect.log_templates_bench [--data DIR] [--json]`` (wired as ``warroom bench logs``).
``DIR`` is the Loghub-2k folder with one sub-folder per system holding ``<S>_2k.log`` and
``<S>_2k.log_structured_corrected.csv`` (Loghub-2.0's corrected ground truth, Khan et al. ICSE'22;
the plain ``_structured.csv`` is used only if the corrected file is missing). The data are read in
place and never copied (evaluation-only licence).

Protocol, kept identical to Loghub's so the numbers sit beside the published Drain figures:

* **Systems**: the five of the reference table (HDFS, BGL, OpenStack, Apache, Linux), whose Drain
  averages are GA 0.877 / PA 0.347 on Loghub-2k (``loghub-2.0@8046b14:RQs_experiments/RQ2``).
* **Content**: each raw line is ``strip()``-ed and split by the system's Loghub ``log_format``
  (header fields become named groups, the rest is ``Content``); lines that do not match are skipped,
  as Loghub does, and the count must equal the ground truth's.
* **Parsing**: one fresh :class:`~detect.log_templates.TemplateMiner` per system, lines in file
  order; each line is then labelled with the *final* template of its cluster (as Loghub's Drain
  writes its output after the last line), which here is ``miner.resolve(id)`` of the id that
  ``add`` returned. Per-system Drain settings are Loghub's ``st``/``depth``; masking is the
  module's general masking for every system (no per-system regexes).
* **GA** (grouping accuracy, Loghub ``evaluator.get_accuracy``): a message counts as correct iff the
  set of messages sharing its predicted template equals the set sharing its true template; GA is
  the fraction of correct messages. **FGA** is the F1 of correctly grouped templates.
* **PA** (parsing accuracy, Loghub-2.0 ``PA_calculator``): the fraction of messages whose
  predicted template string equals the true one. The prediction is first written in the Loghub
  convention (every placeholder becomes ``<*>``) and both sides then go through the same
  normalisation, :func:`normalise_template`, a re-implementation of the published correction rules
  that produced the corrected ground truth (DS, PS, BL/US, DG, WV, DV, CV; Khan et al. 2022).
  ``pa_raw`` is the strict score without that normalisation, for transparency.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from detect.log_templates import PARAM, Masker, TemplateMiner
from warroom.errors import InputError

__all__ = [
    "DRAIN_AVERAGE",
    "SYSTEMS",
    "Dataset",
    "SystemSpec",
    "default_data_dir",
    "evaluate_system",
    "grouping_accuracy",
    "load_system",
    "log_format_regex",
    "main",
    "normalise_template",
    "parsing_accuracy",
    "run",
    "to_loghub",
]


@dataclass(frozen=True, slots=True)
class SystemSpec:
    """Loghub's settings for one system and the published Drain result on Loghub-2k (corrected)."""

    log_format: str
    sim_th: float
    depth: int
    drain_ga: float
    drain_pa: float


# Log formats, st and depth: loghub-2.0@8046b14 benchmark/old_benchmark/Drain_benchmark.py.
# Drain GA/PA: loghub-2.0@8046b14 RQs_experiments/RQ2/effectiveness_results.csv (2k, corrected).
SYSTEMS: dict[str, SystemSpec] = {
    "HDFS": SystemSpec("<Date> <Time> <Pid> <Level> <Component>: <Content>", 0.5, 4, 0.998, 0.500),
    "BGL": SystemSpec(
        "<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>",
        0.5,
        4,
        0.963,
        0.342,
    ),
    "OpenStack": SystemSpec(
        r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>", 0.5, 5, 0.733, 0.018
    ),
    "Apache": SystemSpec(r"\[<Time>\] \[<Level>\] <Content>", 0.5, 4, 1.000, 0.694),
    "Linux": SystemSpec(
        r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>", 0.39, 6, 0.690, 0.183
    ),
}

DRAIN_AVERAGE = {"ga": 0.877, "pa": 0.347}


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def log_format_regex(log_format: str) -> re.Pattern[str]:
    """Compile a Loghub ``log_format``: ``<Field>`` becomes a lazy named group, spaces ``\\s+``.

    The text between fields is a regex fragment (Loghub writes ``\\[<Time>\\]``), so it is not
    escaped; the whole pattern is anchored at both ends.
    """
    parts = re.split(r"(<[^<>]+>)", log_format)
    pattern = []
    for i, part in enumerate(parts):
        if i % 2:
            pattern.append(f"(?P<{part[1:-1]}>.*?)")
        else:
            pattern.append(re.sub(r" +", r"\\s+", part))
    return re.compile("^" + "".join(pattern) + "$")


@dataclass(frozen=True, slots=True)
class Dataset:
    """One system's messages and their true templates, aligned by line."""

    name: str
    contents: list[str]
    truth: list[str]
    content_mismatches: int


def load_system(data_dir: Path | str, name: str) -> Dataset:
    """Read ``<S>_2k.log`` through the system's log format and align it with the ground truth."""
    if name not in SYSTEMS:
        raise InputError(f"unknown Loghub system {name!r}; known: {', '.join(SYSTEMS)}", reason="bad_system")
    folder = Path(data_dir) / name
    log_path = folder / f"{name}_2k.log"
    truth_path = folder / f"{name}_2k.log_structured_corrected.csv"
    if not truth_path.exists():
        truth_path = folder / f"{name}_2k.log_structured.csv"
    if not log_path.exists() or not truth_path.exists():
        raise InputError(f"{name}: need {log_path} and {truth_path}", reason="missing_data")
    regex = log_format_regex(SYSTEMS[name].log_format)
    contents: list[str] = []
    with log_path.open(encoding="utf-8", errors="replace", newline="") as fh:
        for raw in fh:
            m = regex.search(raw.strip())
            if m:
                contents.append(m.group("Content"))
    with truth_path.open(encoding="utf-8", errors="replace", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != len(contents):
        raise InputError(
            f"{name}: {len(contents)} lines matched the log format but the ground truth has {len(rows)}",
            reason="misaligned_data",
        )
    mismatches = sum(1 for row, c in zip(rows, contents, strict=True) if row["Content"].strip() != c.strip())
    return Dataset(name, contents, [row["EventTemplate"] for row in rows], mismatches)


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


def grouping_accuracy(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> tuple[float, float]:
    """Loghub's grouping accuracy and FGA: ``(GA, FGA)``.

    A true group is correct iff all its messages carry one predicted label *and* no other message
    carries that label. GA = messages in correct groups / messages; FGA = F1 of correct groups over
    predicted groups (precision) and true groups (recall). ``None`` truths are ignored, as Loghub
    drops rows without a template.
    """
    if len(truth) != len(pred):
        raise InputError("truth and prediction differ in length", reason="bad_lengths")
    keep = [i for i, t in enumerate(truth) if t is not None]
    if not keep:
        return 0.0, 0.0
    pred_sizes = Counter(pred[i] for i in keep)
    members: dict[Hashable, list[Hashable]] = defaultdict(list)
    for i in keep:
        members[truth[i]].append(pred[i])
    correct_msgs = correct_groups = 0
    for labels in members.values():
        distinct = set(labels)
        if len(distinct) == 1 and pred_sizes[labels[0]] == len(labels):
            correct_msgs += len(labels)
            correct_groups += 1
    ga = correct_msgs / len(keep)
    precision = correct_groups / len(pred_sizes)
    recall = correct_groups / len(members)
    fga = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return ga, fga


def parsing_accuracy(truth: Sequence[str], pred: Sequence[str], normalise: bool = True) -> float:
    """Fraction of messages whose predicted template equals the true one (after normalisation)."""
    if len(truth) != len(pred):
        raise InputError("truth and prediction differ in length", reason="bad_lengths")
    if not truth:
        return 0.0
    if normalise:
        cache: dict[str, str] = {}

        def norm(t: str) -> str:
            if t not in cache:
                cache[t] = normalise_template(t)
            return cache[t]

        return sum(norm(t) == norm(p) for t, p in zip(truth, pred, strict=True)) / len(truth)
    return sum(t == p for t, p in zip(truth, pred, strict=True)) / len(truth)


_MASKER_NAMES = Masker().names


def to_loghub(template: str, names: frozenset[str] = _MASKER_NAMES) -> str:
    """Write a miner template in the Loghub convention: every known placeholder becomes ``<*>``."""
    return re.sub(r"<([A-Z][A-Z0-9_]*)>", lambda m: PARAM if m.group(1) in names else m.group(0), template)


_PATH_DELIMS = r"\s,!;:=|\"'\[\](){}"
_PATH_SPLIT = re.compile(f"([{_PATH_DELIMS}])")
_TOKEN_SPLIT = re.compile(rf"([{_PATH_DELIMS}.\-+@#$%&])")
_PATH_LIKE = re.compile(r"(?:/[^/]+)+")
_WORD_WITH_VAR = re.compile(r"[^\s/]*<\*>[^\s/]*")
_DEFAULT_VALUES = frozenset({"true", "false", "null", "root", "admin"})


def normalise_template(template: str) -> str:
    """Canonical Loghub form of a ``<*>`` template, so equal templates compare equal as strings.

    The rules are those Khan et al. (ICSE'22) applied to build the corrected ground truth, so a
    parser is judged on where its variables are, not on how it spells them:

    * DS: trim, and collapse runs of whitespace to one space;
    * PS: a path-like piece (``/a/b``) between path delimiters becomes ``<*>``;
    * BL/US: the words true, false, null, root, admin become ``<*>``;
    * DG: a piece of digits only becomes ``<*>``;
    * WV: a piece that contains ``<*>`` (and no ``/``) becomes ``<*>`` (``blk_<*>`` → ``<*>``);
    * DV: ``<*>.<*>`` becomes ``<*>``; CV: ``<*><*>`` becomes ``<*>`` (both repeatedly).

    Pieces are split on whitespace and ``, ! ; : = | " ' [ ] ( ) { }`` (PS) plus
    ``. - + @ # $ % &`` (the other rules); the delimiters are kept.
    """
    text = " ".join(template.split())
    pieces = _PATH_SPLIT.split(text)
    text = "".join(PARAM if _PATH_LIKE.fullmatch(p) else p for p in pieces)
    out = []
    for piece in _TOKEN_SPLIT.split(text):
        if piece.lower() in _DEFAULT_VALUES or piece.isdigit() and piece.isascii():
            piece = PARAM
        elif PARAM in piece and _WORD_WITH_VAR.fullmatch(piece):
            piece = PARAM
        out.append(piece)
    text = "".join(out)
    for pair in ("<*>.<*>", "<*><*>"):
        while pair in text:
            text = text.replace(pair, PARAM)
    return text


# --------------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------------


def evaluate_system(data_dir: Path | str, name: str, uniform: bool = False) -> dict[str, Any]:
    """Parse one system and score it; returns the per-system figures.

    ``uniform`` uses the miner's default ``sim_th``/``depth`` instead of Loghub's per-system values.
    """
    spec = SYSTEMS[name]
    data = load_system(data_dir, name)
    miner = TemplateMiner() if uniform else TemplateMiner(sim_th=spec.sim_th, depth=spec.depth)
    started = time.perf_counter()
    ids = [miner.add(content, ts=0.0).template_id for content in data.contents]
    elapsed = time.perf_counter() - started
    final_ids = [miner.resolve(i) or i for i in ids]
    final_text = {i: to_loghub(miner.template(i) or "") for i in set(final_ids)}
    pred = [final_text[i] for i in final_ids]
    ga, fga = grouping_accuracy(data.truth, final_ids)
    return {
        "system": name,
        "lines": len(data.contents),
        "templates": len(miner),
        "true_templates": len(set(data.truth)),
        "ga": round(ga, 4),
        "fga": round(fga, 4),
        "pa": round(parsing_accuracy(data.truth, pred), 4),
        "pa_raw": round(parsing_accuracy(data.truth, pred, normalise=False), 4),
        "drain_ga": spec.drain_ga,
        "drain_pa": spec.drain_pa,
        "sim_th": miner.config["sim_th"],
        "depth": miner.config["depth"],
        "seconds": elapsed,
        "lines_per_s": round(len(data.contents) / elapsed) if elapsed > 0 else None,
        "content_mismatches": data.content_mismatches,
    }


def run(
    data_dir: Path | str, as_json: bool = False, out: TextIO | None = None, uniform: bool = False
) -> dict[str, Any]:
    """Score every system, print a table (and, with ``as_json``, one JSON line last); return the result.

    The result holds the averages ``ga``, ``pa``, ``pa_raw`` and ``fga`` over the five systems, the
    published Drain averages beside them, per-system figures under ``systems`` (with the ``sim_th``
    and ``depth`` used) and ``lines_per_s``: lines through :meth:`TemplateMiner.add` (masking,
    Drain and counters) per second, file reading and scoring excluded. ``uniform`` runs every
    system with the miner's defaults instead of Loghub's per-system ``st``/``depth``.
    """
    stream = out if out is not None else sys.stdout
    rows = [evaluate_system(data_dir, name, uniform) for name in SYSTEMS]
    n = len(rows)
    total_lines = sum(r["lines"] for r in rows)
    total_seconds = sum(r["seconds"] for r in rows)
    result: dict[str, Any] = {
        "benchmark": "loghub-2k-corrected",
        "systems": {
            r["system"]: {k: v for k, v in r.items() if k not in ("system", "seconds")} for r in rows
        },
        "ga": round(sum(r["ga"] for r in rows) / n, 4),
        "fga": round(sum(r["fga"] for r in rows) / n, 4),
        "pa": round(sum(r["pa"] for r in rows) / n, 4),
        "pa_raw": round(sum(r["pa_raw"] for r in rows) / n, 4),
        "drain_ga": DRAIN_AVERAGE["ga"],
        "drain_pa": DRAIN_AVERAGE["pa"],
        "lines": total_lines,
        "lines_per_s": round(total_lines / total_seconds) if total_seconds > 0 else None,
        "masking": "general (detect.log_templates.DEFAULT_MASKS), no per-system regexes",
        "settings": "miner defaults" if uniform else "Loghub per-system st/depth",
    }
    print("Loghub-2k (corrected templates): warroom TemplateMiner vs published Drain", file=stream)
    columns = (
        "system",
        "st/depth",
        "lines",
        "tmpl",
        "true",
        "GA",
        "Drain",
        "PA",
        "Drain",
        "PA raw",
        "FGA",
        "lines/s",
    )
    widths = (10, 8, 6, 5, 5, 6, 6, 6, 6, 7, 6, 8)
    print(
        " ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths, strict=True))
        ),
        file=stream,
    )
    table = [
        (
            r["system"],
            f"{r['sim_th']:.2f}/{r['depth']}",
            r["lines"],
            r["templates"],
            r["true_templates"],
            f"{r['ga']:.3f}",
            f"{r['drain_ga']:.3f}",
            f"{r['pa']:.3f}",
            f"{r['drain_pa']:.3f}",
            f"{r['pa_raw']:.3f}",
            f"{r['fga']:.3f}",
            r["lines_per_s"] or 0,
        )
        for r in rows
    ]
    table.append(
        (
            "average",
            "",
            total_lines,
            "",
            "",
            f"{result['ga']:.3f}",
            f"{result['drain_ga']:.3f}",
            f"{result['pa']:.3f}",
            f"{result['drain_pa']:.3f}",
            f"{result['pa_raw']:.3f}",
            f"{result['fga']:.3f}",
            result["lines_per_s"] or 0,
        )
    )
    for row in table:
        cells = (
            str(c).rjust(w) if i else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print(" ".join(cells), file=stream)
    if as_json:
        print(json.dumps(result, sort_keys=True), file=stream)
    return result


def default_data_dir() -> Path:
    """``$WARROOM_LOGHUB_DIR``, else ``../shared/datasets/loghub2k`` beside the repository root."""
    env = os.environ.get("WARROOM_LOGHUB_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "loghub2k"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``[--data DIR] [--json]``; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="warroom bench logs", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="Loghub-2k folder (one sub-folder per system)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument(
        "--uniform", action="store_true", help="use the miner's default st/depth for every system"
    )
    args = parser.parse_args(argv)
    data_dir = args.data or default_data_dir()
    try:
        run(data_dir, as_json=args.json, uniform=args.uniform)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
