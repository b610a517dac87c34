"""GapFiller against the real broker: records skipped by the group consumer are read back in order."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer

from streams.gaps import GapFiller, RereadEvent, RereadMessage
from tests.integration.harness import bootstrap

pytestmark = pytest.mark.integration


def delivered(topic: str, offset: int) -> RereadEvent:
    """Stands in for a Faust event the group consumer delivered (only offsets matter here)."""
    return RereadEvent(RereadMessage(topic, 0, offset, 0.0, None), None, b"delivered")


def test_skipped_offsets_are_read_back_in_order_and_a_real_gap_reads_empty(broker_url, unique):
    topic = f"gaps-{unique}"
    producer = Producer({"bootstrap.servers": bootstrap(broker_url), "linger.ms": 5})
    for i in range(30):
        producer.produce(topic, value=b'{"i":%d}' % i, key=b"one-partition", partition=0)
    assert producer.flush(30) == 0

    async def run():
        filler = GapFiller(lambda: AIOKafkaConsumer(bootstrap_servers=bootstrap(broker_url), group_id=None,
                                                    enable_auto_commit=False))
        try:
            batches = [[delivered(topic, o) for o in (0, 1, 2)],
                       [delivered(topic, o) for o in (9, 10, 10, 11)],      # 3..8 skipped; 10 delivered twice
                       [delivered(topic, o) for o in (25, 29)]]             # 12..24 and 26..28 skipped
            out = [await filler.fill(batch) for batch in batches]
            beyond = await filler.read(topic, 0, 30, 30)                     # an empty range reads nothing
            return filler, out, beyond
        finally:
            await filler.close()

    filler, out, beyond = asyncio.run(run())
    offsets = [[e.message.offset for e in batch] for batch in out]
    assert offsets == [[0, 1, 2], [3, 4, 5, 6, 7, 8, 9, 10, 10, 11],
                       [*range(12, 26), 26, 27, 28, 29]]
    reread = [e for batch in out for e in batch if e.value != b"delivered"]
    assert [e.value for e in reread] == [b'{"i":%d}' % e.message.offset for e in reread]
    assert all(e.key == b"one-partition" and e.message.timestamp > 1.7e9 for e in reread)
    assert beyond == []
    assert filler.counts == {"input_gaps": 3, "gap_records_recovered": 6 + 13 + 3, "gap_reads_incomplete": 0}


def test_an_assignment_starts_at_the_committed_position_and_starts_the_ledger(broker_url, unique):
    """Records Faust dropped before the first one it delivers after an assignment are read back too;
    a partition with no commit starts at the log's first offset."""
    from streams.ledger import CommitLedger

    topic = f"gaps-start-{unique}"
    producer = Producer({"bootstrap.servers": bootstrap(broker_url), "linger.ms": 5})
    for i in range(12):
        producer.produce(topic, value=b'{"i":%d}' % i, partition=0)
    assert producer.flush(30) == 0
    committed = {(topic, 0): 5}

    async def position(t, p):
        return committed.get((t, p))

    async def run(first_delivered):
        ledger = CommitLedger()
        filler = GapFiller(lambda: AIOKafkaConsumer(bootstrap_servers=bootstrap(broker_url), group_id=None,
                                                    enable_auto_commit=False), ledger, position)
        try:
            batch = await filler.fill([delivered(topic, first_delivered)])
            return [e.message.offset for e in batch], ledger
        finally:
            await filler.close()

    offsets, ledger = asyncio.run(run(9))
    assert offsets == [5, 6, 7, 8, 9]
    assert ledger.started((topic, 0)) and ledger.committable((topic, 0)) is None
    committed.clear()                                # never committed: from the log start
    offsets, _ = asyncio.run(run(3))
    assert offsets == [0, 1, 2, 3]
