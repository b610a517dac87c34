"""Re-read input the consumer skipped: offset gaps inside one partition assignment.

(The monitor stage's internal topic, which Faust reads; the ingest loop reads the input
topics with aiokafka directly, which does not skip, see :mod:`streams.ingest`.)

Offsets in a partition are contiguous unless records were compacted away or are
transaction markers. Faust treats any jump in delivered offsets as such a gap and
commits past it. Around a rebalance, though, Faust (faust-streaming 0.15.3 with
aiokafka 0.14) skips records that aiokafka had already fetched: in
tests/reliability/test_scale_out.py the survivor jumped 2-3 offsets on each of its
four input partitions, those it had before the rebalance included. Those records
were never processed, and the commit past the "gap" made the loss final.

:class:`GapFiller` keeps the last offset it passed on per partition. When the next
one jumps, it reads the missing range with a group-less consumer and puts whatever
is there back in order, before the event that jumped. A real gap (markers, compaction)
reads back empty and costs one fetch.

The first message of an assignment is measured against the partition's committed
position (where the previous owner stopped): Faust's eager rebalance also drops records
fetched before the revoke, and the first one delivered afterwards can lie past them. The
same position starts the partition in the :class:`~streams.ledger.CommitLedger`, so
nothing between it and the first message is committed unless it was handled.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

log = logging.getLogger("driftline")


@dataclass(frozen=True)
class RereadMessage:
    """The fields of a Faust message that driftline reads."""
    topic: str
    partition: int
    offset: int
    timestamp: float          # seconds, like Faust's Message.timestamp
    key: bytes | None


@dataclass(frozen=True)
class RereadEvent:
    """A record read back from a gap, shaped like the Faust events around it."""
    message: RereadMessage
    key: bytes | None
    value: bytes | None

    def ack(self) -> None:     # its offset was never delivered by the group consumer: nothing to ack
        pass


class GapFiller:
    def __init__(self, consumer_factory, ledger=None, committed=None, highwater=None, read_timeout: float = 30.0):
        """``consumer_factory()`` returns an unstarted group-less ``AIOKafkaConsumer``;
        ``committed(topic, partition)`` the group's committed position (``None``: nothing
        committed yet, the log's first offset applies); ``ledger`` is started at it."""
        self._factory = consumer_factory
        self._ledger = ledger
        self._committed = committed
        self._highwater = highwater    # (topic, partition) -> the log's end as last fetched, or None
        self._consumer = None
        self._lock = asyncio.Lock()
        self._last: dict[tuple[str, int], int] = {}
        self.read_timeout = read_timeout
        self.counts = {"input_gaps": 0, "gap_records_recovered": 0, "gap_reads_incomplete": 0,
                       "redelivered_dropped": 0}

    def forget(self, partitions) -> None:
        """Partitions revoked: the next owner (maybe us again) starts from the committed offset."""
        for tp in partitions:
            self._last.pop((tp.topic, tp.partition), None)
        if self._ledger is not None:
            self._ledger.forget((tp.topic, tp.partition) for tp in partitions)

    def _recreated(self, tp: tuple, previous: int) -> bool:
        """A record at or below the last offset passed on, on a log that now ends at or before
        that offset: the log was recreated (memory-only broker restarted), not re-delivered."""
        if self._highwater is None:
            return False
        try:
            highwater = self._highwater(*tp)
        except Exception:          # not fetched yet since the assignment
            return False
        return highwater is not None and 0 <= highwater <= previous

    def restart(self, topic: str, partition: int, first_offset: int) -> None:
        """The partition's log was recreated: it starts again at ``first_offset``."""
        self._last[(topic, partition)] = first_offset - 1
        if self._ledger is not None:
            self._ledger.start((topic, partition), first_offset)

    async def fill(self, events: list) -> list:
        """``events`` in delivery order, with records missing between them put back in."""
        out, last = [], self._last
        for event in events:
            message = event.message
            tp = (message.topic, message.partition)
            previous = last.get(tp)
            if previous is None and self._committed is not None:
                position = await self._start(message.topic, message.partition)
                previous = last[tp] = position - 1
            if previous is not None and message.offset <= previous and self._recreated(tp, previous):
                self.restart(message.topic, message.partition, message.offset)
                previous = message.offset - 1
            if previous is not None and message.offset <= previous:
                # passed on already in this assignment (re-read from a gap, or delivered twice):
                # a second copy would be handled twice, its dead letters sent twice in one batch
                self.counts["redelivered_dropped"] += 1
                continue
            if previous is not None and message.offset > previous + 1:
                out.extend(await self.read(message.topic, message.partition, previous + 1, message.offset))
            last[tp] = message.offset
            out.append(event)
        return out

    async def _start(self, topic: str, partition: int) -> int:
        """Where this assignment of the partition starts: its committed position."""
        deadline = time.monotonic() + self.read_timeout
        while True:
            try:
                position = await self._committed(topic, partition)
                break
            except Exception as exc:    # the broker may be restarting: keep asking until the deadline
                if time.monotonic() > deadline:
                    raise
                log.warning("reading the committed offset of %s[%d] failed (%r); retrying", topic, partition, exc)
                await asyncio.sleep(1.0)
        if position is None or position < 0:
            position = await self._log_start(topic, partition)
        if self._ledger is not None:
            self._ledger.start((topic, partition), position)
        return position

    async def _log_start(self, topic: str, partition: int) -> int:
        from aiokafka import TopicPartition

        tp, deadline = TopicPartition(topic, partition), time.monotonic() + self.read_timeout
        async with self._lock:
            while True:
                try:
                    if self._consumer is None:
                        self._consumer = self._factory()
                        await self._consumer.start()
                    return (await self._consumer.beginning_offsets([tp]))[tp]
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise
                    log.warning("reading the first offset of %s[%d] failed (%r); retrying", topic, partition, exc)
                    await self.close()
                    await asyncio.sleep(1.0)

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[RereadEvent]:
        """The records at offsets ``start`` to ``end - 1`` that the log still holds."""
        from aiokafka import TopicPartition

        if start >= end:
            return []
        self.counts["input_gaps"] += 1
        tp, found = TopicPartition(topic, partition), []
        async with self._lock:
            deadline, position, first = time.monotonic() + self.read_timeout, start, True
            while position < end and time.monotonic() < deadline:
                try:    # the broker may be restarting: keep trying until the deadline
                    if self._consumer is None:
                        self._consumer = self._factory()
                        await self._consumer.start()
                    if self._consumer.assignment() != {tp}:
                        self._consumer.assign([tp])
                        self._consumer.seek(tp, position)
                    elif first:   # a seek drops the fetch in flight: only once per range
                        self._consumer.seek(tp, position)
                    first = False
                    batch = await self._consumer.getmany(tp, timeout_ms=500, max_records=end - position)
                    for record in batch.get(tp, []):
                        if position <= record.offset < end:
                            found.append(RereadEvent(
                                RereadMessage(topic, partition, record.offset, record.timestamp / 1000.0, record.key),
                                record.key, record.value))
                    position = max(position, await self._consumer.position(tp))
                except Exception as exc:
                    log.warning("re-reading %s[%d] from %d failed (%r); retrying", topic, partition, position, exc)
                    await self.close()
                    await asyncio.sleep(1.0)
        self.counts["gap_records_recovered"] += len(found)
        if position >= end:
            log.warning("offsets %d..%d of %s[%d] were skipped by the consumer: re-read %d records",
                        start, end - 1, topic, partition, len(found))
        else:
            self.counts["gap_reads_incomplete"] += 1
            log.error("offsets %d..%d of %s[%d] were skipped and only re-read up to %d in %.0f s (%d records)",
                      start, end - 1, topic, partition, position - 1, self.read_timeout, len(found))
        return found

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:
                pass
