"""Alerts onto a Kafka topic, through a ``send`` the streams layer supplies."""
from __future__ import annotations

from typing import Awaitable, Callable

from sinks.base import to_json
from sinks.cloudevents import CloudEventsEnvelope

Send = Callable[[bytes, bytes], Awaitable[object]]


class TopicSink:
    """Publish each alert keyed by model, so one model's alerts stay in order.

    ``send(key, value)`` is an async callable from the streams layer (for example a
    wrapper around ``topic.send``); this module never imports faust. Closing the
    producer is the streams layer's business, so ``close`` does nothing.
    """

    def __init__(self, send: Send, name: str = "kafka", envelope: CloudEventsEnvelope | None = None):
        if envelope is not None and envelope.mode != "structured":
            raise ValueError("a TopicSink sends values only: CloudEvents in structured mode")
        self.send = send
        self.name = name
        self.envelope = envelope

    async def __call__(self, record: dict) -> None:
        body = record if self.envelope is None else self.envelope.structured(record)
        await self.send(str(record["model"]).encode(), to_json(body))

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"TopicSink(name={self.name!r})"
