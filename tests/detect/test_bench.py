"""The NAB bench on a tiny fake corpus (fast) and on the real one (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detect.nab import bench
from tests.detect.conftest import noisy_series


def fake_nab(root: Path) -> Path:
    windows: dict[str, list[list[str]]] = {}
    for cat, name, shift in (("realFake", "a.csv", True), ("artificialNoAnomaly", "b.csv", False)):
        xs = noisy_series(1200, seed=len(name))
        if shift:
            xs = xs[:900] + [x + 5.0 for x in xs[900:]]
        stamps = np.datetime64("2024-01-01T00:00:00") + np.arange(1200) * np.timedelta64(300, "s")
        text = "timestamp,value\n" + "\n".join(
            f"{str(t).replace('T', ' ')},{x}" for t, x in zip(stamps, xs, strict=True)
        )
        (root / "data" / cat).mkdir(parents=True, exist_ok=True)
        (root / "data" / cat / name).write_text(text + "\n")
        key = f"{cat}/{name}"
        windows[key] = (
            [[str(stamps[850]).replace("T", " ") + ".000000", str(stamps[950]).replace("T", " ") + ".000000"]]
            if shift
            else []
        )
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    return root


def test_bench_json_contract_on_fake_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = fake_nab(tmp_path)
    assert bench.main(["--data", str(root), "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    for key in ("standard", "low_fp", "low_fn", "points_per_s", "peak_rss_mb", "per_category", "baseline"):
        assert key in report
    assert report["files"] == 2 and report["windows"] == 1
    assert report["standard"] > 50.0  # the shift is found
    assert set(report["baseline"]) >= {"standard", "low_fp", "low_fn", "points_per_s"}


def test_bench_reports_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--data", str(tmp_path / "nowhere")]) != 0
    assert "error:" in capsys.readouterr().err


def test_default_data_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WARROOM_NAB_DIR", str(tmp_path))
    assert bench.default_data_dir() == tmp_path
    monkeypatch.delenv("WARROOM_NAB_DIR")
    assert bench.default_data_dir().parts[-3:] == ("shared", "datasets", "nab")


@pytest.mark.slow
def test_full_bench(nab_dir: Path) -> None:
    report = bench.run(nab_dir, as_json=False)
    assert report["baseline"]["standard"] == pytest.approx(39.65, abs=0.01)
    assert report["standard"] > report["baseline"]["standard"]
    # Regression guard for the default detector (70.31 / 61.81 / 75.32 when this was written).
    assert report["standard"] >= 70.0 and report["low_fp"] >= 60.0 and report["low_fn"] >= 74.0
