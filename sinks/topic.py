"""Alerts onto a Kafka topic, through a ``send`` the streams layer supplies."""
from __future__ import annotations

from typing import Awaitable, Callable

from sinks.base import to_json

Send = Callable[[bytes, bytes], Awaitable[object]]


class TopicSink:
    """Publish each alert keyed by model, so one model's alerts stay in order.

    ``send(key, value)`` is an async callable from the streams layer (for example a
    wrapper around ``topic.send``); this module never imports faust. Closing the
    producer is the streams layer's business, so ``close`` does nothing.
    """

    def __init__(self, send: Send, name: str = "kafka"):
        self.send = send
        self.name = name

    async def __call__(self, record: dict) -> None:
        await self.send(str(record["model"]).encode(), to_json(record))

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"TopicSink(name={self.name!r})"
