"""Keep the learned topology current: rebuild it from recent traces and version it when it changes.

Snapshots are saved every refresh (they carry per-edge rates that drift), and the correlator reads
the one in effect at the time it groups (:func:`~correlate.topology.load_latest`), cached briefly
because it is read once per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from correlate.topology import Topology, build_topology, diff, load_latest, save_snapshot
from warroom.clickhouse import ClickHouse

__all__ = ["TopologyCache", "refresh"]

log = logging.getLogger("warroom.correlate")


def refresh(store: ClickHouse, end: datetime, window: timedelta = timedelta(hours=1)) -> Topology | None:
    """Learn the topology of ``[end - window, end)`` and save it as a snapshot; None without traces."""
    learned = build_topology(store, end - window, end)
    if not learned.edges:
        return None
    previous = load_latest(store, end)
    change = diff(previous, learned)
    save_snapshot(store, learned)
    if change.changed:
        log.info(
            "topology changed",
            extra={
                "added": [f"{e.caller}->{e.callee}" for e in change.added],
                "removed": len(change.removed),
            },
        )
    return learned


class TopologyCache:
    """The snapshot in effect ``now()``, re-read at most every ``ttl`` seconds."""

    def __init__(self, store: ClickHouse, now: Callable[[], datetime], ttl: float = 60.0) -> None:
        self.store, self.now, self.ttl = store, now, ttl
        self._value: Topology | None = None
        self._read_at = float("-inf")

    def __call__(self) -> Topology | None:
        if time.monotonic() - self._read_at >= self.ttl:
            self._value = load_latest(self.store, self.now())
            self._read_at = time.monotonic()
        return self._value
