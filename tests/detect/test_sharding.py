"""Detection sharding (issue #7): 2 detect shards → every series scored by exactly one shard.

Pure unit tests of :class:`detect.sharding.Shard` (parsing, stability across processes, an even
exact partition), the setting, and one run of the real :class:`detect.run.DetectRunner` on a fixture
scenario in the embedded store: shards 0/2 and 1/2 score disjoint sets of series whose union is what
an unsharded run scores, and together open exactly the unsharded run's alerts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from detect.alerting import service_of
from detect.run import DetectRunner, RunConfig, state_file
from detect.sharding import Shard
from warroom.config import load_settings
from warroom.errors import ConfigError, InputError
from warroom.model import SeriesKey, SignalKind

ROOT = Path(__file__).resolve().parents[2]


def _keys(n_services: int = 400) -> list[SeriesKey]:
    """Series of many services: service-level, per-operation, edges into them, metrics."""
    out: list[SeriesKey] = []
    for i in range(n_services):
        svc = f"svc-{i}"
        out.append(SeriesKey(SignalKind.REQUEST_RATE, svc))
        out.append(SeriesKey(SignalKind.ERROR_RATIO, svc))
        out.append(SeriesKey(SignalKind.LATENCY_P95, svc, (("operation", f"GET /{i}"),)))
        out.append(SeriesKey(SignalKind.REQUEST_RATE, f"svc-{(i + 1) % n_services}->{svc}"))
        out.append(SeriesKey(SignalKind.METRIC, svc, (("metric", "cpu"),)))
    return out


# -- parsing and validation ------------------------------------------------------------------------


def test_parse_accepts_i_of_n() -> None:
    assert Shard.parse("0/1") == Shard(0, 1) == Shard()
    assert Shard.parse(" 1 / 2 ") == Shard(1, 2)
    assert str(Shard.parse("3/8")) == "3/8"
    assert Shard(1, 2).tag == "1of2" and Shard(1, 2).sharded and not Shard().sharded


@pytest.mark.parametrize("text", ["", "1", "x/2", "1/y", "1/2/3", "2/2", "5/2", "-1/2", "0/0", "0/-1"])
def test_parse_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        Shard.parse(text)


def test_constructor_validates_too() -> None:
    with pytest.raises(ValueError, match="shard index"):
        Shard(2, 2)
    with pytest.raises(ValueError, match="shard count"):
        Shard(0, 0)


def test_setting_default_env_and_errors() -> None:
    assert load_settings(env={}).detect_shard == "0/1"
    assert load_settings(env={"WARROOM_DETECT_SHARD": " 1/ 2"}).detect_shard == "1/2"
    for bad in ("2/2", "0/0", "half"):
        with pytest.raises(ConfigError, match="WARROOM_DETECT_SHARD") as err:
            load_settings(env={"WARROOM_DETECT_SHARD": bad})
        assert "shard" in str(err.value) or "I/N" in str(err.value)


def test_state_file_names_keep_shards_apart(tmp_path: Path) -> None:
    assert state_file(tmp_path, Shard()) == tmp_path / "state" / "detect.json"  # unchanged unsharded
    names = {state_file(tmp_path, Shard(i, 2)).name for i in range(2)}
    assert names == {"detect-0of2.json", "detect-1of2.json"}


# -- ownership -------------------------------------------------------------------------------------


def test_every_key_owned_by_exactly_one_shard_and_split_is_even() -> None:
    keys = _keys()
    for count in (1, 2, 3, 5):
        shards = [Shard(i, count) for i in range(count)]
        owners = [[sh.index for sh in shards if sh.owns(k)] for k in keys]
        assert all(len(o) == 1 for o in owners)
        per_shard = Counter(o[0] for o in owners)
        expected = len(keys) / count
        # 400 services in units of 5 series: a fair split stays well within ±25 % at these sizes.
        assert all(abs(per_shard[i] - expected) <= 0.25 * expected for i in range(count)), per_shard


def test_a_service_and_everything_of_it_stay_on_one_shard() -> None:
    """Layer 2 and SLOs combine a service's series (edges count for the callee): never split them."""
    by_service: dict[str, set[int]] = {}
    for key in _keys(50):
        owner = next(i for i in range(3) if Shard(i, 3).owns(key))
        by_service.setdefault(service_of(key), set()).add(owner)
    assert all(len(owners) == 1 for owners in by_service.values())


def test_ownership_is_the_same_in_another_process() -> None:
    """Workers agree without talking, and a restart keeps its series: not Python's salted hash()."""
    keys = _keys(100)
    here = [next(i for i in range(4) if Shard(i, 4).owns(k)) for k in keys]
    script = (
        "import json, sys\n"
        "from detect.sharding import Shard\n"
        "from warroom.model import SeriesKey, SignalKind\n"
        "keys = [SeriesKey(SignalKind(k), e, tuple(map(tuple, ls))) for k, e, ls in json.load(sys.stdin)]\n"
        "print(json.dumps([next(i for i in range(4) if Shard(i, 4).owns(k)) for k in keys]))\n"
    )
    payload = json.dumps([[k.kind.value, k.entity, k.labels] for k in keys])
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=payload,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == here


# -- the runner ------------------------------------------------------------------------------------


def test_state_of_another_shard_is_refused(store: Any, tmp_path: Path) -> None:
    path = tmp_path / "detect.json"
    DetectRunner(store, path, RunConfig(shard=Shard(0, 2))).save()
    with pytest.raises(InputError, match="belongs to shard 0/2"):
        DetectRunner(store, path, RunConfig(shard=Shard(1, 2)))
    with pytest.raises(InputError, match="belongs to shard 0/2"):
        DetectRunner(store, path, RunConfig())


@pytest.mark.integration
def test_two_shards_score_every_series_exactly_once(store: Any, tmp_path: Path) -> None:
    from app.eval_detect import START, load

    duration = timedelta(minutes=60)
    load(store, "bad_deploy", seed=5, duration=duration, rate=1.0)
    start, end = START + timedelta(minutes=30), START + duration

    def run(shard: Shard) -> Any:
        return DetectRunner(store, state_file(tmp_path, shard), RunConfig(shard=shard)).run(start, end)

    whole = run(Shard())
    parts = [run(Shard(i, 2)) for i in range(2)]

    everything = {k.fingerprint() for k in whole.keys}
    scored = [{k.fingerprint() for k in p.keys} for p in parts]
    assert whole.not_owned == 0 and len(everything) == whole.series
    assert all(scored), "each shard should own some of the scenario's series"
    assert not scored[0] & scored[1]
    assert scored[0] | scored[1] == everything
    assert [p.not_owned for p in parts] == [len(scored[1]), len(scored[0])]

    # Cross-series detection (layer 2, SLOs) is per service and a service never straddles shards,
    # so the shards together open exactly the unsharded run's alerts.
    key = sorted((a.fingerprint, a.starts_at, a.title) for a in whole.opened)
    assert key, "the scenario should open alerts"
    assert sorted((a.fingerprint, a.starts_at, a.title) for p in parts for a in p.opened) == key
