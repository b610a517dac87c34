"""RecordProbe against the real broker: the record at an offset is read back, or the log ends before it."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer

from streams.log_probe import ENDS_BEFORE, RecordProbe, mark
from tests.integration.harness import bootstrap

pytestmark = pytest.mark.integration


def test_a_record_is_read_back_by_its_offset_and_a_shorter_log_says_so(broker_url, unique):
    topic = f"probe-{unique}"
    producer = Producer({"bootstrap.servers": bootstrap(broker_url)})
    values = [b'{"tick":%d}' % i for i in range(6)]
    for value in values:          # one record per batch, as the app writes the internal topic
        producer.produce(topic, value=value, key=b"m", partition=0)
        assert producer.flush(30) == 0

    async def run():
        probe = RecordProbe(lambda: AIOKafkaConsumer(bootstrap_servers=bootstrap(broker_url), group_id=None,
                                                     enable_auto_commit=False))
        try:
            found = [await probe.at(topic, 0, offset) for offset in (4, 1, 5)]
            started = time.monotonic()
            beyond = await probe.at(topic, 0, 9)
            return found, beyond, time.monotonic() - started
        finally:
            await probe.close()

    found, beyond, took = asyncio.run(run())
    assert found == [mark(values[4]), mark(values[1]), mark(values[5])]
    assert mark(values[4]) != mark(values[3])
    assert beyond == ENDS_BEFORE and took < 3.0
