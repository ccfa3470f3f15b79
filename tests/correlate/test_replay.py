"""Offline replay: a hand-built JSONL alert stream over the fixture shop → incidents JSONL."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from correlate.replay import ReplaySummary, replay
from correlate.topology import Edge, Topology, make_topology
from warroom.alert_json import alert_from_json, alert_to_json
from warroom.errors import InputError
from warroom.model import Alert, Evidence, Finding, Severity

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

SHOP = [
    ("frontend", "checkout", "rpc"),
    ("checkout", "payment", "rpc"),
    ("payment", "postgres", "db"),
    ("frontend", "cart", "rpc"),
    ("cart", "redis", "db"),
    ("frontend", "catalog", "rpc"),
    ("catalog", "postgres", "db"),
    ("checkout", "inventory", "rpc"),
    ("checkout", "shipping", "rpc"),
    ("frontend", "recommendation", "rpc"),
    ("recommendation", "catalog", "rpc"),
]


@pytest.fixture(scope="module")
def shop() -> Topology:
    edges = [Edge(a, b, kind, 1000, 10.0, 0.001, 50.0) for a, b, kind in SHOP]  # type: ignore[arg-type]
    return make_topology(T0 - timedelta(hours=1), T0, edges)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def rec(
    fp: str, title: str, minutes: float, score: float, severity: str = "warning", **labels: str
) -> dict[str, Any]:
    return {
        "fingerprint": fp,
        "title": title,
        "severity": severity,
        "starts_at": at(minutes),
        "score": score,
        "labels": {k.replace("_", "."): v for k, v in labels.items()},
    }


def stream() -> list[dict[str, Any]]:
    """A postgres slowdown at T0, a bad checkout deploy 30 minutes later, one re-send, one resolve."""
    p95 = "latency_p95"
    postgres = [
        rec(
            "pg1",
            "payment->postgres latency p95 high",
            0,
            0.95,
            service="payment",
            edge="payment->postgres",
            signal=p95,
        ),
        rec(
            "pg2",
            "catalog->postgres latency p95 high",
            0.5,
            0.9,
            service="catalog",
            edge="catalog->postgres",
            signal=p95,
        ),
        rec("pg3", "payment latency p95 high", 1, 0.8, service="payment", signal=p95, host_name="node-a"),
        rec("pg4", "checkout latency p95 high", 2, 0.7, service="checkout", signal=p95),
        rec("pg5", "frontend latency p95 high", 3, 0.6, "page", service="frontend", signal=p95),
    ]
    deploy = [
        rec(
            "dp1",
            "checkout error ratio high",
            30,
            0.9,
            "critical",
            service="checkout",
            signal="error_ratio",
            service_version="2.4.0",
        ),
        {
            **rec(
                "dp2",
                "checkout new error log template",
                30,
                0.7,
                service="checkout",
                signal="new_log_template",
                service_version="2.4.0",
                template="NullPointerException in CartMapper.toOrder <*>",
            ),
            "findings": [{"detector": "drain", "layer": "L1", "score": 0.7, "detail": "new template"}],
        },
        rec("dp3", "frontend error ratio high", 31, 0.6, service="frontend", signal="error_ratio"),
    ]
    resend = {**postgres[3], "score": 0.75, "updated_at": at(2.5)}
    resolve = {**deploy[2], "ends_at": at(40), "updated_at": at(40), "unknown_key": "ignored"}
    return [*postgres, *deploy, resend, resolve]


def write_lines(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_groups_two_faults_and_ranks_root_causes(tmp_path: Path, shop: Topology) -> None:
    out = tmp_path / "incidents.jsonl"
    summary = replay(write_lines(tmp_path / "alerts.jsonl", stream()), out, shop)
    assert summary == ReplaySummary(alerts=10, incidents=2, duplicates=2, compression=0.8)
    first, second = load(out)
    assert first["fingerprints"] == ["pg1", "pg2", "pg3", "pg4", "pg5"]
    assert first["alert_count"] == 5 and first["status"] == "open"
    assert first["severity"] == "critical"  # "page" → critical, max of members
    assert first["started_at"] == "2026-11-01T12:00:00Z"
    assert first["services"] == ["catalog", "checkout", "frontend", "payment", "postgres"]
    assert [c["service"] for c in first["root_causes"]][:1] == ["postgres"]
    assert len(first["root_causes"]) == 3
    assert "earliest anomaly" in first["root_causes"][0]["reasons"]

    assert second["fingerprints"] == ["dp1", "dp2", "dp3"]
    assert second["status"] == "open"  # dp1, dp2 still firing after dp3 resolved
    assert second["root_causes"][0]["service"] == "checkout"
    assert any(r.startswith("new log template at onset") for r in second["root_causes"][0]["reasons"])

    # "Why grouped here": every record that touched the incident, with per-candidate factors.
    decisions = first["decisions"]
    assert [(d["fingerprint"], d["joined"], d["duplicate"]) for d in decisions] == [
        ("pg1", False, False), ("pg2", True, False), ("pg3", True, False),
        ("pg4", True, False), ("pg4", True, True), ("pg5", True, False),
    ]  # fmt: skip
    assert "no open incident" in decisions[0]["reason"]
    factors = decisions[2]["candidates"][0]["factors"]
    assert set(factors) == {"topology", "resources", "text", "time", "change"}
    assert factors["topology"] == 0.5  # one hop up from postgres, the incident's root
    assert second["decisions"][-1]["duplicate"] and "resolve" in second["decisions"][-1]["reason"]


def test_output_is_byte_identical_for_shuffled_input(tmp_path: Path, shop: Topology) -> None:
    records = stream()
    reference = tmp_path / "ref.jsonl"
    replay(write_lines(tmp_path / "a.jsonl", records), reference, shop)
    expected = reference.read_bytes()
    rng = random.Random(7)
    for n in range(5):
        shuffled = records[:]
        rng.shuffle(shuffled)
        out = tmp_path / f"out{n}.jsonl"
        replay(write_lines(tmp_path / f"a{n}.jsonl", shuffled), out, shop)
        assert out.read_bytes() == expected
    # Lines are canonical: sorted keys, one incident per line.
    for line in expected.decode().splitlines():
        assert line == json.dumps(json.loads(line), sort_keys=True)


def test_without_topology_and_empty_input(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    summary = replay(write_lines(tmp_path / "a.jsonl", stream()), out, None)
    assert summary.alerts == 10 and summary.duplicates == 2
    # Without a topology, proximity is known only for a shared service: 1 for a symptom it already
    # shows, 0.5 for a new kind of symptom; else 0.
    assert all(
        c["factors"]["topology"] in (0.0, 0.5, 1.0)
        for i in load(out)
        for d in i["decisions"]
        for c in d["candidates"]
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert replay(empty, out) == ReplaySummary(0, 0, 0, 0.0)
    assert out.read_bytes() == b""


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "line 2: malformed JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        (
            '{"title": "t", "severity": "info", "starts_at": "2026-11-01T12:00:00Z"}',
            "line 2: fingerprint: is required",
        ),
        (
            '{"fingerprint": "f", "title": "t", "severity": "info", "starts_at": "yesterday"}',
            "line 2: starts_at",
        ),
        (
            '{"fingerprint": "f", "title": "t", "severity": "info", "starts_at": "2026-11-01T12:00:00"}',
            "no UTC offset",
        ),
        (
            '{"fingerprint": "f", "title": "t", "severity": "info", "starts_at": "2026-11-01T12:00:00Z",'
            ' "labels": {"service": 3}}',
            "line 2: labels.service",
        ),
        (
            '{"fingerprint": "f", "title": "t", "severity": "info", "starts_at": "2026-11-01T12:00:00Z",'
            ' "ends_at": 5}',
            "line 2: ends_at",
        ),
        (
            '{"fingerprint": "f", "title": "t", "severity": "info", "starts_at": "2026-11-01T12:00:00Z",'
            ' "findings": [{"detector": "d", "layer": "L1"}]}',
            "line 2: findings[0].score",
        ),
        (
            '{"fingerprint": "f", "title": "t", "severity": "info", "starts_at": "2026-11-01T12:00:00Z",'
            ' "score": "high"}',
            "line 2: score",
        ),
    ],
)
def test_bad_lines_name_line_and_field(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(stream()[0]) + "\n" + line + "\n")
    with pytest.raises(InputError) as err:
        replay(path, tmp_path / "out.jsonl")
    assert needle in str(err.value)


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read alerts"):
        replay(tmp_path / "nope.jsonl", tmp_path / "out.jsonl")


def test_alert_json_round_trip() -> None:
    full = Alert(
        fingerprint="fp",
        title="checkout latency p95 high",
        severity=Severity.CRITICAL,
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=5, microseconds=250),
        score=0.8,
        labels={"service": "checkout", "signal": "latency_p95"},
        findings=(Finding("ewma", "L1", 0.8, 450.0, 120.0, "3.1 sigma"), Finding("rule", "L0", 1.0)),
        evidence=Evidence(60, 60, (1.0, None, 2.5), ("t1",), ("log a",), "tmpl <*>", "SELECT 1"),
        source="alertmanager",
        updated_at=T0 + timedelta(minutes=6),
    )
    minimal = Alert("m", "t", Severity.INFO, T0)
    for a in (full, minimal):
        data = alert_to_json(a)
        assert alert_from_json(json.loads(json.dumps(data)), 1) == a
    assert alert_to_json(full)["starts_at"] == "2026-11-01T12:00:00Z"
    # Offsets are normalised to UTC; unknown severities map via Severity.parse.
    obj = {"fingerprint": "x", "title": "t", "severity": "P1", "starts_at": "2026-11-01T13:00:00+01:00"}
    parsed = alert_from_json(obj, 3)
    assert parsed.starts_at == T0 and parsed.severity is Severity.CRITICAL


def test_resolve_is_applied_at_its_own_time(tmp_path: Path, shop: Topology) -> None:
    # pg1 resolves at minute 10; pg3 fired at minute 1, while the incident was still open, so it
    # joins — even though the resolve record shares pg1's starts_at and comes first in the file.
    pg1, _, pg3, *_ = stream()
    records = [{**pg1, "ends_at": at(10)}, pg1, pg3]
    out = tmp_path / "out.jsonl"
    summary = replay(write_lines(tmp_path / "a.jsonl", records), out, shop)
    assert summary.incidents == 1 and summary.duplicates == 1
    (incident,) = load(out)
    assert incident["fingerprints"] == ["pg1", "pg3"] and incident["status"] == "open"
    assert [d["fingerprint"] for d in incident["decisions"]] == ["pg1", "pg3", "pg1"]
