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
import logging
import time

import faust
import orjson

from detectors.monitor import ModelMonitor
from streams import config, positions, records, transport, web
from streams.deadletter_log import DeadLetterLog
from streams.gaps import GapFiller
from streams.ingest import IngestLoop, IngestOptions, Source
from streams.state import StateStore
from streams.worker import ModelLimitReached, Worker

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


state = StateStore(monitor_state)
worker = Worker.from_settings(settings, state, {"alert": alerts_topic, "retrain": retrain_topic},
                              instruments=lambda: metrics.instruments,
                              extra_counts=lambda: {**gaps.counts, **ingest.ingest_counts})
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


async def _previous_group_positions(tps) -> dict:
    """Where the app's group (which ran ingest as Faust agents before) committed the input partitions."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**_aiokafka_options())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.app_id, partitions=list(tps))
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


ingest = IngestLoop(
    [Source(settings.topics.predictions, "p", records.decode_predictions),
     Source(settings.topics.labels, "l", records.decode_labels)],
    IngestOptions(internal_topic=settings.internal_topic, deadletter_topic=settings.topics.deadletter,
                  max_message_bytes=settings.max_message_bytes, batch_records=settings.ingest_batch,
                  linger_ms=max(1, int(settings.ingest_linger * 1000)), commit_interval=settings.commit_interval,
                  monitor_key=settings.monitor_key if settings.shards else None),
    _ingest_consumer, _ingest_producer, worker.dedup, deadletters, worker.counts,
    on_deadletter=lambda reason: metrics.instruments.deadlettered(reason),
    fallback_positions=_previous_group_positions)
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
            _fold(mon, model, message, body, len(event.value))
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


def _fold(mon: ModelMonitor, model: str, message, body: dict, nbytes: int = 0) -> None:
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
        worker.router.publish_window(summary)        # sinks that take windows (mlflow); never blocks
    if "tick" not in body:
        worker.last_event_at[model] = time.monotonic()
    mon.applied_offsets[message.partition] = message.offset
    worker.folded(model, nbytes, tick="tick" in body)
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
    """Status of the models that changed in the last second, in one Redis write."""
    worker.flush_statuses()


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
            await asyncio.wait_for(worker.commit(force=True), timeout=max(1.0, settings.shutdown_timeout / 2))
        await asyncio.wait_for(worker.router.stop(flush_timeout=5), timeout=8)
        await worker.status.close()
        await worker.dedup.close()
        await gaps.close()
    except Exception:
        log.exception("error while flushing sinks at shutdown")
