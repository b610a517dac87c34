"""The Faust app: topics, the state table and the two stages of the worker.

    driftline.predictions ─┐                        ┌─> driftline.alerts
                           ├─ ingest ─> <app>-monitor-events ─ monitor ─┼─> driftline.retrain
    driftline.labels ──────┘   │        (keyed by model)                └─> Redis / webhook / file / log
                               └─> driftline.deadletter

*ingest* (:class:`streams.ingest.IngestLoop`, an aiokafka ``getmany`` loop the app runs
as a service, in a consumer group of its own) decodes and validates raw messages in
batches (bad input goes to the dead-letter topic, valid events behind it keep flowing)
and re-keys them by model, so a prediction and its label meet in the same partition
whichever topic, key or order they came with; it commits a batch once its records are
sent. Many small messages become a few large ones, which keeps Faust's per-message cost
(paid on the internal topic only) off the statistics.

*monitor* folds each message into the model's :class:`ModelMonitor` and holds
its acks. At every window close, and at least every ``checkpoint_seconds``, it
writes the monitor (with the offsets it has applied) to the ``monitor-state``
table, whose changelog is how state survives a crash or moves to another worker,
and only then acks. After a crash the new owner restores the checkpoint and
replays messages past it; offsets already in the checkpoint are skipped, so
every event counts once in the state, and alerts keep their deterministic ids.
"""
from __future__ import annotations

import asyncio
import io
import logging
import pickle
import time

import faust
import orjson

from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile
from sinks import StatusStore, build_sinks
from sinks.dedup import DedupGuard
from streams import config, positions, records, transport, web
from streams.deadletter_log import DeadLetterLog
from streams.gaps import GapFiller
from streams.ingest import IngestLoop, IngestOptions, Source
from streams.ledger import CommitLedger

log = logging.getLogger("driftline")
settings = config.current()
transport.fetch_max_wait_ms = settings.fetch_max_wait_ms

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    broker_consumer=transport.consumer_urls(settings.broker),   # Faust's transport, shorter fetch wait
    broker_credentials=config.broker_credentials(settings),
    store="memory://",
    key_serializer="raw",      # payloads are decoded by us (orjson): bad input -> dead letter
    value_serializer="raw",
    autodiscover=False,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    # Tansu holds a group join up to half the session timeout: keep it short.
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
    broker_request_timeout=30.0,
    # Tansu reports a partition's end offset as the start of its last batch + 1;
    # one record per batch keeps table (changelog) recovery exact.
    producer_max_batch_size=settings.producer_max_batch_size,
    producer_max_request_size=8 * 1024 * 1024,
    consumer_max_fetch_size=config.CONSUMER_FETCH_BYTES,   # also the default max_message_bytes
    consumer_auto_offset_reset="earliest",
    # Acks are held until a checkpoint; on rebalance/stop commit what is safe, don't wait.
    stream_wait_empty=False,
    broker_commit_interval=settings.commit_interval,
    table_standby_replicas=0,
    web_enabled=settings.web_enabled,
    web_host=settings.web_host,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    datadir=settings.data_dir,     # never the working directory (streams.config)
)

raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
events_topic = app.topic(settings.internal_topic, partitions=settings.partitions, internal=True, **raw)
alerts_topic = app.topic(settings.topics.alerts, **raw)
retrain_topic = app.topic(settings.topics.retrain, **raw)
deadletter_topic = app.topic(settings.topics.deadletter, **raw)


class _ModelStateTable(faust.Table):
    """The state table, writing each model's records to that model's changelog partition.

    Faust writes a table key to the partition of the event being processed, but one
    checkpoint covers every dirty model, whichever partition they live on. Scattered
    over partitions, a model's checkpoints are restored in partition order, not write
    order (a stale one can win, and the events acked after the newer one are lost), and
    a worker that takes over only the model's partition may not have them at all.
    """

    write_partition: int | None = None   # set by Worker.checkpoint around each model's writes

    def partition_for_key(self, key):
        if self.write_partition is None:
            return super().partition_for_key(key)
        return self.write_partition


# One checkpoint per model: pickled ModelMonitor + applied offsets + unsent outbox.
monitor_state = app.tables.add(_ModelStateTable(
    app, name="monitor-state", default=None, beacon=app.tables.beacon, partitions=settings.partitions,
    key_type=bytes, value_type=bytes))


# A record over the producer's request size (8 MiB here, 1 MB on a default Kafka broker) makes
# Faust's producer crash the worker, and again after every restart. A wide model's reference or
# checkpoint passes that (600 features: ~15 MB), so large records are stored in parts.
STATE_PART_BYTES = 512 * 1024
_PARTS = b"driftline-parts\x00"     # head of a record stored in parts (a pickle starts with 0x80)


def _part_key(key: bytes, generation: int, index: int) -> bytes:
    return b"%s\x00part\x00%d\x00%d" % (key, generation, index)


def _parts_of(value: bytes | None) -> list | None:
    return orjson.loads(value[len(_PARTS):]) if value is not None and value.startswith(_PARTS) else None


def put_state(key: bytes, value: bytes) -> None:
    """Write a state record; past STATE_PART_BYTES as parts, then a head naming them.

    All of a model's records go to its partition in write order (_ModelStateTable), so a
    crash at any point leaves the last head written with its parts intact; the previous
    generation's parts are deleted only after the new head.
    """
    old = _parts_of(monitor_state.get(key))
    if len(value) <= STATE_PART_BYTES:
        monitor_state[key] = value
    else:
        generation, count = (old[0] + 1 if old else 0), -(-len(value) // STATE_PART_BYTES)
        for i in range(count):
            monitor_state[_part_key(key, generation, i)] = value[i * STATE_PART_BYTES:(i + 1) * STATE_PART_BYTES]
        monitor_state[key] = _PARTS + orjson.dumps([generation, count])
    if old:
        for i in range(old[1]):
            monitor_state.pop(_part_key(key, old[0], i), None)


def get_state(key: bytes) -> bytes | None:
    value = monitor_state.get(key)
    parts = _parts_of(value)
    if parts is None:
        return value
    chunks = [monitor_state.get(_part_key(key, parts[0], i)) for i in range(parts[1])]
    if any(chunk is None for chunk in chunks):
        raise LookupError(f"state record {key!r} is missing parts")
    return b"".join(chunks)


REFERENCE_PREFIX = b"ref\x00"


class _CheckpointPickler(pickle.Pickler):
    """Pickles a monitor without its reference profiles (immutable, ~75% of the bytes).

    Each reference is written to the table once under its own key; checkpoints
    refer to it by id, so a checkpoint costs the changing state only.
    """

    def __init__(self, file, references: dict):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.references = references

    def persistent_id(self, obj):
        if isinstance(obj, ReferenceProfile):
            self.references[obj.reference_id] = obj
            return obj.reference_id
        return None


class _CheckpointUnpickler(pickle.Unpickler):
    def persistent_load(self, reference_id):
        stored = get_state(REFERENCE_PREFIX + reference_id.encode())
        if stored is None:
            raise pickle.UnpicklingError(f"reference {reference_id} missing from the state table")
        return pickle.loads(stored)


def dump_checkpoint(checkpoint: dict, stored_references: set) -> bytes:
    buffer, references = io.BytesIO(), {}
    _CheckpointPickler(buffer, references).dump(checkpoint)
    for reference_id, profile in references.items():
        if reference_id not in stored_references:
            put_state(REFERENCE_PREFIX + reference_id.encode(), pickle.dumps(
                profile, protocol=pickle.HIGHEST_PROTOCOL))
            stored_references.add(reference_id)
    return buffer.getvalue()


def load_checkpoint(data: bytes) -> dict:
    return _CheckpointUnpickler(io.BytesIO(data)).load()


class ModelLimitReached(Exception):
    """A new model key past ``max_models``: its events are dead-lettered, the worker's memory stays flat."""


class Worker:
    """In-memory side of the monitor stage: live monitors, held acks, sinks, counters."""

    def __init__(self):
        self.monitors: dict[str, tuple[int, ModelMonitor]] = {}
        self.dirty: set[str] = set()
        self.held: list = []
        self.outbox: list = []
        self.last_checkpoint = time.monotonic()
        self.status_due: dict[str, float] = {}
        self.status_stale: set[str] = set()
        self.references_checked: set[tuple[str, str]] = set()
        self.stored_references: set[str] = set()
        self.last_event_at: dict[str, float] = {}
        self.counts = {"predictions": 0, "labels": 0, "deadletter": 0, "alerts_sent": 0,
                       "alerts_deduplicated": 0, "deadletter_deduplicated": 0, "retrain_sent": 0, "replayed_skipped": 0, "redelivered_skipped": 0,
                       "checkpoints": 0, "status_write_failures": 0, "processing_errors": 0, "log_restarts": 0,
                       "models_rejected": 0}
        self.router = build_sinks(
            [({**s, "url": s.get("url") or settings.redis_url} if s["type"] == "redis" else s)
             for s in settings.sinks if s["type"] != "kafka"])
        self.status = StatusStore(settings.redis_url, prefix=settings.redis_prefix)
        self.dedup = DedupGuard(settings.redis_url, prefix=f"driftline:delivered:{settings.app_id}:")
        self._tasks: set = set()
        self.ledger = CommitLedger()
        self.commit_lock = asyncio.Lock()

    # -- state -------------------------------------------------------------------
    def monitor_for(self, model: str, partition: int) -> ModelMonitor:
        entry = self.monitors.get(model)
        if entry is not None:
            return entry[1]
        stored = get_state(model.encode())
        if stored is not None:
            checkpoint = load_checkpoint(stored)
            monitor, outbox = checkpoint["monitor"], checkpoint["outbox"]
            log.info("restored %s from checkpoint (offsets %s, %d unsent)", model,
                     monitor.applied_offsets, len(outbox))
            self.outbox.extend(outbox)
        elif len(self.monitors) >= settings.max_models:
            raise ModelLimitReached(f"model limit reached: this worker monitors max_models={settings.max_models} "
                                    f"models already")
        else:
            monitor = ModelMonitor(model, settings.for_model(model), settings.version_hash)
        self.monitors[model] = (partition, monitor)
        return monitor

    def checkpoint(self) -> None:
        for model in self.dirty:
            entry = self.monitors.get(model)
            if entry is None:
                continue
            outbox = [o for o in self.outbox if o[1]["model"] == model]
            monitor_state.write_partition = entry[0]   # the model's partition (see _ModelStateTable)
            try:
                put_state(model.encode(), dump_checkpoint({"monitor": entry[1], "outbox": outbox},
                                                          self.stored_references))
            finally:
                monitor_state.write_partition = None
        self.dirty.clear()
        self.counts["checkpoints"] += 1
        self.last_checkpoint = time.monotonic()

    def ack(self, events: list) -> None:
        for event in events:
            message = event.message
            self.ledger.handled((message.topic, message.partition), message.offset)
            event.ack()

    async def commit(self) -> None:
        """Persist, deliver, acknowledge: the order that makes a crash at any step lose nothing.

        1. the monitors' state (with the offsets it applied and the unsent outputs) goes to the
           table, whose changelog Faust flushes before it commits any offset;
        2. the outputs are sent (alerts, retrain requests), each at most once per id;
        3. the held messages are marked handled, so the next commit may pass them.
        A crash after 1 replays the messages after the checkpoint (skipped: already applied)
        and re-sends the outbox (dropped by id); a crash after 2 only re-reads.
        """
        async with self.commit_lock:
            # only what this checkpoint holds: the monitor may fold in more while outputs are sent
            held, self.held = self.held, []
            self.checkpoint()
            await self.deliver()
            self.ack(held)

    def forget_partitions(self, partitions: set[int]) -> None:
        """Partitions moved away: drop their monitors and held events (the new owner replays)."""
        for model in [m for m, (p, _) in self.monitors.items() if p in partitions]:
            del self.monitors[model]
            self.dirty.discard(model)
        self.held = [e for e in self.held if e.message.partition not in partitions]
        self.outbox = [o for o in self.outbox if o[2] not in partitions]

    # -- output ------------------------------------------------------------------
    async def deliver(self) -> None:
        """Send the outbox: Kafka first (awaited), then the best-effort sinks."""
        while self.outbox:
            item = self.outbox[0]
            kind, record, _partition = item
            record_id = record.get("alert_id") or record.get("event_id")
            if not await self.dedup.delivered_before(record_id):
                topic = alerts_topic if kind == "alert" else retrain_topic
                fut = await topic.send(key=record["model"].encode(), value=orjson.dumps(record))
                await fut
                await self.dedup.mark_delivered(record_id)
                self.counts["alerts_sent" if kind == "alert" else "retrain_sent"] += 1
                metrics.instruments.sent(kind, record)
                self.router.publish(record)
                log.warning("%s %s %s/%s %s", kind.upper(), record.get("kind"), record["model"],
                            record["model_version"], record.get("message") or record.get("reason"))
            else:
                self.counts["alerts_deduplicated"] += 1
            # A rebalance during the awaits above may have replaced the outbox
            # (forget_partitions): remove this record only if it is still there.
            if item in self.outbox:
                self.outbox.remove(item)

    def schedule_status(self, model: str, monitor: ModelMonitor) -> None:
        """Write status at most once a second per model; the flush timer writes what is left."""
        now = time.monotonic()
        if now < self.status_due.get(model, 0.0):
            self.status_stale.add(model)
            return
        self.status_stale.discard(model)
        self.status_due[model] = now + 1.0
        status = monitor.status()
        status["worker"] = {**self.counts, **gaps.counts, "sinks": self.router.stats()}
        self.spawn(self._write_status(model, status), "status write")

    def spawn(self, coro, what: str) -> None:
        """Run a Redis write in the background: Redis being slow or down never stalls the stream."""
        async def guarded():
            try:
                await coro
            except Exception as exc:
                self.counts["status_write_failures"] += 1
                log.warning("%s to Redis failed (%s)", what, type(exc).__name__)

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_status(self, model: str, status: dict) -> None:
        for version, version_status in status["versions"].items():
            await self.status.write_status(model, version, {
                **version_status, "join": status["join"], "pending_labels": status["pending_labels"],
                "early_labels": status["early_labels"],
                "worker": status["worker"]})

    async def ensure_reference(self, monitor: ModelMonitor, events: list) -> None:
        """A version seen for the first time: use a reference built with `driftline reference build`."""
        for version in {e["model_version"] for e in events} - set(monitor.versions):
            key = (monitor.model, version)
            if key in self.references_checked:
                continue
            self.references_checked.add(key)
            try:   # a sharded model's shards share the model's reference
                stored = await self.status.get_reference(settings.model_of(monitor.model), version)
            except Exception as exc:
                log.warning("reference look-up for %s/%s failed (%s); using first predictions",
                            monitor.model, version, type(exc).__name__)
                continue
            if stored:
                monitor.set_reference(version, ReferenceProfile.from_dict(stored), source="explicit")
                log.info("using explicit reference %s for %s/%s", stored.get("reference_id"), *key)
            try:  # retrain-policy clocks survive a cold start (no checkpoint) through Redis
                previous = await self.status.read_status(monitor.model, version)
            except Exception:
                previous = None
            if previous:
                monitor.restore_policy(version, previous.get("deployed_at"), previous.get("last_retrain_at"))


worker = Worker()
deadletters = DeadLetterLog(log)


def _gap_consumer():
    """A group-less consumer for GapFiller, with the worker's broker and credentials."""
    import aiokafka
    from faust.transport.drivers.aiokafka import (
        credentials_to_aiokafka_auth,
        server_list,
    )

    return aiokafka.AIOKafkaConsumer(
        bootstrap_servers=server_list(app.conf.broker, 9092), group_id=None, enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context))


async def _committed_position(topic: str, partition: int) -> int | None:
    """The group's committed offset of a partition, asked of the broker (Faust's own copy of it
    can still be unset for a partition that just moved here from another worker)."""
    from aiokafka import TopicPartition

    thread = app.consumer._thread          # Faust's aiokafka consumer lives in its own thread
    consumer = thread._ensure_consumer()
    return await thread.call_thread(consumer.committed, TopicPartition(topic, partition))


app.commit_ledger = worker.ledger      # read by streams.transport.Consumer when it commits
def _highwater(topic: str, partition: int) -> int | None:
    from faust.types import TP

    return app.consumer.highwater(TP(topic, partition))


gaps = GapFiller(_gap_consumer, worker.ledger, _committed_position, _highwater)
metrics = web.install(app, worker, settings, lambda: gaps.counts)   # /metrics, /healthz, /readyz


def _log_recreated(tp, first_offset: int) -> None:
    """Called by streams.transport.Consumer: a partition's log started again (new offsets)."""
    log.warning("%s[%d] was recreated (offsets start again at %d): positions of the old log forgotten",
                tp.topic, tp.partition, first_offset)
    gaps.restart(tp.topic, tp.partition, first_offset)


app.on_log_recreated = _log_recreated


@app.on_partitions_revoked.connect
async def on_revoked(app, revoked, **kwargs) -> None:
    gaps.forget(revoked)
    worker.forget_partitions({tp.partition for tp in revoked if tp.topic == settings.internal_topic})


def _fresh(mon: ModelMonitor, field: str, body: dict) -> tuple[list, list]:
    """The events of an internal message that ``mon`` has not folded in yet (streams.positions)."""
    items = body[field]
    found, sources = positions.fresh(mon.applied_offsets, field, items, body.get("src"))
    worker.counts["redelivered_skipped"] += len(items) - len(found)
    return found, sources


def _aiokafka_options() -> dict:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

    return {"bootstrap_servers": server_list(app.conf.broker, 9092), "request_timeout_ms": 30_000,
            **credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)}


def _ingest_consumer(listener):
    """The ingest stage's consumer: a group of its own, offsets committed by the loop itself."""
    import aiokafka

    consumer = aiokafka.AIOKafkaConsumer(
        group_id=f"{settings.app_id}-ingest", enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=config.CONSUMER_FETCH_BYTES, fetch_max_bytes=4 * config.CONSUMER_FETCH_BYTES,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        # Tansu holds a group join up to half the session timeout: keep it short (as the app's)
        session_timeout_ms=6_000, heartbeat_interval_ms=1_000, **_aiokafka_options())
    consumer.subscribe([settings.topics.predictions, settings.topics.labels], listener=listener)
    return consumer


def _ingest_producer():
    import aiokafka

    # one record per batch on the internal topic, as the app's producer writes it (its highwater
    # is then exact on the embedded broker, see _log_restarted); no idempotent producer on Tansu
    return aiokafka.AIOKafkaProducer(
        acks="all", linger_ms=0, max_batch_size=settings.producer_max_batch_size,
        max_request_size=8 * 1024 * 1024, enable_idempotence=False, **_aiokafka_options())


ingest = IngestLoop(
    [Source(settings.topics.predictions, "p", records.decode_predictions),
     Source(settings.topics.labels, "l", records.decode_labels)],
    IngestOptions(internal_topic=settings.internal_topic, deadletter_topic=settings.topics.deadletter,
                  max_message_bytes=settings.max_message_bytes, batch_records=settings.ingest_batch,
                  linger_ms=max(1, int(settings.ingest_linger * 1000)),
                  monitor_key=settings.monitor_key if settings.shards else None),
    _ingest_consumer, _ingest_producer, worker.dedup, deadletters, worker.counts,
    on_deadletter=lambda reason: metrics.instruments.deadlettered(reason))
app.service(ingest)        # started with the app once its tables are recovered, stopped with it


@app.agent(events_topic)
async def monitor(stream):
    async for event in stream.noack().events():
        for item in await gaps.fill([event]):
            await _monitor_one(item)


def _log_restarted(message, applied: int) -> bool:
    """Whether the partition's log ends at or before ``applied``: a Kafka log only grows, so one
    that no longer holds an offset the state applied is a new log, not a replay of the old one.

    The highwater comes with every fetch response; the internal topic is written one record per
    batch, so it is exact even on the embedded broker (which reports the start of the last batch).
    """
    from faust.types import TP

    try:
        highwater = app.consumer.highwater(TP(message.topic, message.partition))
    except Exception:       # not known yet (no fetch answered since the assignment)
        return False
    return highwater is not None and 0 <= highwater <= applied


async def _monitor_one(event) -> None:
    """Fold one internal message into its model's monitor; checkpoint, deliver and ack when due.

    Everything that can wait (a reference look-up in Redis, a dead letter) happens before the
    state changes or after it is whole: a checkpoint taken meanwhile (the shutdown hook's)
    sees the message applied entirely or not at all, and only then is it held for its ack.
    """
    message = event.message
    model = event.key.decode()
    try:
        mon = worker.monitor_for(model, message.partition)
        if not _replayed(mon, message):
            body = orjson.loads(event.value)
            if "p" in body:
                await worker.ensure_reference(mon, body["p"])
                if worker.monitors.get(model, (None, None))[1] is not mon:
                    return       # its partition was revoked meanwhile: the next owner replays the message
            _fold(mon, model, message, body)
        worker.held.append(event)
        worker.schedule_status(model, mon)
    except ModelLimitReached as exc:
        worker.counts["models_rejected"] += 1
        metrics.instruments.deadlettered("model limit reached")
        await _dead_letter(event, str(exc))
        worker.held.append(event)
    except Exception as exc:  # a bug must not stop the stream: park the message, keep going
        worker.counts["processing_errors"] += 1
        metrics.instruments.deadlettered("processing error")
        log.exception("processing %s@%s failed", model, message.offset)
        await _dead_letter(event, f"processing error: {exc!r}")
        worker.held.append(event)
    if worker.outbox or time.monotonic() - worker.last_checkpoint >= settings.checkpoint_seconds:
        await worker.commit()


def _replayed(mon: ModelMonitor, message) -> bool:
    """Whether the state has applied this internal message already (a replay after a restore)."""
    applied = mon.applied_offsets.get(message.partition, -1)
    if message.offset <= applied and _log_restarted(message, applied):
        log.warning("%s[%d] ends before offset %d, which %s's state has applied: the log was recreated "
                    "(a memory-only broker restarted, or the topic was deleted); counting from its start",
                    message.topic, message.partition, applied, mon.model)
        mon.applied_offsets.clear()     # internal offsets and source positions are from the lost log
        worker.counts["log_restarts"] += 1
    if message.offset <= mon.applied_offsets.get(message.partition, -1):
        worker.counts["replayed_skipped"] += 1
        return True
    return False


def _fold(mon: ModelMonitor, model: str, message, body: dict) -> None:
    """Apply a message's fresh events and queue what they emit (no awaits: one step for a checkpoint)."""
    out: list = []
    if "p" in body:
        predictions, sources = _fresh(mon, "p", body)
        out = mon.add_predictions(predictions, offset=message.offset, partition=message.partition, sources=sources)
        for entry in mon.archive():
            worker.spawn(worker.status.archive_reference(entry), "reference archive")
        worker.counts["predictions"] += len(predictions)
    elif "l" in body:
        labels, _ = _fresh(mon, "l", body)
        out = mon.add_labels(labels)
        worker.counts["labels"] += len(labels)
    elif "tick" in body:
        out = mon.tick(body["tick"])
    for summary in mon.window_summaries():
        worker.spawn(worker.status.append_window(summary, settings.history_windows), "window history")
    if "tick" not in body:
        worker.last_event_at[model] = time.monotonic()
    mon.applied_offsets[message.partition] = message.offset
    worker.dirty.add(model)
    worker.outbox.extend((kind, record, message.partition) for kind, record in out)


async def _dead_letter(event, reason: str) -> None:
    """Park an internal message the monitor could not fold in, once per id."""
    message = event.message
    record = records.deadletter_record(event.value, reason, settings.internal_topic, message.partition, message.offset)
    if await worker.dedup.delivered_before(record["deadletter_id"]):
        worker.counts["deadletter_deduplicated"] += 1
        return
    deadletters.record(f"{reason} (model {event.key.decode()})", settings.internal_topic, message.partition,
                       message.offset, None)      # the worker log, rate-limited like ingest's dead letters
    await (await deadletter_topic.send(key=event.key, value=orjson.dumps(record)))
    await worker.dedup.mark_delivered(record["deadletter_id"])


@app.timer(interval=settings.tick_seconds)
async def tick() -> None:
    """Event-time ticks through the topic itself, so idle windows close and replays stay deterministic."""
    now, idle_since = time.time(), time.monotonic() - settings.tick_seconds
    for model, (_partition, mon) in list(worker.monitors.items()):
        # only idle models with something pending: an open window, or state not yet checkpointed
        if worker.last_event_at.get(model, 0.0) > idle_since:
            continue
        if model in worker.dirty or any(v.window.n for v in mon.versions.values()):
            await events_topic.send(key=model.encode(), value=orjson.dumps({"tick": now}))


@app.timer(interval=1.0)
async def flush_status() -> None:
    """Status of models that changed since their last (rate-limited) write."""
    for model in list(worker.status_stale):
        entry = worker.monitors.get(model)
        if entry is None:
            worker.status_stale.discard(model)
        else:
            worker.schedule_status(model, entry[1])


@app.task
async def start_sinks() -> None:
    await worker.router.start()


def _exit_if_stuck(timeout: float) -> None:
    """End the process if shutdown has not finished after ``timeout`` seconds.

    With the broker unreachable, Faust's consumer thread can die while stopping and the
    worker then waits for it forever (seen here: still running 60 s after SIGTERM). The
    state is in the checkpoint and uncommitted input is replayed by the next worker, so a
    hard exit loses nothing; it is logged and exits 1 so a supervisor sees an unclean stop.
    """
    import os
    import threading

    def stuck() -> None:
        log.error("shutdown did not finish in %.0f s (is the broker reachable?); exiting now, "
                  "uncommitted input will be replayed by the next worker", timeout)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(timeout, stuck)
    timer.daemon = True
    timer.start()


@app.on_before_shutdown.connect
async def flush_on_shutdown(app, **kwargs) -> None:
    """SIGTERM: checkpoint and deliver what the monitor holds, so the commit Faust makes when its
    consumer stops covers everything handled; the next worker re-reads only what was in flight."""
    _exit_if_stuck(settings.shutdown_timeout)
    try:
        if worker.dirty or worker.outbox or worker.held:
            log.info("shutdown: checkpointing %d models, %d unsent outputs, %d held events",
                     len(worker.dirty), len(worker.outbox), len(worker.held))
            await asyncio.wait_for(worker.commit(), timeout=max(1.0, settings.shutdown_timeout / 2))
        await asyncio.wait_for(worker.router.stop(flush_timeout=5), timeout=8)
        await worker.status.close()
        await worker.dedup.close()
        await gaps.close()
    except Exception:
        log.exception("error while flushing sinks at shutdown")
