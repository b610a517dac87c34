"""How often a worker's Python collects cyclic garbage: rarely, and never through what start-up built.

A worker keeps many container objects alive for a while (decoded events until their batch is
forwarded, predictions waiting for their labels, Faust's and aiokafka's records), and CPython's
default thresholds (700, 10, 10) run a young collection every 700 allocations, which walks them
again and again as they age into the older generations. ``python -m bench.decode_cost`` against
``python -m bench.decode_cost --gc-thresholds 50000,50,100`` shows what that costs in a process
holding one data set (1,000-event messages, 2026-12-04): a typed prediction decode 7.3 -> 3.5 µs,
a label 4.5 -> 0.6 µs per event. In the worker, ``python -m bench.throughput`` side by side: 1.4-2.0x
the events per second (BENCHMARKS.md, section 9, session 12). Almost everything a worker frees goes at once by
reference counting; the collector only finds cycles (asyncio's futures and tracebacks, mostly), so
collecting them less often holds a little more garbage, not more live data
(``tests/reliability/test_memory.py`` keeps the worker's memory flat).

:func:`apply` also freezes what exists when the worker starts (modules, classes, the app and its
settings: ``gc.freeze``), so no collection walks it again.
"""
from __future__ import annotations

import gc

__all__ = ["apply"]


def apply(thresholds: list[int]) -> tuple[int, ...]:
    """Set the collector's thresholds (``[]``: leave CPython's) and freeze what exists now; returns
    the thresholds in force.

    >>> before = gc.get_threshold()
    >>> apply([50_000, 50, 100])
    (50000, 50, 100)
    >>> apply(list(before)) == before
    True
    """
    if thresholds:
        gc.set_threshold(*thresholds)
    gc.freeze()
    return gc.get_threshold()
