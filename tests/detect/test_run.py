"""`warroom detect run` end to end on a fixture scenario: series → detectors → alerts table, resumable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.eval_detect import START, load
from detect.run import TEMPLATE_IDS, DetectRunner, RunConfig
from warroom import alerts as alert_store
from warroom import schema as s


@pytest.mark.slow
def test_bad_deploy_is_caught_written_and_resumable(store: Any, tmp_path: Path) -> None:
    import fixtures

    duration = timedelta(minutes=100)
    load(store, "bad_deploy", seed=11, duration=duration, rate=3.0)
    truth = fixtures.ground_truth(
        "bad_deploy", seed=11, start=START, duration=duration, step=timedelta(minutes=1), rate=3.0
    )
    fault = truth.faults[0]

    whole = DetectRunner(store, tmp_path / "whole.json", RunConfig())
    result = whole.run(START + timedelta(minutes=30), START + duration)
    caught = [
        a
        for a in result.opened
        if a.service == "checkout" and a.starts_at <= fault.start + timedelta(minutes=3)
    ]
    assert caught, [(a.starts_at, a.title) for a in result.opened]
    assert all(a.starts_at >= fault.start - timedelta(minutes=1) for a in result.opened), (
        "false alarm before the fault"
    )
    alert = caught[0]
    assert alert.findings and alert.evidence.values and alert.evidence.trace_ids
    stored = alert_store.read(store, START)
    assert {a.fingerprint for a in stored} >= {a.fingerprint for a in result.opened}

    # every log row can be joined to its template id
    unmatched = store.scalar(
        f"SELECT countIf(t.TemplateId = '') FROM {store.table(s.LOGS)} AS l "
        f"LEFT JOIN {store.table(TEMPLATE_IDS)} AS t ON t.BodyHash = cityHash64(l.Body) "
        "AND t.ServiceName = l.ServiceName"
    )
    assert unmatched == 0

    # two consecutive runs (stopping and reloading state in between) open the same alerts
    split = START + timedelta(minutes=75)
    first = DetectRunner(store, tmp_path / "split.json", RunConfig()).run(
        START + timedelta(minutes=30), split
    )
    second = DetectRunner(store, tmp_path / "split.json", RunConfig()).run(split, START + duration)
    key = sorted((a.fingerprint, a.starts_at) for a in result.opened)
    assert sorted((a.fingerprint, a.starts_at) for a in first.opened + second.opened) == key
