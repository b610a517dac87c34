"""streams.transport.Consumer: commits from the ledger, and a recreated log noticed before Faust drops it.

Unit tests of the one class: Faust's consumer around it is replaced by the few attributes it reads.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from intervaltree import IntervalTree

from streams.ledger import CommitLedger
from streams.transport import Consumer, ConsumerHooks

TOPIC = TP("t", 0)


def consumer(ledger=None, highwater=None, recreated=None):
    c = Consumer.__new__(Consumer)
    c.app = SimpleNamespace(driftline_consumer=ConsumerHooks(
        ledger=ledger, on_log_recreated=lambda tp, o: recreated.append((tp, o))))
    c._read_offset, c._committed_offset = defaultdict(lambda: None), defaultdict(lambda: None)
    c._acked, c._acked_index, c._gap = defaultdict(list), defaultdict(set), defaultdict(IntervalTree)
    c.highwater = lambda tp: highwater
    return c


def test_commits_the_ledger_position_not_the_acks(monkeypatch):
    ledger = CommitLedger()
    c = consumer(ledger)
    ledger.start(TOPIC, 10)
    c._acked[TOPIC] = [10, 11, 12, 13]        # Faust acked 12 and 13 without an agent handling them
    c._acked_index[TOPIC] = {10, 11, 12, 13}
    ledger.handled(TOPIC, 10)
    ledger.handled(TOPIC, 11)
    assert c._new_offset(TOPIC) == 12
    assert c._acked[TOPIC] == [12, 13] and c._acked_index[TOPIC] == {12, 13}   # bounded bookkeeping


def _records(offsets):
    async def getmany(self, timeout):
        for offset in offsets:
            yield TOPIC, SimpleNamespace(offset=offset)
    return getmany


def _read(c):
    async def run():
        return [m.offset async for _, m in c.getmany(1.0)]
    return asyncio.run(run())


def test_a_recreated_log_resets_the_read_offset_so_faust_does_not_drop_it(monkeypatch):
    recreated = []
    c = consumer(CommitLedger(), highwater=3, recreated=recreated)
    c._read_offset[TOPIC], c._committed_offset[TOPIC] = 200, 201
    monkeypatch.setattr(driver.Consumer, "getmany", _records([0, 1, 2]))
    assert _read(c) == [0, 1, 2]
    assert c._read_offset[TOPIC] is None and c._committed_offset[TOPIC] is None
    assert recreated == [(TOPIC, 0)]


def test_a_re_delivery_below_the_read_offset_is_not_a_new_log(monkeypatch):
    recreated = []
    c = consumer(CommitLedger(), highwater=500, recreated=recreated)   # the log still holds offset 200
    c._read_offset[TOPIC] = 200
    monkeypatch.setattr(driver.Consumer, "getmany", _records([150, 151]))
    assert _read(c) == [150, 151]
    assert c._read_offset[TOPIC] == 200 and recreated == []


def test_after_a_seek_a_partition_never_committed_starts_at_its_log_start(monkeypatch):
    """Faust would leave it where its fetcher is: past records it dropped while the flow was
    suspended for a table recovery. Committed partitions, and other topics, are Faust's."""
    seeks = []
    other, fresh = TP("changelog", 0), TP("t", 1)
    c = consumer(CommitLedger())
    c.app.driftline_consumer = ConsumerHooks(from_start=frozenset({"t"}))
    c.assignment = lambda: {TOPIC, other, fresh, TP("changelog", 1)}

    async def seek_to_beginning(*partitions):
        seeks.extend((tp.topic, tp.partition) for tp in partitions)

    c._thread = SimpleNamespace(seek_to_beginning=seek_to_beginning)

    async def committed(self):
        return {TOPIC: 3, other: 7, fresh: None}

    monkeypatch.setattr(driver.Consumer, "seek_to_committed", committed)
    assert asyncio.run(c.seek_to_committed()) == {TOPIC: 3, other: 7, fresh: None}
    assert seeks == [("t", 1)]
