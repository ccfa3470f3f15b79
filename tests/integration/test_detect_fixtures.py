"""Detection on every fixture scenario, against its ground truth (issue #3's acceptance check).

* every injected fault raises at least one alert on an affected service within 3 steps of its start;
* outside the faults (the normal stretches, and harmless flapping) no service gets more than one
  alert episode per simulated day.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.eval_detect import evaluate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCENARIOS = [
    "baseline",
    "bad_deploy",
    "dependency_latency",
    "cpu_saturation",
    "memory_leak",
    "flapping",
    "mixed",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_faults_are_caught_and_normal_stretches_stay_quiet(store: Any, tmp_path: Path, scenario: str) -> None:
    result = evaluate(store, scenario, tmp_path, seed=7, rate=3.0, within_steps=3)
    timeline = [(a.starts_at.strftime("%H:%M"), a.service, a.title) for a in result.alerts]
    assert result.caught == result.faults, (
        f"{scenario}: fault delays {result.delays_steps}; alerts {timeline}"
    )
    noisy = {svc: n for svc, n in result.quiet_alerts.items() if n > result.allowed_per_service}
    assert not noisy, f"{scenario}: too many alerts outside faults {noisy}; alerts {timeline}"
