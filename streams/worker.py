"""The monitor stage's in-memory side: live monitors, held acks, the outbox, and the commit.

:meth:`Worker.commit` is the delivery guarantee in one place: persist (checkpoint), deliver
(outbox), acknowledge (held input). The Faust wiring is in :mod:`streams.app`; this class
needs no broker (``tests/streams/test_worker_commit.py`` runs it on a dict and fakes).
"""
from __future__ import annotations

import asyncio
import logging
import time

import orjson

from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile
from sinks import StatusStore, build_sinks, envelope_of
from sinks.dedup import DedupGuard
from streams.ledger import CommitLedger
from streams.state import StateStore

log = logging.getLogger("driftline")


def _with_defaults(settings, entry: dict) -> dict:
    """A [[sinks]] entry with what only the worker knows: the Redis URL, the CloudEvents source."""
    if entry["type"] == "redis":
        entry = {**entry, "url": entry.get("url") or settings.redis_url}
    if entry.get("envelope") == "cloudevents":
        entry = {**entry, "source": entry.get("source") or f"/driftline/{settings.app_id}"}
    return entry


def outgoing(envelope, record: dict) -> tuple[bytes, list | None]:
    """The value and headers an alert or retrain request is written with on its topic."""
    if envelope is None:
        return orjson.dumps(record), None
    if envelope.mode == "binary":
        return orjson.dumps(record), envelope.kafka_headers(record)
    return orjson.dumps(envelope.structured(record)), None


# A model is checkpointed once it has folded in this many times the bytes of its state (its last
# checkpoint whole), or after checkpoint_max_seconds: bench.models measures the changelog against
# the input.
CHECKPOINT_GROWTH = 4.0


def _model_of(event) -> str:
    return event.key.decode() if isinstance(event.key, bytes) else str(event.key)


class ModelLimitReached(Exception):
    """A new model key past ``max_models``: its events are dead-lettered, the worker's memory stays flat."""


class Worker:
    """In-memory side of the monitor stage: live monitors, held acks, sinks, counters.

    Built from the settings and handed what it writes to: ``state`` (a :class:`StateStore`),
    ``outputs`` (``{"alert": topic, "retrain": topic}``, anything whose ``send(key=, value=)``
    returns an awaitable delivery), the sinks ``router``, the Redis ``status`` store and the
    ``dedup`` guard; :meth:`from_settings` builds the last three as the worker runs them.
    ``instruments()`` returns the metrics instruments (or None), ``extra_counts()`` counters
    of other parts (the gap filler's, the ingest loop's) shown in the status.
    """

    def __init__(self, settings, state: StateStore, outputs: dict, router, status, dedup,
                 instruments=lambda: None, extra_counts=dict, envelope=None):
        self.settings = settings
        self.envelope = envelope     # the alerts/retrain topics: plain records, or CloudEvents
        self.state = state
        self.outputs = outputs
        self.instruments = instruments
        self.extra_counts = extra_counts
        self.monitors: dict[str, tuple[int, ModelMonitor]] = {}
        self.dirty: set[str] = set()
        # what each model folded in since its checkpoint (bytes of internal messages), the size of
        # that checkpoint, and since when it has been dirty: a model is checkpointed when its changes
        # are worth it (see checkpoint), not every few seconds
        self.unsaved_bytes: dict[str, int] = {}
        self.saved_bytes: dict[str, int] = {}
        self.dirty_since: dict[str, float] = {}
        self.idle: set[str] = set()
        self.held: list = []
        self.outbox: list = []
        self.last_checkpoint = time.monotonic()
        self.status_stale: set[str] = set()
        self.references_checked: set[tuple[str, str]] = set()
        self.last_event_at: dict[str, float] = {}
        self.counts = {"predictions": 0, "labels": 0, "deadletter": 0, "alerts_sent": 0,
                       "alerts_deduplicated": 0, "deadletter_deduplicated": 0, "retrain_sent": 0, "replayed_skipped": 0, "redelivered_skipped": 0,
                       "checkpoints": 0, "status_write_failures": 0, "processing_errors": 0, "log_restarts": 0,
                       "models_rejected": 0, "checkpoint_bytes": 0}
        self.router = router
        self.status = status
        self.dedup = dedup
        self._tasks: set = set()
        self.ledger = CommitLedger()
        self.commit_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings, state: StateStore, outputs: dict, **kwargs) -> "Worker":
        entries = [_with_defaults(settings, s) for s in settings.sinks]
        router = build_sinks([s for s in entries if s["type"] != "kafka"])
        # CloudEvents on the alerts/retrain topics if a [[sinks]] type = "kafka" asks
        kwargs.setdefault("envelope", next(
            (envelope_of(s) for s in entries if s["type"] == "kafka" and envelope_of(s)), None))
        status = StatusStore(settings.redis_url, prefix=settings.redis_prefix)
        dedup = DedupGuard(settings.redis_url, prefix=f"driftline:delivered:{settings.app_id}:")
        return cls(settings, state, outputs, router, status, dedup, **kwargs)

    # -- state -------------------------------------------------------------------
    def monitor_for(self, model: str, partition: int) -> ModelMonitor:
        entry = self.monitors.get(model)
        if entry is not None:
            return entry[1]
        settings = self.settings
        checkpoint = self.state.load_checkpoint(model.encode())
        if checkpoint is not None:
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

    def folded(self, model: str, nbytes: int, tick: bool = False) -> None:
        """``model``'s state took in an internal message of ``nbytes``: it is dirty until checkpointed.

        ``tick``: the message was an idle tick (the model had no traffic for ``tick_seconds``): an
        idle model is checkpointed at once, so its partition's acks do not wait for it."""
        if model not in self.dirty:
            self.dirty.add(model)
            self.dirty_since[model] = time.monotonic()
        self.unsaved_bytes[model] = self.unsaved_bytes.get(model, 0) + nbytes
        if tick:
            self.idle.add(model)

    def _due(self, model: str, now: float, force: bool, with_outputs: set) -> bool:
        """Whether ``model`` is checkpointed now: always when forced (shutdown), when it has
        outputs to send (they are persisted before delivery) or when it went idle; otherwise once it has folded in
        CHECKPOINT_GROWTH x the size of its last checkpoint, or has been dirty for
        ``checkpoint_max_seconds``. A checkpoint writes only the blocks of state that changed
        (:mod:`streams.state_blocks`), and each block that changes costs its whole size: fewer,
        larger checkpoints write fewer bytes. The changelog grows with the traffic, not with the
        number of models x their state, and a crash replays at most ``checkpoint_max_seconds`` of
        a partition."""
        if force or model in with_outputs or model in self.idle:
            return True
        if self.unsaved_bytes.get(model, 0) >= CHECKPOINT_GROWTH * self.saved_bytes.get(model, 0):
            return True
        return now - self.dirty_since.get(model, now) >= self.settings.checkpoint_max_seconds

    def checkpoint(self, force: bool = False) -> set[str]:
        """Checkpoint the dirty models that are due (:meth:`_due`); returns those still dirty."""
        now = time.monotonic()
        with_outputs = {o[1]["model"] for o in self.outbox}
        for model in list(self.dirty):
            entry = self.monitors.get(model)
            if entry is None:
                self._saved(model, 0)
                continue
            if not self._due(model, now, force, with_outputs):
                continue
            outbox = [o for o in self.outbox if o[1]["model"] == model]
            saved = self.state.save_checkpoint(model.encode(), {"monitor": entry[1], "outbox": outbox}, entry[0])
            self._saved(model, saved.size)
            self.counts["checkpoints"] += 1
            self.counts["checkpoint_bytes"] += saved.written
        self.last_checkpoint = now
        return set(self.dirty)

    def _saved(self, model: str, size: int) -> None:
        self.dirty.discard(model)
        self.idle.discard(model)
        self.dirty_since.pop(model, None)
        self.unsaved_bytes.pop(model, None)
        self.saved_bytes[model] = size

    def _ackable(self, held: list, unsaved: set) -> tuple[list, list]:
        """(messages that may be acknowledged, messages that wait): per partition, the messages
        before the first one whose model's state is not yet checkpointed (a commit passes every
        offset below the one it names, so a message waits behind any earlier one that waits)."""
        ackable, waiting, blocked = [], [], set()
        for event in held:
            partition = event.message.partition
            if unsaved and partition not in blocked and _model_of(event) in unsaved:
                blocked.add(partition)
            (waiting if partition in blocked else ackable).append(event)
        return ackable, waiting

    def ack(self, events: list) -> None:
        for event in events:
            message = event.message
            self.ledger.handled((message.topic, message.partition), message.offset)
            event.ack()

    async def commit(self, force: bool = False) -> None:
        """Persist, deliver, acknowledge: the order that makes a crash at any step lose nothing.

        1. the monitors' state (with the offsets it applied and the unsent outputs) goes to the
           table, whose changelog Faust flushes before it commits any offset;
        2. the outputs are sent (alerts, retrain requests), each at most once per id;
        3. the held messages are marked handled, so the next commit may pass them.
        A crash after 1 replays the messages after the checkpoint (skipped: already applied)
        and re-sends the outbox (dropped by id); a crash after 2 only re-reads.

        Models that are not due (:meth:`checkpoint`) stay dirty; their messages, and those after
        them on the same partition, stay held for a later commit. ``force`` checkpoints every
        dirty model (shutdown).
        """
        async with self.commit_lock:
            # only what this checkpoint holds: the monitor may fold in more while outputs are sent
            held, self.held = self.held, []
            unsaved = self.checkpoint(force)
            await self.deliver()
            ackable, waiting = self._ackable(held, unsaved)
            self.held[:0] = waiting
            self.ack(ackable)

    def forget_partitions(self, partitions: set[int]) -> None:
        """Partitions moved away: drop their monitors and held events (the new owner replays)."""
        for model in [m for m, (p, _) in self.monitors.items() if p in partitions]:
            del self.monitors[model]
            self.state.forget(model.encode())
            self._saved(model, 0)
            self.saved_bytes.pop(model, None)
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
                topic = self.outputs["alert" if kind == "alert" else "retrain"]
                value, headers = outgoing(self.envelope, record)
                fut = await topic.send(key=record["model"].encode(), value=value, headers=headers)
                await fut
                await self.dedup.mark_delivered(record_id)
                self.counts["alerts_sent" if kind == "alert" else "retrain_sent"] += 1
                instruments = self.instruments()
                if instruments is not None:
                    instruments.sent(kind, record)
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
        """Mark ``model``'s status for the next :meth:`flush_statuses` (once a second)."""
        self.status_stale.add(model)

    def flush_statuses(self) -> int:
        """Write the status of every model that changed since the last flush, all versions in one
        Redis round trip, in the background; returns how many versions it writes. A worker with
        hundreds of models pays one write a second, and idle models none."""
        stale, self.status_stale = self.status_stale, set()
        entries, worker_counts = [], None
        for model in sorted(stale):
            entry = self.monitors.get(model)
            if entry is None:
                continue
            if worker_counts is None:
                worker_counts = {**self.counts, **self.extra_counts(), "sinks": self.router.stats()}
            status = entry[1].status()
            for version, version_status in status["versions"].items():
                entries.append((model, version, {
                    **version_status, "join": status["join"], "pending_labels": status["pending_labels"],
                    "early_labels": status["early_labels"], "worker": worker_counts}))
        if entries:
            self.spawn(self.status.write_statuses(entries), "status write")
        return len(entries)

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

    async def ensure_reference(self, monitor: ModelMonitor, versions: set[str]) -> None:
        """A version seen for the first time: use a reference built with `driftline reference build`."""
        for version in set(versions) - set(monitor.versions):
            key = (monitor.model, version)
            if key in self.references_checked:
                continue
            self.references_checked.add(key)
            try:   # a sharded model's shards share the model's reference
                stored = await self.status.get_reference(self.settings.model_of(monitor.model), version)
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
