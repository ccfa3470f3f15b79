"""Shared fixtures for the detect tests: synthetic series and the NAB location."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from detect.nab.bench import default_data_dir


def noisy_series(
    n: int, seed: int = 7, period: int = 96, amp: float = 1.0, noise: float = 0.3
) -> list[float]:
    rng = random.Random(seed)
    return [10.0 + amp * math.sin(2 * math.pi * i / period) + rng.gauss(0.0, noise) for i in range(n)]


@pytest.fixture(scope="session")
def nab_dir() -> Path:
    path = default_data_dir()
    if not (path / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"NAB corpus not found at {path} (set WARROOM_NAB_DIR)")
    return path
