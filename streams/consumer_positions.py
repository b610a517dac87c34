"""What Faust's consumer knows of a partition's positions, for the parts that check them.

The gap filler (:mod:`streams.gaps`) starts each assignment at the group's committed offset,
and it and the monitor stage (:mod:`streams.monitor_stage`) tell a recreated log from a replay
by the partition's highwater. Both take plain callables; this adapter answers them from the
Faust app's consumer once it runs.
"""
from __future__ import annotations


class ConsumerPositions:
    """``committed(topic, partition)`` and ``highwater(topic, partition)`` of ``app``'s consumer."""

    def __init__(self, app) -> None:
        self.app = app

    async def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset of a partition, asked of the broker (Faust's own copy of it
        can still be unset for a partition that just moved here from another worker)."""
        from aiokafka import TopicPartition

        thread = self.app.consumer._thread          # Faust's aiokafka consumer lives in its own thread
        consumer = thread._ensure_consumer()
        return await thread.call_thread(consumer.committed, TopicPartition(topic, partition))

    def highwater(self, topic: str, partition: int) -> int | None:
        """The log's end as the last fetch reported it; raises while the consumer has not fetched it."""
        from faust.types import TP

        return self.app.consumer.highwater(TP(topic, partition))
