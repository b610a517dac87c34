"""Faust's aiokafka transport: a configurable fetch wait, and commits from driftline's ledger.

Faust hard-codes ``fetch_max_wait_ms=1500`` for the worker's consumer. A fetch returns
as soon as any record is there, so under load the wait costs nothing, but when traffic
pauses each of the worker's two consumer hops (input -> internal topic -> monitor) can
sit up to 1.5 s on an idle partition before it sees a new record: an alert then comes
about 1.4 s after the window's last event (bench/latency.py). ``fetch_max_wait_ms``
(default 100) bounds that wait; the price is a few more empty fetches a second when idle.

The consumer commits the offsets of :class:`streams.ledger.CommitLedger` (what driftline
has handled), not the ones Faust derives from acks: Faust also acks messages that never
reached an agent (skipped while flow control is suspended, at every rebalance and at
shutdown), and committing past those loses them.
"""
from __future__ import annotations

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver

SCHEME = "driftline-kafka"
fetch_max_wait_ms = 100   # set from the settings by streams.app before the worker starts


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start() when it builds its fetcher (aiokafka 0.14)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float):
        """Faust's records, with a recreated log noticed before Faust drops it.

        Faust drops every record below its read offset of a partition. When the log itself was
        recreated (a memory-only broker restarted, the topic deleted) without a rebalance, the
        new log's offsets start again at 0 and each record is dropped until they pass the old
        read offset (seen: a broker restart whose first events never reached the monitor). A
        record below the read offset whose partition's log now ends at or before that offset
        is from a new log: forget the old positions (Faust's, the ledger's, the GapFiller's).
        """
        read_offset = self._read_offset
        async for tp, message in super().getmany(timeout):
            previous = read_offset[tp]
            if previous is not None and message.offset < previous:
                highwater = self.highwater(tp)
                if highwater is not None and 0 <= highwater <= previous:
                    read_offset[tp] = None
                    self._committed_offset[tp] = None
                    on_recreated = getattr(self.app, "on_log_recreated", None)
                    if on_recreated is not None:
                        on_recreated(tp, message.offset)
            yield tp, message

    def _new_offset(self, tp):
        ledger = getattr(self.app, "commit_ledger", None)
        if ledger is None:
            return super()._new_offset(tp)
        offset = ledger.committable(tp)
        if offset is not None:   # Faust's own ack bookkeeping, kept bounded: what the ledger covers goes
            acked = self._acked[tp]
            if acked:
                acked[:] = [o for o in acked if o >= offset]
                self._acked_index[tp].intersection_update(acked)
            gaps = self._gap.get(tp)
            if gaps:
                gaps.chop(0, offset)
        return offset


class Transport(driver.Transport):
    Consumer = Consumer


TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"


def consumer_urls(broker: str) -> str:
    """The broker URL(s) with this transport's scheme, for Faust's ``broker_consumer``."""
    return ";".join(f"{SCHEME}://{url.split('://', 1)[-1]}" for url in broker.split(";") if url)
