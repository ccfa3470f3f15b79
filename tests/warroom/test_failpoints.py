"""The fault switches of the crash and outage tests: the spec parses, an outage point follows its
file, and ``store.unavailable`` fails ClickHouse calls the way a refused connection does."""

from __future__ import annotations

from pathlib import Path

import pytest

from warroom import failpoints
from warroom.clickhouse import ClickHouse
from warroom.errors import StoreError


def test_spec_arms_crash_counts_and_outage_files() -> None:
    crashes, outages = failpoints._armed(
        "ingest.after_insert:4, store.unavailable@/tmp/x,ingest.after_ledger"
    )
    assert crashes == {"ingest.after_insert": 4, "ingest.after_ledger": 1}
    assert outages == {"store.unavailable": "/tmp/x"}


def test_store_unavailable_while_its_file_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = tmp_path / "down"
    monkeypatch.setattr(failpoints, "_OUTAGES", {"store.unavailable": str(flag)})
    store = ClickHouse("chdb://" + str(tmp_path / "never-opened"), "otel")
    assert not failpoints.down("store.unavailable")
    flag.touch()
    assert failpoints.down("store.unavailable") and not failpoints.down("ingest.after_insert")
    with pytest.raises(StoreError, match="Connection refused") as raised:
        store.rows("SELECT 1")
    assert raised.value.retryable  # what the retry loops wait out
    assert not (tmp_path / "never-opened").exists()  # failed before the engine was touched
