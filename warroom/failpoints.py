"""Fault injection for crash and outage tests, armed by ``WARROOM_FAILPOINTS`` (comma-separated).

Unset in production, where :func:`hit` and :func:`down` are one dictionary lookup each.

``name:N`` — *crash*: the N-th time ``hit(name)`` runs, the process ends with ``os._exit(137)``,
like SIGKILL: no flush, no commit, no cleanup. Named crash points:

* ``ingest.after_insert`` — rows are in ClickHouse, the Kafka offset is not committed yet;
* ``ingest.after_ledger`` — the ledger entry exists, the insert has not happened.
* ``correlate.before_commit`` — the correlator grouped newly arrived alerts and queued their
  notices; the transaction recording it has not committed (the leader dies at its worst moment).

``name@PATH`` — *outage*: ``down(name)`` is true while the file ``PATH`` exists, so a test switches
a dependency off and on for a real process by creating and deleting a file. Named outage points:

* ``store.unavailable`` — every ClickHouse call fails as a refused connection does (a retryable
  :class:`~warroom.errors.StoreError`, see :func:`warroom.clickhouse.connect`). This machine has no
  ClickHouse server to stop, and the embedded engine cannot be made unreachable from outside; the
  fault enters where a real outage would surface, so everything above it (retries, back-off,
  paused consumption, status) runs as it would.
"""

from __future__ import annotations

import os
import sys

_COUNTS: dict[str, int] = {}


def _armed(spec: str) -> tuple[dict[str, int], dict[str, str]]:
    crashes: dict[str, int] = {}
    outages: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, at, path = part.partition("@")
        if at:
            outages[name] = path
            continue
        name, _, count = part.partition(":")
        crashes[name] = int(count or "1")
    return crashes, outages


_ARMED, _OUTAGES = _armed(os.environ.get("WARROOM_FAILPOINTS", ""))


def hit(name: str) -> None:
    if name not in _ARMED:
        return
    _COUNTS[name] = _COUNTS.get(name, 0) + 1
    if _COUNTS[name] >= _ARMED[name]:
        sys.stderr.write(f"failpoint {name} hit: exiting like SIGKILL\n")
        sys.stderr.flush()
        os._exit(137)


def down(name: str) -> bool:
    """Whether the outage point ``name`` is switched on (its file exists)."""
    path = _OUTAGES.get(name)
    return path is not None and os.path.exists(path)
