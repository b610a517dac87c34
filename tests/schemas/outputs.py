"""Every record on an output topic checked against its schema (bare, or inside a CloudEvent)."""
from __future__ import annotations

import time
import uuid

import jsonschema
import orjson

import schemas

SUFFIXES = {"alerts": "alerts", "retrain": "retrain", "deadletter": "deadletter"}


def validators() -> dict[str, jsonschema.Draft202012Validator]:
    return {name: jsonschema.Draft202012Validator(schemas.load(name), format_checker=jsonschema.FormatChecker())
            for name in schemas.names()}


def schema_for_topic(topic: str) -> str | None:
    """``<anything>.alerts`` -> ``alerts`` (tests name topics ``<id>.<what>``; the defaults are ``driftline.<what>``)."""
    return SUFFIXES.get(topic.rsplit(".", 1)[-1])


def problems(name: str, value: bytes, headers: dict[str, bytes], checks: dict) -> list[str]:
    """What is wrong with one record of topic kind ``name`` (empty: valid)."""
    if headers.get("ce_specversion"):            # CloudEvents binary mode: the value is the data
        data, schema = orjson.loads(value), headers.get("ce_dataschema", b"").decode()
    else:
        data = orjson.loads(value)
        schema = None
        if isinstance(data, dict) and "specversion" in data:   # structured mode
            schema, data = data.get("dataschema"), data.get("data")
    if schema is not None and schema != schemas.uri(name):
        return [f"dataschema {schema!r} is not {schemas.uri(name)!r}"]
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in checks[name].iter_errors(data)]


def read_output_topics(bootstrap: str, only=None, idle: float = 3.0, timeout: float = 120.0) -> dict[str, list]:
    """{topic: [(value, headers)]} of every alerts/retrain/deadletter topic on the broker (or of ``only``)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"contract-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        topics = consumer.list_topics(timeout=10).topics
        wanted = [TopicPartition(name, p, OFFSET_BEGINNING) for name, meta in topics.items()
                  if schema_for_topic(name) and (only is None or name in only) for p in meta.partitions]
        found: dict[str, list] = {tp.topic: [] for tp in wanted}
        if not wanted:
            return found
        consumer.assign(wanted)
        deadline, last = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle:
            message = consumer.poll(0.2)
            if message is None or message.error() or message.value() is None:
                continue
            found[message.topic()].append((message.value(), dict(message.headers() or [])))
            last = time.monotonic()
        return found
    finally:
        consumer.close()


def check_topics(found: dict[str, list]) -> tuple[int, list[str]]:
    """(records checked, problems as 'topic@i: ...')."""
    checks, bad, n = validators(), [], 0
    for topic, rows in found.items():
        name = schema_for_topic(topic)
        for i, (value, headers) in enumerate(rows):
            n += 1
            bad += [f"{topic}@{i}: {p}" for p in problems(name, value, headers, checks)]
    return n, bad
