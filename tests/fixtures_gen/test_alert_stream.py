"""The recorded alert streams: deterministic per seed, truth for every alert, no truth in the labels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from fixtures.alert_stream import AlertStream, fingerprint_digest, generate_stream, load_stream, shop_edges
from warroom.errors import InputError


@pytest.fixture(scope="module")
def stream() -> AlertStream:
    return generate_stream(seed=3, rounds=1)


def test_deterministic_per_seed(stream: AlertStream) -> None:
    assert fingerprint_digest(generate_stream(seed=3, rounds=1)) == fingerprint_digest(stream)
    assert fingerprint_digest(generate_stream(seed=4, rounds=1)) != fingerprint_digest(stream)


def test_truth_covers_every_alert_and_names_roots(stream: AlertStream) -> None:
    occurrences = {(a.fingerprint, a.starts_at) for a in stream.alerts}
    assert occurrences == set(stream.truth)
    assert set(stream.truth.values()) <= set(stream.groups)
    assert len(stream.faults) == 12
    assert all(f.root_cause_service for f in stream.faults)
    kinds = Counter(stream.groups[g].kind for g in set(stream.truth.values()))
    assert kinds["noise"] >= 1 and kinds["flapping"] >= 2
    # Every flapping group fires its one series repeatedly.
    for gid, group in stream.groups.items():
        if group.kind == "flapping":
            fps = {fp for (fp, _), g in stream.truth.items() if g == gid}
            occurrences_of = sum(1 for g in stream.truth.values() if g == gid)
            assert len(fps) == 1 and occurrences_of >= 3


def test_alerts_look_like_the_detectors(stream: AlertStream) -> None:
    resolved = [a for a in stream.alerts if a.ends_at is not None]
    assert resolved and len(stream.alerts) > len(stream.truth)  # re-sends and resolves are versions
    services = {s for e in shop_edges() for s in e[:2]}
    for alert in stream.alerts:
        assert alert.labels["signal"] and alert.title
        assert alert.starts_at.second == 0  # the detector's one-minute step
        assert not any("F1" in v or "noise" in v for v in alert.labels.values())
        if "edge" in alert.labels:
            caller, callee = alert.labels["edge"].split("->")
            assert alert.service == callee and caller in services
    deploys = [a for a in stream.alerts if a.labels.get("signal") == "new_log_template"]
    assert deploys and all("<*>" in a.labels["template"] or a.labels["template"] for a in deploys)


def test_write_and_load_round_trip(stream: AlertStream, tmp_path: Path) -> None:
    alerts_path, truth_path = stream.write(tmp_path)
    again = load_stream(alerts_path, truth_path)
    assert fingerprint_digest(again) == fingerprint_digest(stream)
    truth_path.write_text('{"format": 1, "groups": [], "alerts": []}')
    with pytest.raises(InputError, match="no truth"):
        load_stream(alerts_path, truth_path)
