"""The ingest stage: validate, dead-letter and re-key input by model, in a plain aiokafka loop.

    driftline.predictions ─┐   getmany ─ decode ─ dead letters ─ re-key ─ produce ─ commit
    driftline.labels ──────┘                          │                      │
                                          driftline.deadletter      <app>-monitor-events

The stage is stateless, so it does not need Faust's stream machinery, whose cost is per
message (four asyncio tasks and three cancellations for each one, ~230 µs; a single-event
producer pays it for every prediction). :class:`IngestLoop` is a :class:`mode.Service` the
Faust app starts after its tables are recovered; it owns an aiokafka consumer in a group of
its own (``<app id>-ingest``) and an aiokafka producer, and for each ``getmany`` batch:

1. decodes every message (:mod:`streams.records`; bad elements become dead-letter records,
   each sent once per deterministic id through :class:`~sinks.dedup.DedupGuard`);
2. groups the valid events per monitor key and sends them to the internal topic as messages
   of at most ``records.MAX_MESSAGE_BYTES``, predictions as columns (:mod:`streams.internal_format`),
   each with its events' source positions (:mod:`streams.positions`: the monitor drops what it
   applied already);
3. once every send is acknowledged, marks the batch's offsets committable, and commits them
   every ``commit_interval`` seconds, on a revoke and at a stop (produce, then commit:
   at-least-once; a crash in between re-sends, and the copies are dropped downstream).

It commits what it handled itself, so none of the monitor stage's guards against Faust's
acks (``streams.ledger``, ``streams.gaps``) apply here. On a rebalance the listener lets the
batch in flight finish and commit before the partitions go; a batch fetched before the revoke
and not started is dropped (the next owner re-reads it from the committed position, which is
also where aiokafka starts an assigned partition). Lag is never computed from
``end_offsets()`` (the embedded broker under-reports them).
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import time
from dataclasses import dataclass
from operator import itemgetter
from typing import Callable

import orjson
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from streams import internal_format, positions, records

log = logging.getLogger("driftline")


@dataclass(frozen=True)
class Source:
    """An input topic: the field its events travel under on the internal topic, and its decoder."""
    topic: str
    field: str                    # "p" (predictions) or "l" (labels)
    decode: Callable              # records.decode_predictions / records.decode_labels


@dataclass(frozen=True)
class IngestOptions:
    internal_topic: str
    deadletter_topic: str
    max_message_bytes: int
    batch_records: int            # most input messages per getmany
    linger_ms: int                # longest getmany waits for the first record
    monitor_key: Callable | None = None    # (model, prediction_id) -> key, for sharded models
    commit_interval: float = 0.0  # seconds between commits of what was sent (0: after every batch)
    revoke_timeout: float = 10.0  # longest a revoke waits for the batch in flight
    stop_timeout: float = 10.0
    prediction_columns: bool = True   # predictions and labels travel as columns (streams.internal_format)


def body_of(field: str, items: list, runs: list, columns: bool = False) -> bytes:
    """One internal message: ``{field: items, "src": runs}``, or with ``columns`` predictions and
    labels as columns, ``{"pc": ..., "src": runs}`` / ``{"lc": ...}`` (:mod:`streams.internal_format`)."""
    if columns and field in _AS_COLUMNS:
        name, build = _AS_COLUMNS[field]
        found = build(items)
        if found is not None:
            return orjson.dumps({name: found, "src": runs})
    return orjson.dumps({field: items, "src": runs})


_AS_COLUMNS = {"p": (internal_format.COLUMNS, internal_format.prediction_columns),
               "l": (internal_format.LABEL_COLUMNS, internal_format.label_columns)}


def bodies(field: str, items: list, runs: list, limit: int, columns: bool = False) -> list[bytes]:
    """Internal messages of at most ``limit`` bytes (or one event), in order (``columns``: see
    :func:`body_of`).

    One model's share of a batch can exceed the producer's request size; split in halves,
    each half keeping its source positions.

    >>> bodies("p", [{"a": 1}, {"a": 2}], [[0, 7, 0, 2]], 10_000)
    [b'{"p":[{"a":1},{"a":2}],"src":[[0,7,0,2]]}']
    >>> bodies("p", [{"a": 1}, {"a": 2}], [[0, 7, 0, 2]], 20)
    [b'{"p":[{"a":1}],"src":[[0,7,0,1]]}', b'{"p":[{"a":2}],"src":[[0,7,1,1]]}']
    """
    body = body_of(field, items, runs, columns)
    if len(body) <= limit or len(items) == 1:
        return [body]
    half, head, tail, seen = len(items) // 2, [], [], 0
    for partition, offset, first, count in runs:
        cut = min(max(half - seen, 0), count)
        if cut:
            head.append([partition, offset, first, cut])
        if count - cut:
            tail.append([partition, offset, first + cut, count - cut])
        seen += count
    return bodies(field, items[:half], head, limit, columns) + bodies(field, items[half:], tail, limit, columns)


def interleaved(batch: dict):
    """A batch's messages as ``(tp, message)``, partitions merged by timestamp, each in offset order.

    ``getmany`` hands a backlog partition by partition; a model's window fills in arrival order,
    so forwarding one partition's backlog after another would mix hours of event time into
    each window. Ties (a producer's burst within one millisecond) alternate between partitions.

    >>> from types import SimpleNamespace as M
    >>> batch = {"p0": [M(offset=5, timestamp=1), M(offset=6, timestamp=1), M(offset=7, timestamp=3)],
    ...          "p1": [M(offset=0, timestamp=1), M(offset=1, timestamp=2)]}
    >>> [(tp, m.offset) for tp, m in interleaved(batch)]
    [('p0', 5), ('p1', 0), ('p0', 6), ('p1', 1), ('p0', 7)]
    """
    streams = [[(message.timestamp, index, tp, message) for index, message in enumerate(messages)]
               for tp, messages in batch.items()]
    for _, _, tp, message in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
        yield tp, message


# The longest the loop waits after an assignment for every new partition's first fetch (_settle).
SETTLE_SECONDS = 3.0

class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loop: "IngestLoop") -> None:
        self._ingest = loop

    async def on_partitions_revoked(self, revoked) -> None:
        await self._ingest.revoked(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        log.info("ingest assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        await self._ingest.assigned(assigned)


class IngestLoop(Service):
    """``getmany`` -> decode -> dead-letter -> re-key -> produce -> commit, until stopped.

    ``consumer_factory(listener)`` returns an unstarted ``AIOKafkaConsumer`` subscribed to the
    sources' topics in the ingest group with that rebalance listener (auto-commit off);
    ``producer_factory()`` an unstarted ``AIOKafkaProducer`` (both built in :meth:`on_start`:
    aiokafka's clients belong to the running event loop); ``counts`` the worker's counters (it adds
    ``deadletter`` and ``deadletter_deduplicated``); ``on_deadletter(reason)`` feeds the metrics.
    """

    def __init__(self, sources: list[Source], options: IngestOptions, consumer_factory, producer_factory, dedup,
                 deadletters, counts: dict, on_deadletter: Callable[[str], None] = lambda reason: None,
                 fallback_positions=None, topic_identity=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sources = {s.topic: s for s in sources}
        self.options = options
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self.producer = None
        self.consumer = None
        self.dedup = dedup
        self.deadletters = deadletters
        self.counts = counts
        self.on_deadletter = on_deadletter
        self.fallback_positions = fallback_positions
        self.topic_identity = topic_identity   # streams.topic_identity.TopicIdentity, or None
        self.generation = 0           # bumped on every revoke: batches fetched before it are dropped
        self._batch_lock = asyncio.Lock()
        self._committable: dict[TopicPartition, int] = {}   # sent, not committed yet: next offset to read
        self._last_commit = time.monotonic()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._settling: tuple[set, float] | None = None   # (new assignment, give up at): see _settle
        self.ingest_counts = {"ingest_batches": 0, "ingest_messages": 0, "ingest_commit_failures": 0,
                              "ingest_retries": 0, "ingest_batches_dropped": 0,
                              "ingest_logs_recreated": 0}

    # -- lifecycle ---------------------------------------------------------------------------
    async def on_start(self) -> None:
        self.producer = self._producer_factory()
        await self.producer.start()
        self.consumer = self._consumer_factory(_Rebalance(self))
        await self.consumer.start()
        self._task = asyncio.ensure_future(self.run())

    async def on_stop(self) -> None:
        """Finish the batch in flight (produce and commit it), then leave the group."""
        self._stopping = True
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=self.options.stop_timeout)
            if not done:
                log.warning("ingest: the batch in flight did not finish in %.0f s; it will be re-read",
                            self.options.stop_timeout)
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1.0)
        if self.consumer is not None:
            await self.commit()
        for client in (self.consumer, self.producer):
            try:
                if client is not None:
                    await client.stop()
            except Exception as exc:
                log.warning("ingest: stopping %s failed (%r)", type(client).__name__, exc)

    async def revoked(self, revoked) -> None:
        """Rebalance: the batch in flight finishes and commits (while the generation is still ours)."""
        self.generation += 1
        try:
            await asyncio.wait_for(self._batch_lock.acquire(), timeout=self.options.revoke_timeout)
        except asyncio.TimeoutError:
            log.warning("ingest: revoke did not wait for the batch in flight (%.0f s); its partitions' "
                        "next owner re-reads it", self.options.revoke_timeout)
            return
        try:
            await self.commit()      # what was sent, while the generation is still ours
            for tp in revoked:
                self._committable.pop(tp, None)
        finally:
            self._batch_lock.release()

    async def assigned(self, assigned) -> None:
        """Partitions of a topic recreated since the last assignment start at the log's start
        (:mod:`streams.topic_identity`); partitions the ingest group never committed start where
        ``fallback_positions`` says.

        The loop then waits (:meth:`_settle`) until every newly assigned partition has answered a
        fetch before it takes a batch: otherwise the first batches after an assignment hold the
        backlog of whichever partition was fetched first, and a model's window fills with one
        partition's hours of event time before another's (the merge by timestamp only orders
        what one batch holds)."""
        if assigned:
            self._settling = (set(assigned), time.monotonic() + SETTLE_SECONDS)
        recreated = await self.topic_identity.recreated(tp.topic for tp in assigned) if self.topic_identity else set()
        restarted = [tp for tp in assigned if tp.topic in recreated]
        if restarted:
            # the committed offsets and fetch positions are the old log's (or were committed from
            # them after the broker came back): the new log is read from its start
            await self.consumer.seek_to_beginning(*restarted)
            self.ingest_counts["ingest_logs_recreated"] += len(restarted)
            log.warning("ingest: %s recreated (a new topic id): %d partitions read from their start",
                        sorted(recreated), len(restarted))
        if self.topic_identity is not None:
            self.topic_identity.accept()
        if self.fallback_positions is None or not assigned:
            return
        try:
            fresh = [tp for tp in assigned if tp.topic not in recreated and await self.consumer.committed(tp) is None]
            if not fresh:
                return
            for tp, offset in (await self.fallback_positions(fresh)).items():
                if offset is not None and offset >= 0:
                    self.consumer.seek(tp, offset)
                    log.info("ingest: %s[%d] starts at %d (committed by the previous ingest group)",
                             tp.topic, tp.partition, offset)
        except Exception as exc:      # best effort: without it the partition starts at the log's start
            log.warning("ingest: reading the previous group's offsets failed (%r)", exc)

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                if self._settling is not None:
                    await self._settle()
                batch = await self.consumer.getmany(timeout_ms=self.options.linger_ms,
                                                    max_records=self.options.batch_records)
                delay = 0.1
            except Exception as exc:     # the broker may be restarting: aiokafka reconnects
                log.warning("ingest: fetching failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)
                continue
            if batch:
                await self.handle(batch, self.generation)
            elif self._committable and time.monotonic() - self._last_commit >= self.options.commit_interval:
                async with self._batch_lock:
                    await self.commit()

    async def _settle(self) -> None:
        """Wait until each partition of the new assignment has a highwater (its first fetch was
        answered, with records or none) or SETTLE_SECONDS passed; fetched records wait in the
        consumer meanwhile, so the next batch holds every partition's first records."""
        partitions, give_up_at = self._settling
        try:
            while not self._stopping and time.monotonic() < give_up_at:
                assignment = self.consumer.assignment()
                if all(self.consumer.highwater(tp) is not None for tp in partitions & assignment):
                    break
                await asyncio.sleep(0.02)
        finally:
            self._settling = None

    async def handle(self, batch: dict, generation: int) -> bool:
        """Forward one ``getmany`` batch until it is sent, then commit it; False if it was dropped."""
        async with self._batch_lock:
            if generation != self.generation:   # fetched before a revoke: the next owner re-reads it
                self.ingest_counts["ingest_batches_dropped"] += 1
                return False
            delay = 0.1
            while True:
                try:
                    await self.forward(batch)
                    break
                except Exception as exc:
                    if self._stopping:
                        log.warning("ingest: stopping with a batch unsent (%r); it will be re-read", exc)
                        return False
                    self.ingest_counts["ingest_retries"] += 1
                    log.warning("ingest: forwarding %d messages failed (%r); retrying in %.1fs",
                                sum(len(r) for r in batch.values()), exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, 5.0)
            for tp, messages in batch.items():
                if messages:
                    self._committable[tp] = messages[-1].offset + 1
            if time.monotonic() - self._last_commit >= self.options.commit_interval:
                await self.commit()
            self.ingest_counts["ingest_batches"] += 1
            self.ingest_counts["ingest_messages"] += sum(len(r) for r in batch.values())
            return True

    async def commit(self) -> None:
        """Commit the offsets of what was sent (call with the batch lock held, or after the loop ended)."""
        self._last_commit = time.monotonic()
        if not self._committable:
            return
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in self._committable.items()}
        self._committable = {}
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:      # a rebalance or the broker: retried with the next commit, or re-read
            for tp, meta in offsets.items():
                self._committable.setdefault(tp, meta.offset)
            self.ingest_counts["ingest_commit_failures"] += 1
            log.warning("ingest: committing %s failed (%r); those messages will be re-read",
                        {f"{tp.topic}[{tp.partition}]": o.offset for tp, o in offsets.items()}, exc)

    async def forward(self, batch: dict) -> None:
        """Decode, dead-letter and re-key one batch; return once every record sent is acknowledged."""
        opts, sends, dead = self.options, [], []
        by_source: dict[str, list] = {}
        for tp, message in interleaved(batch):
            source = self.sources[tp.topic]
            decoded = by_source.setdefault(tp.topic, [])
            good, bad = source.decode(message.value, message.timestamp / 1000.0, opts.max_message_bytes)
            decoded.append((tp.partition, message.offset, good))
            for index, reason in bad:
                dead.append(await self._dead_letter(message, tp, reason, index))
        monitor_key = opts.monitor_key
        key_of = (lambda e: monitor_key(e["model"], e["prediction_id"])) if monitor_key else itemgetter("model")
        for topic, decoded in by_source.items():
            field = self.sources[topic].field
            for key, (items, runs) in positions.by_key(decoded, key_of).items():
                for body in bodies(field, items, runs, records.MAX_MESSAGE_BYTES,   # under Kafka's 1 MB default
                                   opts.prediction_columns):
                    sends.append(await self.producer.send(opts.internal_topic, key=key.encode(), value=body))
        # a dead letter is marked sent as soon as it is (a crash in between re-sends it: same id)
        for deadletter_id, sent in (d for d in dead if d is not None):
            await sent
            await self.dedup.mark_delivered(deadletter_id)
        if sends:
            await asyncio.gather(*sends)

    async def _dead_letter(self, message, tp: TopicPartition, reason: str, index: int | None):
        record = records.deadletter_record(message.value, reason, tp.topic, tp.partition, message.offset, index)
        if await self.dedup.delivered_before(record["deadletter_id"]):
            self.counts["deadletter_deduplicated"] += 1    # re-read after a crash: sent before
            return None
        self.counts["deadletter"] += 1
        self.on_deadletter(reason)
        self.deadletters.record(reason, tp.topic, tp.partition, message.offset, index)
        sent = await self.producer.send(self.options.deadletter_topic, key=message.key, value=orjson.dumps(record))
        return record["deadletter_id"], sent
