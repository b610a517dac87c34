"""Shared helpers for sink tests: records, a fake sink, polling without hanging."""
from __future__ import annotations

import asyncio
import time


def make_record(i: int = 0, **overrides) -> dict:
    record = {
        "alert_id": f"a-{i:04d}",
        "model": "fraud",
        "model_version": 3,
        "kind": "input_drift",
        "severity": "warning",
        "created_at": 1_700_000_000.0 + i,
        "feature": "amount",
        "statistic": 0.31,
        "seq": i,
    }
    record.update(overrides)
    return record


class CollectSink:
    """Delivers into a list; can be told to fail its first ``fail_first`` attempts."""

    def __init__(self, name: str = "collect", fail_first: int = 0):
        self.name = name
        self.fail_first = fail_first
        self.attempts = 0
        self.seen: list[dict] = []
        self.closed = False

    async def __call__(self, record: dict) -> None:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            raise ConnectionError(f"attempt {self.attempts} refused")
        self.seen.append(record)

    async def close(self) -> None:
        self.closed = True


async def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until true; fails the test (TimeoutError) instead of hanging."""
    async def poll():
        while not predicate():
            await asyncio.sleep(interval)

    await asyncio.wait_for(poll(), timeout)


def elapsed(since: float) -> float:
    return time.perf_counter() - since
