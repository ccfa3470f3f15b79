"""The alerts table and the Alertmanager webhook conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from warroom import alerts
from warroom.errors import InputError
from warroom.model import Alert, Evidence, Finding, Severity

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

AM_PAYLOAD = {
    "version": "4",
    "groupKey": '{}:{alertname="HighLatency"}',
    "status": "firing",
    "receiver": "warroom",
    "commonLabels": {"alertname": "HighLatency", "cluster": "prod"},
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighLatency", "service": "checkout", "severity": "page", "pod": "co-1"},
            "annotations": {"summary": "p99 above 2s", "runbook_url": "https://runbooks/latency"},
            "startsAt": "2026-03-01T12:00:00.000Z",
            "endsAt": "2026-03-01T12:09:00Z",
            "fingerprint": "a1b2c3",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "DiskFull", "job": "postgres", "severity": "bogus"},
            "startsAt": "2026-03-01T11:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
        },
    ],
}


def test_alertmanager_payload_converts() -> None:
    converted = alerts.from_alertmanager(AM_PAYLOAD, received_at=T0 + timedelta(minutes=1))
    first, second = converted
    assert first.fingerprint == "am:a1b2c3" and first.title == "HighLatency: p99 above 2s"
    assert first.severity is Severity.CRITICAL and first.service == "checkout" and first.firing
    assert first.labels["cluster"] == "prod" and first.labels["signal"] == "external"
    assert second.severity is Severity.INFO and second.service == "postgres" and not second.firing
    again = alerts.from_alertmanager(AM_PAYLOAD)[1]
    assert again.fingerprint == second.fingerprint  # stable without Alertmanager's fingerprint


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "must be a JSON object"),
        ({"alerts": {}}, "'alerts' must be a list"),
        ({"alerts": [{"labels": {}}]}, "'alertname' is required"),
        ({"alerts": [{"labels": {"alertname": "x"}, "startsAt": "yesterday"}]}, "not an RFC 3339 time"),
        ({"alerts": [{"labels": {"alertname": "x", "n": 1}}]}, "object of string values"),
        ({"alerts": [{"labels": {"alertname": "x"}, "status": "pending"}]}, "expected firing or resolved"),
    ],
)
def test_bad_alertmanager_payloads_are_clear_input_errors(payload: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        alerts.from_alertmanager(payload)


def test_write_read_round_trip_and_versions(store: Any) -> None:
    alert = Alert(
        fingerprint="fp1",
        title="checkout error ratio 24.7% (baseline 1.5%)",
        severity=Severity.CRITICAL,
        starts_at=T0,
        score=0.93,
        labels={"service": "checkout", "signal": "error_ratio", "host.name": "node-2"},
        findings=(Finding("robust_z", "L1", 0.93, observed=0.247, baseline=0.015),),
        evidence=Evidence(window_start=1772366400, values=(0.01, None, 0.3), trace_ids=("ab" * 16,)),
        updated_at=T0,
    )
    alerts.write(store, [alert])
    resolved = Alert(
        **{
            **{f: getattr(alert, f) for f in alert.__dataclass_fields__},
            "ends_at": T0 + timedelta(minutes=9),
            "updated_at": T0 + timedelta(minutes=9),
        }
    )
    alerts.write(store, [resolved])
    (got,) = alerts.read(store, T0 - timedelta(hours=1))
    assert got == resolved
    assert alerts.read(store, T0 - timedelta(hours=1), firing_only=True) == []
    am = alerts.from_alertmanager(AM_PAYLOAD, received_at=T0)
    alerts.write(store, am)
    assert {a.source for a in alerts.read(store, T0 - timedelta(hours=2))} == {"warroom", "alertmanager"}
