"""The worker built from the settings: the Faust app, its topics, the state table and the two stages.

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

Nothing is read or built at import: :func:`build_app` makes a :class:`DriftlineApp` from a
``Settings`` (``driftline worker`` does); the per-message logic is
:class:`streams.monitor_stage.MonitorStage`, the commit :meth:`streams.worker.Worker.commit`.
``streams.app.app``, which ``faust -A streams.app`` looks up, is built on first access from
``config.current()`` (:func:`current`).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time

import faust
import orjson

from streams import config, records, transport, web
from streams.consumer_positions import ConsumerPositions
from streams.deadletter_log import DeadLetterLog
from streams.gaps import GapFiller
from streams.ingest import IngestLoop, IngestOptions, Source
from streams.kafka_clients import KafkaClients
from streams.log_probe import RecordProbe
from streams.monitor_stage import MonitorStage
from streams.state import StateStore
from streams.worker import Worker

log = logging.getLogger("driftline")

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def faust_app(settings) -> faust.App:
    """The Faust app of a worker with ``settings`` (no broker contacted until it starts)."""
    return faust.App(
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


class _ModelStateTable(faust.Table):
    """The state table, writing each model's records to that model's changelog partition.

    Faust writes a table key to the partition of the event being processed, but one
    checkpoint covers every dirty model, whichever partition they live on. Scattered
    over partitions, a model's checkpoints are restored in partition order, not write
    order (a stale one can win, and the events acked after the newer one are lost), and
    a worker that takes over only the model's partition may not have them at all.
    """

    write_partition: int | None = None   # set by StateStore.save_checkpoint around each model's writes

    def partition_for_key(self, key):
        if self.write_partition is None:
            return super().partition_for_key(key)
        return self.write_partition


class DriftlineApp:
    """One worker: the Faust app and the objects it runs, built from ``settings``.

    ``app`` (faust.App), the topics (``events_topic``, the internal one; ``alerts_topic``,
    ``retrain_topic``, ``deadletter_topic``), ``table`` (``monitor-state``: one checkpoint per
    model, the pickled ModelMonitor with its applied offsets and unsent outbox) behind
    ``state`` (StateStore), ``worker`` (Worker: monitors, held acks, outbox, the commit),
    ``gaps`` (GapFiller), ``ingest`` (IngestLoop, a service of the app), ``metrics`` (the web
    endpoints' registry) and ``stage`` (MonitorStage: what one internal message does). The
    agent, timers and hooks registered on ``app`` are this object's methods.
    """

    def __init__(self, settings) -> None:
        self.settings = settings
        self.app = app = faust_app(settings)
        self.events_topic = app.topic(settings.internal_topic, partitions=settings.partitions, internal=True, **RAW)
        self.alerts_topic = app.topic(settings.topics.alerts, **RAW)
        self.retrain_topic = app.topic(settings.topics.retrain, **RAW)
        self.deadletter_topic = app.topic(settings.topics.deadletter, **RAW)
        self.table = app.tables.add(_ModelStateTable(
            app, name="monitor-state", default=None, beacon=app.tables.beacon, partitions=settings.partitions,
            key_type=bytes, value_type=bytes))
        self.state = StateStore(self.table)
        self.worker = worker = Worker.from_settings(
            settings, self.state, {"alert": self.alerts_topic, "retrain": self.retrain_topic},
            instruments=lambda: self.metrics.instruments,
            extra_counts=lambda: {**self.gaps.counts, **self.ingest.ingest_counts})
        self.positions = ConsumerPositions(app)
        self.clients = KafkaClients(settings, app.conf)
        self.gaps = GapFiller(self.clients.gap_consumer, worker.ledger, self.positions.committed,
                              self.positions.highwater)
        self.metrics = web.install(app, worker, settings, lambda: self.gaps.counts)   # /metrics, /healthz, /readyz
        deadletters = DeadLetterLog(log)
        self.ingest = IngestLoop(
            [Source(settings.topics.predictions, "p", records.decode_predictions),
             Source(settings.topics.labels, "l", records.decode_labels)],
            IngestOptions(internal_topic=settings.internal_topic, deadletter_topic=settings.topics.deadletter,
                          max_message_bytes=settings.max_message_bytes, batch_records=settings.ingest_batch,
                          linger_ms=max(1, int(settings.ingest_linger * 1000)),
                          commit_interval=settings.commit_interval,
                          prediction_columns=settings.internal_columns,
                          monitor_key=settings.monitor_key if settings.shards else None),
            self.clients.ingest_consumer, self.clients.ingest_producer, worker.dedup, deadletters, worker.counts,
            on_deadletter=lambda reason: self.metrics.instruments.deadlettered(reason),
            fallback_positions=self.clients.previous_group_positions,
            topic_identity=self.clients.topic_identity())
        self.probe = RecordProbe(self.clients.gap_consumer)
        self.stage = MonitorStage(settings, worker, self.deadletter_topic, self.positions.highwater,
                                  instruments=lambda: self.metrics.instruments, deadletters=deadletters,
                                  probe=self.probe)
        # read by streams.transport.Consumer: the fetch wait, the offsets to commit, recreated logs
        app.driftline_consumer = transport.ConsumerHooks(
            fetch_max_wait_ms=settings.fetch_max_wait_ms, ledger=worker.ledger, on_log_recreated=self.log_recreated,
            from_start=frozenset({settings.internal_topic}))
        self._register()

    def _register(self) -> None:
        app, settings = self.app, self.settings
        app.service(self.ingest)        # started with the app once its tables are recovered, stopped with it
        app.agent(self.events_topic, name="streams.app.monitor")(self.monitor)
        app.timer(interval=settings.tick_seconds, name="streams.app.tick")(self.tick)
        app.timer(interval=1.0, name="streams.app.flush_status")(self.flush_status)
        app.task(self.start_sinks)
        app.on_partitions_revoked.connect(self.on_revoked)
        app.on_before_shutdown.connect(self.flush_on_shutdown)

    # -- the monitor agent and its hooks ------------------------------------------------
    async def monitor(self, stream) -> None:
        """The internal topic, each message in offset order (skipped ones read back first)."""
        async for event in stream.noack().events():
            for item in await self.gaps.fill([event]):
                await self.stage.handle(item)

    def log_recreated(self, tp, first_offset: int) -> None:
        """Called by streams.transport.Consumer: a partition's log started again (new offsets)."""
        log.warning("%s[%d] was recreated (offsets start again at %d): positions of the old log forgotten",
                    tp.topic, tp.partition, first_offset)
        self.gaps.restart(tp.topic, tp.partition, first_offset)
        self.stage.forget({tp.partition})

    async def on_revoked(self, app, revoked, **kwargs) -> None:
        self.gaps.forget(revoked)
        self.stage.forget({tp.partition for tp in revoked if tp.topic == self.settings.internal_topic})
        self.worker.forget_partitions({tp.partition for tp in revoked if tp.topic == self.settings.internal_topic})

    async def tick(self) -> None:
        """Event-time ticks through the topic itself, so idle windows close and replays stay deterministic."""
        now = time.time()
        for model in self.stage.models_to_tick():
            await self.events_topic.send(key=model.encode(), value=orjson.dumps({"tick": now}))

    async def flush_status(self) -> None:
        """Status of the models that changed in the last second, in one Redis write."""
        self.worker.flush_statuses()

    async def start_sinks(self) -> None:
        await self.worker.router.start()

    async def flush_on_shutdown(self, app, **kwargs) -> None:
        """SIGTERM: checkpoint and deliver what the monitor holds, so the commit Faust makes when its
        consumer stops covers everything handled; the next worker re-reads only what was in flight."""
        settings, worker = self.settings, self.worker
        _exit_if_stuck(settings.shutdown_timeout)
        try:
            if worker.dirty or worker.outbox or worker.held:
                log.info("shutdown: checkpointing %d models, %d unsent outputs, %d held events",
                         len(worker.dirty), len(worker.outbox), len(worker.held))
                await asyncio.wait_for(worker.commit(force=True), timeout=max(1.0, settings.shutdown_timeout / 2))
            await asyncio.wait_for(worker.router.stop(flush_timeout=5), timeout=8)
            await worker.status.close()
            await worker.dedup.close()
            await self.gaps.close()
            await self.probe.close()
        except Exception:
            log.exception("error while flushing sinks at shutdown")


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


def build_app(settings) -> DriftlineApp:
    """A worker built from ``settings``: what ``driftline worker`` runs (``.app`` is the Faust app)."""
    return DriftlineApp(settings)


@functools.cache
def current() -> DriftlineApp:
    """This process's worker, built once from ``config.current()``: the one place the module
    reads the settings, on first use (``faust -A streams.app``, bench/_worker.py), not at import."""
    return build_app(config.current())


def __getattr__(name: str):
    # `faust -A streams.app worker` looks up the module's `app`
    if name == "app":
        return current().app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
