"""`make demo` is the first thing a new user runs: it completes, shows detection, correlation and
the incident summaries, and runs again in the same home (a fresh broker reuses offsets; the demo
must not trip over its own exactly-once ledger or ClickHouse's insert deduplication)."""

from __future__ import annotations

import pytest

from tests.conftest import run_warroom

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_end_to_end_twice_in_one_home(env: dict[str, str]) -> None:
    for run in range(2):
        done = run_warroom(["demo", "--duration", "2h", "--rate", "1.5"], env, timeout=400)
        assert done.returncode == 0, (run, done.stderr[-3000:])
        out = done.stdout
        assert "[6/7] warroom correlate run" in out, out[-3000:]
        assert "root cause checkout" in out, out[-3000:]  # the bad deploy's service
        assert "alert(s) →" in out and "incident(s)" in out
        assert "[7/7] warroom summarize" in out, out[-3000:]
        assert "checkout: bad deploy" in out, out[-3000:]  # the digest names service and kind
        assert "proposed rollback_deployment" in out, out[-3000:]
