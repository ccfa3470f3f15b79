"""Fault injection for crash tests: ``WARROOM_FAILPOINTS="name:N[,name:N]"`` kills the process
(``os._exit(137)``, like SIGKILL: no flush, no commit, no cleanup) the N-th time ``hit(name)`` runs.

Unset in production, where ``hit`` is one dictionary lookup. Named points:

* ``ingest.after_insert`` — rows are in ClickHouse, the Kafka offset is not committed yet;
* ``ingest.after_ledger`` — the ledger entry exists, the insert has not happened.
"""

from __future__ import annotations

import os
import sys

_COUNTS: dict[str, int] = {}


def _armed() -> dict[str, int]:
    spec = os.environ.get("WARROOM_FAILPOINTS", "")
    armed: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition(":")
        armed[name] = int(count or "1")
    return armed


_ARMED = _armed()


def hit(name: str) -> None:
    if name not in _ARMED:
        return
    _COUNTS[name] = _COUNTS.get(name, 0) + 1
    if _COUNTS[name] >= _ARMED[name]:
        sys.stderr.write(f"failpoint {name} hit: exiting like SIGKILL\n")
        sys.stderr.flush()
        os._exit(137)
