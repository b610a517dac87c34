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

Faust builds the consumer from the broker URL, so what it needs from driftline comes as one
record on the app, :class:`ConsumerHooks` (``app.driftline_consumer``, set by
:class:`streams.app.DriftlineApp` from the settings).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver

from streams.ledger import CommitLedger

SCHEME = "driftline-kafka"
DEFAULT_FETCH_MAX_WAIT_MS = 100     # Settings.fetch_max_wait_ms's default


@dataclass(frozen=True)
class ConsumerHooks:
    """What the worker's Faust consumer takes from driftline: its fetch wait, the ledger it
    commits, who to tell when a partition's log was recreated (``(tp, first_offset)``), and the
    topics whose never-committed partitions start at the log's start after every seek."""
    fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS
    ledger: CommitLedger | None = None
    on_log_recreated: Callable | None = None
    from_start: frozenset = frozenset()


def hooks_of(app) -> ConsumerHooks:
    """The app's hooks (defaults for a Faust app that was not built by streams.app)."""
    return getattr(app, "driftline_consumer", None) or ConsumerHooks()


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start() when it builds its fetcher (aiokafka 0.14)
        consumer._fetch_max_wait_ms = hooks_of(self.app).fetch_max_wait_ms
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
                    on_recreated = hooks_of(self.app).on_log_recreated
                    if on_recreated is not None:
                        on_recreated(tp, message.offset)
            yield tp, message

    async def seek_to_committed(self):
        """Faust's seek of every assigned partition to its committed offset (after a rebalance
        and after a table recovery), with the never-committed partitions of the ``from_start``
        topics sent to the log's start (the group's ``auto_offset_reset``).

        Faust leaves such a partition where its fetcher is; the records fetched while the flow
        was suspended for the table recovery were dropped, and only a later record would show
        the gap to :mod:`streams.gaps`. Seen after a broker restart (tests/reliability/
        test_broker_restart.py): the new log's records of both models came during the recovery,
        nothing came after them, and the monitor never saw them."""
        committed = dict(await super().seek_to_committed())
        topics = hooks_of(self.app).from_start
        fresh = [tp for tp in self.assignment() if tp.topic in topics
                 and (committed.get(tp) is None or committed[tp] < 0)]
        if fresh:
            from aiokafka import TopicPartition

            await self._thread.seek_to_beginning(*(TopicPartition(tp.topic, tp.partition) for tp in fresh))
            for tp in fresh:
                committed[tp] = None          # Faust's read offset: none, the log is read from its start
        return committed

    def _new_offset(self, tp):
        ledger = hooks_of(self.app).ledger
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
