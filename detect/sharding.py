"""Detection sharding (issue #7): series split over N detect workers, each series scored by exactly one.

A worker is configured with its shard ``I/N`` (``WARROOM_DETECT_SHARD``, default ``0/1`` = every
series). After fetching, :class:`~detect.run.DetectRunner` keeps only the series its shard
:meth:`Shard.owns`, before any detector sees them, so a worker's saved state only ever holds series
it owns and N workers together score every series exactly once.

**Why the hash is stable.** Workers never talk to each other about who scores what: each one decides
ownership alone, from the series key. That only adds up to "exactly one" if every process computes
the same answer, and a restarted worker must get its own series back (their detector state lives in
its state file). Python's ``hash()`` of a ``str`` is salted per process (``PYTHONHASHSEED``), so it
would give each worker — and each restart — a different split. We use the first 8 bytes of SHA-256
instead: the same on every machine, Python version and run.

**Why the service, not the whole series key, is hashed.** Detection is not purely per series:
layer 2 scores a *service's* feature vector built from all of that service's series at a step, an
edge ``caller->callee`` is corroborated by the callee's model, and SLO burn rates combine a service's
request rate and error ratio (:mod:`detect.alerting`). Hashing :func:`~detect.alerting.service_of`
keeps every series of a service (its edges in, its log templates, its metrics) on one shard, so N
shards together open exactly the alerts one unsharded worker would. The price is granularity: the
unit of balance is a service, so one very large service is not split across workers.

Changing N moves series between shards (plain modulo, not consistent hashing): a resized worker
starts the series it gains from scratch (after ``history`` of warm-up), which is acceptable for a
rare, deliberate operation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from detect.alerting import service_of
from warroom.config import parse_shard
from warroom.model import Series, SeriesKey

__all__ = ["Shard", "shard_hash"]

_S = TypeVar("_S", bound=Series)


def shard_hash(key: SeriesKey) -> int:
    """The stable 64-bit hash ownership is decided on: SHA-256 of the series' service, first 8 bytes."""
    digest = hashlib.sha256(service_of(key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``); ``Shard(0, 1)`` owns everything."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        parse_shard(f"{self.index}/{self.count}")  # one validation, shared with the setting

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` → ``Shard(I, N)``; :class:`ValueError` saying what is wrong otherwise."""
        index, count = parse_shard(text)
        return cls(index, count)

    @property
    def sharded(self) -> bool:
        """More than one shard: the caller must keep this shard's state apart from the others'."""
        return self.count > 1

    @property
    def tag(self) -> str:
        """``0of2``: for file names (state files of shards sharing one home must differ)."""
        return f"{self.index}of{self.count}"

    def owns(self, key: SeriesKey) -> bool:
        return self.count == 1 or shard_hash(key) % self.count == self.index

    def split(self, series: Iterable[_S]) -> tuple[list[_S], int]:
        """(the series this shard owns, in their order; how many were skipped as not owned)."""
        owned: list[_S] = []
        skipped = 0
        for s in series:
            if self.owns(s.key):
                owned.append(s)
            else:
                skipped += 1
        return owned, skipped

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
