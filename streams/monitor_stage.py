"""The monitor stage's handling of one internal message: skip a replay, fold, hold, commit when due.

The Faust agent (:class:`streams.app.DriftlineApp`) hands each message of the internal topic to
:meth:`MonitorStage.handle`. The stage decides what the message means for its model's state;
:class:`streams.worker.Worker` keeps that state and makes the commit (persist, deliver,
acknowledge). Its collaborators are handed in, so ``tests/streams/test_monitor_stage.py``
runs it on fakes, without a broker:

* ``worker``: a :class:`~streams.worker.Worker`;
* ``deadletter_topic``: anything whose ``send(key=, value=)`` returns an awaitable delivery;
* ``highwater(topic, partition)``: the partition's log end as last fetched (raises while unknown);
* ``probe``: a :class:`~streams.log_probe.RecordProbe` reading back the record a restored state
  applied last (None: a replay is told by the highwater alone);
* ``instruments()``: the metrics instruments, or None;
* ``deadletters``: a :class:`~streams.deadletter_log.DeadLetterLog` for the worker log.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson

from detectors.monitor import ModelMonitor
from streams import internal_format, positions, records
from streams.deadletter_log import DeadLetterLog
from streams.log_probe import ENDS_BEFORE, RecordProbe, mark, mark_key
from streams.worker import ModelLimitReached, Worker

log = logging.getLogger("driftline")


class OutputTopic(Protocol):
    """What the stage writes dead letters to: a Faust topic, or a fake in a test."""

    async def send(self, *, key: bytes, value: bytes) -> Awaitable:
        """Queue a record; the returned awaitable completes when the broker has it."""


class MonitorStage:
    """Fold internal messages into their models' monitors; checkpoint, deliver and ack when due."""

    def __init__(self, settings, worker: Worker, deadletter_topic: OutputTopic,
                 highwater: Callable[[str, int], int | None], instruments: Callable = lambda: None,
                 deadletters: DeadLetterLog | None = None, probe: RecordProbe | None = None) -> None:
        self.settings = settings
        self.worker = worker
        self.deadletter_topic = deadletter_topic
        self.highwater = highwater
        self.instruments = instruments
        self.deadletters = deadletters or DeadLetterLog(log)
        self.probe = probe
        self._same_log: dict[tuple[str, int], tuple] = {}   # (model, partition) -> the (offset, mark) read back

    async def handle(self, event) -> None:
        """Fold one internal message into its model's monitor; checkpoint, deliver and ack when due.

        Everything that can wait (a reference look-up in Redis, a dead letter) happens before the
        state changes or after it is whole: a checkpoint taken meanwhile (the shutdown hook's)
        sees the message applied entirely or not at all, and only then is it held for its ack.
        """
        worker, message = self.worker, event.message
        model = event.key.decode()
        try:
            mon = worker.monitor_for(model, message.partition)
            if not await self.replayed(mon, message):
                body = orjson.loads(event.value)
                versions = _versions(body)
                if versions:
                    await worker.ensure_reference(mon, versions)
                if worker.monitors.get(model, (None, None))[1] is not mon:
                    return       # its partition was revoked meanwhile: the next owner replays the message
                self.fold(mon, model, message, body, len(event.value))
                mon.applied_offsets[mark_key(message.partition)] = mark(event.value)
            worker.held.append(event)
            worker.schedule_status(model, mon)
        except ModelLimitReached as exc:
            worker.counts["models_rejected"] += 1
            self._count_deadletter("model limit reached")
            await self.dead_letter(event, str(exc))
            worker.held.append(event)
        except Exception as exc:  # a bug must not stop the stream: park the message, keep going
            worker.counts["processing_errors"] += 1
            self._count_deadletter("processing error")
            log.exception("processing %s@%s failed", model, message.offset)
            await self.dead_letter(event, f"processing error: {exc!r}")
            worker.held.append(event)
        if worker.outbox or time.monotonic() - worker.last_checkpoint >= self.settings.checkpoint_seconds:
            await worker.commit()

    def _count_deadletter(self, reason: str) -> None:
        instruments = self.instruments()
        if instruments is not None:
            instruments.deadlettered(reason)

    def log_restarted(self, message, applied: int) -> bool:
        """Whether the partition's log ends at or before ``applied``: a Kafka log only grows, so one
        that no longer holds an offset the state applied is a new log, not a replay of the old one.

        The highwater comes with every fetch response; the internal topic is written one record per
        batch, so it is exact even on the embedded broker (which reports the start of the last batch).
        """
        try:
            highwater = self.highwater(message.topic, message.partition)
        except Exception:       # not known yet (no fetch answered since the assignment)
            return False
        return highwater is not None and 0 <= highwater <= applied

    async def log_replaced(self, mon: ModelMonitor, message, applied: int) -> str | None:
        """Why the partition's log is not the one ``mon`` applied offset ``applied`` of, or None
        when it is (or cannot be told): its end (:meth:`log_restarted`), or the record at
        ``applied`` read back (:mod:`streams.log_probe`).

        The record is read back for a model's first message of a partition in an assignment (a
        new log may have grown past the state's offsets, so that its events look like the next
        ones, and their source positions from the lost input log skip them), and for a message
        at or below the offset applied when the state changed since it was last read back."""
        replay = message.offset <= applied
        if replay and self.log_restarted(message, applied):
            return f"ends before offset {applied}"
        applied_mark = mon.applied_offsets.get(mark_key(message.partition))
        key = (mon.model, message.partition)
        if self.probe is None or applied_mark is None:     # a checkpoint from before marks were kept
            self._same_log.setdefault(key, (applied, applied_mark))
            return None
        checked = self._same_log.get(key)
        if checked is not None and (not replay or checked == (applied, applied_mark)):
            return None
        found = await self.probe.at(message.topic, message.partition, applied)
        if found == ENDS_BEFORE:
            return f"ends before offset {applied}"
        if found is not None and tuple(found) != tuple(applied_mark):
            return f"holds another record at offset {applied}"
        if found is None:
            log.warning("%s[%d] could not be read at %d: %s's offsets up to it are taken for the same log",
                        message.topic, message.partition, applied, mon.model)
        self._same_log[key] = (applied, applied_mark)
        return None

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked or recreated: what was read back of them no longer holds."""
        self._same_log = {k: v for k, v in self._same_log.items() if k[1] not in partitions}

    async def replayed(self, mon: ModelMonitor, message) -> bool:
        """Whether the state has applied this internal message already (a replay after a restore),
        rather than the message being one of a new log at an offset the old one used."""
        applied = mon.applied_offsets.get(message.partition, -1)
        if applied < 0 or (message.offset > applied
                           and (self.probe is None or (mon.model, message.partition) in self._same_log)):
            return False        # the next message of a log this state was checked against (the hot path)
        replaced = await self.log_replaced(mon, message, applied)
        if replaced is None:
            if message.offset > applied:
                return False
            self.worker.counts["replayed_skipped"] += 1
            return True
        log.warning("%s[%d] %s, which %s's state has applied: the log was recreated "
                    "(a memory-only broker restarted, or the topic was deleted); counting from its start",
                    message.topic, message.partition, replaced, mon.model)
        mon.applied_offsets.clear()     # internal offsets and source positions are from the lost log
        self.worker.state.rewrite(mon.model.encode())   # and its changelog may have gone with it
        self._same_log = {k: v for k, v in self._same_log.items() if k[0] != mon.model}
        self._same_log[(mon.model, message.partition)] = (-1, None)    # what it folds now is of this log
        self.worker.counts["log_restarts"] += 1
        return False

    def fresh(self, mon: ModelMonitor, field: str, body: dict) -> tuple[list, list]:
        """The events of an internal message that ``mon`` has not folded in yet (streams.positions)."""
        items = body[field]
        found, sources = positions.fresh(mon.applied_offsets, field, items, body.get("src"))
        self.worker.counts["redelivered_skipped"] += len(items) - len(found)
        return found, sources

    def fresh_columns(self, mon: ModelMonitor, body: dict):
        """The events of a columnar prediction message that ``mon`` has not folded in yet, as
        :class:`~detectors.columns.PredictionColumns` (the same positions as :meth:`fresh`)."""
        columns = body[internal_format.COLUMNS]
        n = columns["n"]
        rows, sources = positions.fresh(mon.applied_offsets, "p", range(n), body.get("src"))
        self.worker.counts["redelivered_skipped"] += n - len(rows)
        return internal_format.decode_prediction_columns(columns, sources, list(rows),
                                                         max_names=mon.settings.max_features)

    def fold(self, mon: ModelMonitor, model: str, message, body: dict, nbytes: int = 0) -> None:
        """Apply a message's fresh events and queue what they emit (no awaits: one step for a checkpoint)."""
        worker = self.worker
        out: list = []
        if internal_format.COLUMNS in body:
            batch = self.fresh_columns(mon, body)
            out = mon.add_columns(batch, offset=message.offset, partition=message.partition) if len(batch) else []
            for entry in mon.archive():
                worker.spawn(worker.status.archive_reference(entry), "reference archive")
            worker.counts["predictions"] += len(batch)
        elif "p" in body:
            predictions, sources = self.fresh(mon, "p", body)
            out = mon.add_predictions(predictions, offset=message.offset, partition=message.partition,
                                      sources=sources)
            for entry in mon.archive():
                worker.spawn(worker.status.archive_reference(entry), "reference archive")
            worker.counts["predictions"] += len(predictions)
        elif internal_format.LABEL_COLUMNS in body:
            columns = body[internal_format.LABEL_COLUMNS]
            rows, _ = positions.fresh(mon.applied_offsets, "l", range(columns["n"]), body.get("src"))
            worker.counts["redelivered_skipped"] += columns["n"] - len(rows)
            labels = internal_format.decode_label_columns(columns, list(rows))
            out = mon.add_label_columns(labels)
            worker.counts["labels"] += len(labels)
        elif "l" in body:
            labels, _ = self.fresh(mon, "l", body)
            out = mon.add_labels(labels)
            worker.counts["labels"] += len(labels)
        elif "tick" in body:
            out = mon.tick(body["tick"])
        for summary in mon.window_summaries():
            worker.spawn(worker.status.append_window(summary, self.settings.history_windows), "window history")
            worker.router.publish_window(summary)        # sinks that take windows (mlflow); never blocks
        if "tick" not in body:
            worker.last_event_at[model] = time.monotonic()
        mon.applied_offsets[message.partition] = message.offset
        worker.folded(model, nbytes, tick="tick" in body)
        worker.outbox.extend((kind, record, message.partition) for kind, record in out)

    async def dead_letter(self, event, reason: str) -> None:
        """Park an internal message the monitor could not fold in, once per id."""
        worker, message, topic = self.worker, event.message, self.settings.internal_topic
        record = records.deadletter_record(event.value, reason, topic, message.partition, message.offset)
        if await worker.dedup.delivered_before(record["deadletter_id"]):
            worker.counts["deadletter_deduplicated"] += 1
            return
        # the worker log, rate-limited like ingest's dead letters
        self.deadletters.record(f"{reason} (model {event.key.decode()})", topic, message.partition,
                                message.offset, None)
        await (await self.deadletter_topic.send(key=event.key, value=orjson.dumps(record)))
        await worker.dedup.mark_delivered(record["deadletter_id"])

    def models_to_tick(self, now: float | None = None) -> list[str]:
        """Models idle for ``tick_seconds`` to which a tick at wall-clock ``now`` means something:
        state not yet checkpointed (the tick lets it be saved and its partition's acks pass), or
        an open window that a tick starts the clock of or closes (:func:`_tick_matters`). Each
        gets an event-time tick through the internal topic, so idle windows close and replays
        stay deterministic; an idle model whose window is merely waiting costs no tick (and no
        checkpoint) between the tick that starts its clock and the one that closes it."""
        worker = self.worker
        now = time.time() if now is None else now
        idle_since = time.monotonic() - self.settings.tick_seconds
        return [model for model, (_partition, mon) in list(worker.monitors.items())
                if worker.last_event_at.get(model, 0.0) <= idle_since
                and (model in worker.dirty or any(_tick_matters(v, now) for v in mon.versions.values()))]


def _versions(body: dict) -> set[str]:
    """The model versions of an internal prediction message (either form); empty for labels and ticks."""
    if internal_format.COLUMNS in body:
        return internal_format.versions_of(body[internal_format.COLUMNS])
    return {e["model_version"] for e in body.get("p", ())}


def _tick_matters(version, now: float) -> bool:
    """Whether a tick at ``now`` changes ``version``'s open window (detectors.window.OpenWindow.tick_changes)."""
    settings = version.settings
    return version.reference is not None and version.open.tick_changes(
        now, settings.min_window_size, settings.window_seconds)
