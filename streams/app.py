"""The Faust app: topics, the state table and the two stages of the worker.

    driftline.predictions ─┐                        ┌─> driftline.alerts
                           ├─ ingest ─> <app>-monitor-events ─ monitor ─┼─> driftline.retrain
    driftline.labels ──────┘   │        (keyed by model)                └─> Redis / webhook / file / log
                               └─> driftline.deadletter

*ingest* decodes and validates raw messages in batches (bad input goes to the
dead-letter topic, valid events behind it keep flowing) and re-keys them by
model, so a prediction and its label meet in the same partition whichever
topic, key or order they came with. Many small messages become a few large ones,
which is what keeps Faust's per-message cost off the statistics.

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
from streams import config, records

log = logging.getLogger("driftline")
settings = config.current()

app = faust.App(
    settings.app_id,
    broker=settings.broker,
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
    consumer_max_fetch_size=8 * 1024 * 1024,
    consumer_auto_offset_reset="earliest",
    # Acks are held until a checkpoint; on rebalance/stop commit what is safe, don't wait.
    stream_wait_empty=False,
    table_standby_replicas=0,
    web_enabled=settings.web_enabled,
    web_host=settings.web_host,
    web_bind=settings.web_host,
    web_port=settings.web_port,
)

raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
predictions_topic = app.topic(settings.topics.predictions, **raw)
labels_topic = app.topic(settings.topics.labels, **raw)
events_topic = app.topic(settings.internal_topic, partitions=settings.partitions, internal=True, **raw)
alerts_topic = app.topic(settings.topics.alerts, **raw)
retrain_topic = app.topic(settings.topics.retrain, **raw)
deadletter_topic = app.topic(settings.topics.deadletter, **raw)

# One checkpoint per model: pickled ModelMonitor + applied offsets + unsent outbox.
monitor_state = app.Table("monitor-state", default=None, partitions=settings.partitions,
                          key_type=bytes, value_type=bytes)


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
        stored = monitor_state.get(REFERENCE_PREFIX + reference_id.encode())
        if stored is None:
            raise pickle.UnpicklingError(f"reference {reference_id} missing from the state table")
        return pickle.loads(stored)


def dump_checkpoint(checkpoint: dict, stored_references: set) -> bytes:
    buffer, references = io.BytesIO(), {}
    _CheckpointPickler(buffer, references).dump(checkpoint)
    for reference_id, profile in references.items():
        if reference_id not in stored_references:
            monitor_state[REFERENCE_PREFIX + reference_id.encode()] = pickle.dumps(
                profile, protocol=pickle.HIGHEST_PROTOCOL)
            stored_references.add(reference_id)
    return buffer.getvalue()


def load_checkpoint(data: bytes) -> dict:
    return _CheckpointUnpickler(io.BytesIO(data)).load()


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
                       "alerts_deduplicated": 0, "retrain_sent": 0, "replayed_skipped": 0,
                       "checkpoints": 0, "status_write_failures": 0, "processing_errors": 0}
        self.router = build_sinks(
            [({**s, "url": s.get("url") or settings.redis_url} if s["type"] == "redis" else s)
             for s in settings.sinks if s["type"] != "kafka"])
        self.status = StatusStore(settings.redis_url)
        self.dedup = DedupGuard(settings.redis_url, prefix=f"driftline:delivered:{settings.app_id}:")
        self._tasks: set = set()

    # -- state -------------------------------------------------------------------
    def monitor_for(self, model: str, partition: int) -> ModelMonitor:
        entry = self.monitors.get(model)
        if entry is not None:
            return entry[1]
        stored = monitor_state.get(model.encode())
        if stored is not None:
            checkpoint = load_checkpoint(stored)
            monitor, outbox = checkpoint["monitor"], checkpoint["outbox"]
            log.info("restored %s from checkpoint (offsets %s, %d unsent)", model,
                     monitor.applied_offsets, len(outbox))
            self.outbox.extend(outbox)
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
            monitor_state[model.encode()] = dump_checkpoint({"monitor": entry[1], "outbox": outbox},
                                                            self.stored_references)
        self.dirty.clear()
        self.counts["checkpoints"] += 1
        self.last_checkpoint = time.monotonic()

    def ack_held(self) -> None:
        for event in self.held:
            event.ack()
        self.held.clear()

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
            kind, record, _partition = self.outbox[0]
            record_id = record.get("alert_id") or record.get("event_id")
            if await self.dedup.first_delivery(record_id):
                topic = alerts_topic if kind == "alert" else retrain_topic
                try:
                    fut = await topic.send(key=record["model"].encode(), value=orjson.dumps(record))
                    await fut
                except Exception:
                    await self.dedup.forget(record_id)
                    raise
                self.counts["alerts_sent" if kind == "alert" else "retrain_sent"] += 1
                self.router.publish(record)
                log.warning("%s %s %s/%s %s", kind.upper(), record.get("kind"), record["model"],
                            record["model_version"], record.get("message") or record.get("reason"))
            else:
                self.counts["alerts_deduplicated"] += 1
            self.outbox.pop(0)

    def schedule_status(self, model: str, monitor: ModelMonitor) -> None:
        """Write status at most once a second per model; the flush timer writes what is left."""
        now = time.monotonic()
        if now < self.status_due.get(model, 0.0):
            self.status_stale.add(model)
            return
        self.status_stale.discard(model)
        self.status_due[model] = now + 1.0
        status = monitor.status()
        status["worker"] = {**self.counts, "sinks": self.router.stats()}
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
                "worker": status["worker"]})

    async def ensure_reference(self, monitor: ModelMonitor, events: list) -> None:
        """A version seen for the first time: use a reference built with `driftline reference build`."""
        for version in {e["model_version"] for e in events} - set(monitor.versions):
            key = (monitor.model, version)
            if key in self.references_checked:
                continue
            self.references_checked.add(key)
            try:
                stored = await self.status.get_reference(monitor.model, version)
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


@app.on_partitions_revoked.connect
async def on_revoked(app, revoked, **kwargs) -> None:
    worker.forget_partitions({tp.partition for tp in revoked if tp.topic == settings.internal_topic})


async def _route(events, validate, field: str, source) -> None:
    """Validate a batch of raw messages; forward valid events per model, dead-letter the rest."""
    by_model: dict[str, list] = {}
    sends = []
    for event in events:
        message = event.message
        good, bad = records.decode(event.value, message.timestamp, validate, settings.max_message_bytes)
        for item in good:
            by_model.setdefault(item["model"], []).append(item)
        for index, reason in bad:
            worker.counts["deadletter"] += 1
            record = records.deadletter_record(event.value, reason, source, message.partition,
                                               message.offset, index)
            sends.append(await deadletter_topic.send(key=message.key, value=orjson.dumps(record)))
    for model, items in by_model.items():
        sends.append(await events_topic.send(key=model.encode(), value=orjson.dumps({field: items})))
    # Wait for delivery before take_events() acks the source messages: at-least-once.
    if sends:
        await asyncio.gather(*sends)


@app.agent(predictions_topic)
async def ingest_predictions(stream):
    async for events in stream.take_events(settings.ingest_batch, within=settings.ingest_linger):
        await _route(events, records.validate_prediction, "p", settings.topics.predictions)


@app.agent(labels_topic)
async def ingest_labels(stream):
    async for events in stream.take_events(settings.ingest_batch, within=settings.ingest_linger):
        await _route(events, records.validate_label, "l", settings.topics.labels)


@app.agent(events_topic)
async def monitor(stream):
    async for event in stream.noack().events():
        worker.held.append(event)
        message = event.message
        model = event.key.decode()
        try:
            mon = worker.monitor_for(model, message.partition)
            if message.offset <= mon.applied_offsets.get(message.partition, -1):
                worker.counts["replayed_skipped"] += 1
            else:
                body = orjson.loads(event.value)
                out: list = []
                if "p" in body:
                    await worker.ensure_reference(mon, body["p"])
                    out = mon.add_predictions(body["p"], offset=message.offset, partition=message.partition)
                    for entry in mon.archive():
                        worker.spawn(worker.status.archive_reference(entry), "reference archive")
                    worker.counts["predictions"] += len(body["p"])
                elif "l" in body:
                    out = mon.add_labels(body["l"])
                    worker.counts["labels"] += len(body["l"])
                elif "tick" in body:
                    out = mon.tick(body["tick"])
                if "tick" not in body:
                    worker.last_event_at[model] = time.monotonic()
                mon.applied_offsets[message.partition] = message.offset
                worker.dirty.add(model)
                worker.outbox.extend((kind, record, message.partition) for kind, record in out)
            worker.schedule_status(model, mon)
        except Exception as exc:  # a bug must not stop the stream: park the message, keep going
            worker.counts["processing_errors"] += 1
            log.exception("processing %s@%s failed", model, message.offset)
            record = records.deadletter_record(event.value, f"processing error: {exc!r}", settings.internal_topic,
                                               message.partition, message.offset)
            await deadletter_topic.send(key=event.key, value=orjson.dumps(record))
        if worker.outbox or time.monotonic() - worker.last_checkpoint >= settings.checkpoint_seconds:
            worker.checkpoint()
            await worker.deliver()
            worker.ack_held()


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


@app.on_before_shutdown.connect
async def flush_on_shutdown(app, **kwargs) -> None:
    """SIGTERM: deliver what is pending, then let Faust commit what is safe."""
    try:
        if worker.dirty or worker.outbox:
            log.info("shutdown: %d unsent outputs, %d held events", len(worker.outbox), len(worker.held))
        await asyncio.wait_for(worker.router.stop(flush_timeout=5), timeout=8)
        await worker.status.close()
        await worker.dedup.close()
    except Exception:
        log.exception("error while flushing sinks at shutdown")
