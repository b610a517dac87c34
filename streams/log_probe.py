"""Tell a replay from a recreated log: read back the record a state applied last and compare.

A restored monitor state knows the last internal offset it folded in per partition; a message
at or below it is a replay (the group re-delivers from its committed position, which lags the
checkpoint) and is skipped. A memory-only broker that restarted (the embedded Tansu), or a topic
deleted and created again, starts the log at offset 0 again: its records at those offsets are
new events, and skipping them loses them. The offsets cannot tell the two apart, and the log's
end (:meth:`streams.monitor_stage.MonitorStage.log_restarted`) tells only while the new log is
shorter than the state's offset; Faust may well have fetched a longer one first (seen in
tests/reliability/test_broker_restart.py: the new log had grown past the known model's offset 3,
its new events were skipped as replays and its source positions skipped their re-deliveries).

The record itself can tell: the state keeps a :func:`mark` of the message it applied last, and
:class:`RecordProbe` reads the record at that offset from the log as it is now. The same log
holds the same record there; a new log holds another record, or none. A probe costs one fetch
per model and partition after a restore, not per message (MonitorStage remembers the answer).
"""
from __future__ import annotations

import asyncio
import logging
import time
import zlib

log = logging.getLogger("driftline")

ENDS_BEFORE = "ends before"     # the log holds no record at the offset: it ends before it


def mark(value: bytes) -> tuple[int, int]:
    """What identifies a record's value: its length and CRC-32 (a copy of the same record matches)."""
    return len(value), zlib.crc32(value)


def mark_key(partition: int) -> str:
    """The key of a partition's last applied record's mark, next to its offset in ``applied_offsets``."""
    return f"#{partition}"


class RecordProbe:
    """Reads single records of the internal topic with a group-less consumer.

    ``consumer_factory()`` returns an unstarted ``AIOKafkaConsumer`` (its default
    ``auto_offset_reset="latest"``: an offset past the log's end reads nothing, and the fetch's
    highwater then says where the log ends)."""

    def __init__(self, consumer_factory, timeout: float = 5.0) -> None:
        self.consumer_factory = consumer_factory
        self.timeout = timeout
        self._consumer = None
        self._lock: asyncio.Lock | None = None

    async def at(self, topic: str, partition: int, offset: int):
        """The :func:`mark` of the record at ``offset``, :data:`ENDS_BEFORE` when the log ends at
        or before it, or ``None`` when that cannot be told in ``timeout`` (broker unreachable;
        the record removed by retention or compaction)."""
        from aiokafka import TopicPartition

        tp, deadline = TopicPartition(topic, partition), time.monotonic() + self.timeout
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            consumer = None
            while time.monotonic() < deadline:
                try:
                    if consumer is None:
                        consumer = await self._started()
                        consumer.assign([tp])       # afresh: no highwater left from an earlier probe
                        consumer.seek(tp, offset)
                    batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                    for record in batch.get(tp, []):
                        return mark(record.value or b"") if record.offset == offset else None
                    highwater = consumer.highwater(tp)
                    if highwater is not None and 0 <= highwater <= offset:
                        return ENDS_BEFORE
                    if highwater is not None and await consumer.position(tp) > offset:
                        return None         # below the log's start (retention): moved on, nothing to compare
                except Exception as exc:    # the broker may be restarting: try again until the deadline
                    log.warning("reading %s[%d] at %d back failed (%r); retrying", topic, partition, offset, exc)
                    await self.close()
                    consumer = None
                    await asyncio.sleep(0.5)
        return None

    async def _started(self):
        if self._consumer is None:
            consumer = self.consumer_factory()
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:
                pass
