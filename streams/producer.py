"""A small producer helper for services that publish predictions from Python.

It batches events into one Kafka message holding a JSON array (the wire
contract's micro-batch), by count and by linger time, which is the fast path
through driftline: one message of 1,000 predictions costs the worker about as
much per-message overhead as one single prediction.

    from streams.producer import BatchProducer

    with BatchProducer("127.0.0.1:9092", "driftline.predictions", batch_size=500) as out:
        for p in predictions:
            out.add(p)          # dict following the wire contract

Any Kafka client can do the same: a message is one JSON object or a JSON array.
"""
from __future__ import annotations

import time

import orjson
from kafka import KafkaProducer


def bootstrap_of(broker_url: str) -> str:
    """``kafka://h1:9092;h2:9092`` -> ``h1:9092,h2:9092`` (what kafka-python expects)."""
    return broker_url.split("://", 1)[-1].replace(";", ",")


class BatchProducer:
    """Publish dicts as JSON-array messages of up to ``batch_size``, at most ``linger`` seconds old."""

    def __init__(self, bootstrap: str, topic: str, batch_size: int = 500, linger: float = 0.2,
                 producer: KafkaProducer | None = None, **kafka_options):
        self.topic = topic
        self.batch_size = batch_size
        self.linger = linger
        self._owns_producer = producer is None
        self._producer = producer or KafkaProducer(
            bootstrap_servers=bootstrap_of(bootstrap), linger_ms=5, acks="all",
            max_request_size=8 * 1024 * 1024, **kafka_options)
        self._batch: list = []
        self._first_at = 0.0
        self.messages = 0

    def add(self, event: dict) -> None:
        if not self._batch:
            self._first_at = time.monotonic()
        self._batch.append(event)
        if len(self._batch) >= self.batch_size or time.monotonic() - self._first_at >= self.linger:
            self.send_batch()

    def send_batch(self) -> None:
        if not self._batch:
            return
        value = orjson.dumps(self._batch if self.batch_size > 1 else self._batch[0])
        self._producer.send(self.topic, value=value)
        self.messages += 1
        self._batch = []

    def flush(self, timeout: float | None = 30) -> None:
        self.send_batch()
        self._producer.flush(timeout)

    def close(self) -> None:
        self.flush()
        if self._owns_producer:
            self._producer.close()

    def __enter__(self) -> "BatchProducer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
