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
    """Publish dicts as JSON-array messages of up to ``batch_size``, at most ``linger`` seconds old.

    Events are batched per model and each message is keyed by its model, so one model's
    events stay on one partition and the worker reads them in the order they were added:
    a model's reference is its first ``reference_size`` events as read, and unkeyed messages
    spread over several partitions can bring later events into it.
    """

    def __init__(self, bootstrap: str, topic: str, batch_size: int = 500, linger: float = 0.2,
                 producer: KafkaProducer | None = None, **kafka_options):
        self.topic = topic
        self.batch_size = batch_size
        self.linger = linger
        self._owns_producer = producer is None
        self._producer = producer or KafkaProducer(
            bootstrap_servers=bootstrap_of(bootstrap), linger_ms=5, acks="all",
            max_request_size=8 * 1024 * 1024, **kafka_options)
        self._batches: dict[str, list] = {}     # model -> its events not sent yet
        self._first_at = 0.0                     # when the oldest of them was added
        self.messages = 0

    def add(self, event: dict) -> None:
        if not self._batches:
            self._first_at = time.monotonic()
        model = str(event.get("model", ""))
        batch = self._batches.setdefault(model, [])
        batch.append(event)
        if len(batch) >= self.batch_size:
            self._send(model)
        if self._batches and time.monotonic() - self._first_at >= self.linger:
            self.send_batch()

    def _send(self, model: str) -> None:
        batch = self._batches.pop(model)
        value = orjson.dumps(batch if self.batch_size > 1 else batch[0])
        self._producer.send(self.topic, key=model.encode(), value=value)
        self.messages += 1

    def send_batch(self) -> None:
        """Send every model's pending events now."""
        for model in list(self._batches):
            self._send(model)

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
