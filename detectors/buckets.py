"""Cumulative bucket counts of a duration, kept in a monitor's state. Pure: no I/O.

A monitor's label delays and window test times belong to the model, not to the worker
process: kept in its checkpoint, they move with the model to whichever worker owns it,
and the streams layer exposes them as Prometheus histograms at scrape time instead of
paying a metrics call per label.
"""
from __future__ import annotations

from bisect import bisect_left

# seconds: label delays span seconds to weeks
DELAY_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0)
# seconds: one window's tests take milliseconds to seconds
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BucketCounts:
    """Counts of observations at or below each upper bound (Prometheus ``le``), and their sum.

    >>> b = BucketCounts((1.0, 10.0))
    >>> for value in (0.5, 1.0, 3.0, 50.0):
    ...     b.observe(value)
    >>> b.cumulative(), b.count, b.total
    ([2, 3, 4], 4, 54.5)
    """

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)   # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def cumulative(self) -> list[int]:
        """Counts at or below each bound, then the total count (the +Inf bucket)."""
        running, out = 0, []
        for n in self._counts:
            running += n
            out.append(running)
        return out

    def to_state(self) -> dict:
        return {"bounds": list(self.bounds), "counts": list(self._counts), "total": self.total}

    @classmethod
    def from_state(cls, state: dict) -> "BucketCounts":
        buckets = cls(state["bounds"])
        buckets._counts = list(state["counts"])
        buckets.total = state["total"]
        return buckets
