"""A fixed-size sliding window kept sorted, for O(1) rolling quantiles.

Insertion and eviction are a binary search plus one ``memmove`` of a contiguous list, which for the
window sizes used here (hundreds to a few thousand points) costs about a microsecond, far less than
recomputing a median or MAD from scratch on every point.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque

__all__ = ["SortedWindow"]


class SortedWindow:
    """The last ``size`` values, in arrival order and in sorted order."""

    __slots__ = ("size", "_fifo", "_sorted")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("window size must be >= 1")
        self.size = size
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._fifo)

    def add(self, x: float) -> None:
        self._fifo.append(x)
        insort(self._sorted, x)
        if len(self._fifo) > self.size:
            old = self._fifo.popleft()
            del self._sorted[bisect_left(self._sorted, old)]

    def quantile(self, q: float) -> float:
        """Linear-interpolated quantile (NumPy's default rule); the window must not be empty."""
        s = self._sorted
        pos = q * (len(s) - 1)
        lo = int(pos)
        if lo + 1 >= len(s):
            return s[-1]
        return s[lo] + (s[lo + 1] - s[lo]) * (pos - lo)

    def median(self) -> float:
        s = self._sorted
        n = len(s)
        mid = n // 2
        return s[mid] if n % 2 else 0.5 * (s[mid - 1] + s[mid])

    def values(self) -> list[float]:
        """Values in arrival order (oldest first), for state snapshots."""
        return list(self._fifo)

    def load(self, values: list[float]) -> None:
        self._fifo = deque(float(v) for v in values[-self.size :])
        self._sorted = sorted(self._fifo)
