"""MonitorStage without a broker: checkpoint, then deliver, then acknowledge, message by message.

The stage is driven with internal messages as the ingest loop writes them (``streams.ingest.bodies``
of validated predictions) and folds them into a real ModelMonitor held by a real Worker. What
the Worker writes to is faked in memory, every fake writing to one journal: the state table
(a dict), the alert and dead-letter topics, the dedup guard, the Redis status store and the
internal messages' acks. So the order of persist, deliver and acknowledge is asserted as it
happened, and a second Worker on the same table is a worker taking over the partition.
"""
from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from detectors.settings import ModelSettings
from sinks import build_sinks
from streams.config import Settings
from streams.ingest import bodies
from streams.log_probe import ENDS_BEFORE, mark, mark_key
from streams.monitor_stage import MonitorStage
from streams.records import validate_label, validate_prediction
from streams.state import StateStore
from streams.worker import Worker
from tests.streams.fakes import Dedup, Table, sent_future

PARTITION = 3
# small windows (reference: the first 500 predictions, then windows of 250) and one commit per
# output: the sequence is the one the worker runs, only fewer events long
MODEL_SETTINGS = dict(reference_size=500, window_size=250, calibrate_ert_windows=0, performance_window=200,
                      cbpe_reference_labels=500, multivariate={"enabled": False}, window_seconds=1e9)


def _settings(**overrides) -> Settings:
    return Settings(**{"defaults": ModelSettings().merged(MODEL_SETTINGS), "checkpoint_seconds": 1e9, "sinks": [],
                       **overrides})


class Topic:
    """An output topic; ``on_send(key, value)`` runs before a send is accepted (it may raise)."""

    def __init__(self, journal, name: str, on_send=None):
        self.journal, self.name, self.on_send, self.sent = journal, name, on_send, []

    async def send(self, key, value, headers=None):
        if self.on_send is not None:
            self.on_send(key, value)
        self.journal.append(("send", self.name, key))
        self.sent.append(orjson.loads(value))
        return sent_future()


class Status:
    """The Redis status store: no explicit references (the first predictions are the reference)."""

    async def get_reference(self, model, version):
        return None

    async def read_status(self, model, version):
        return None

    async def append_window(self, entry, maxlen):
        pass

    async def archive_reference(self, entry):
        pass


class Message:
    def __init__(self, topic: str, offset: int):
        self.topic, self.partition, self.offset = topic, PARTITION, offset


class Event:
    """An internal message as the agent sees it: key, value, message, ack."""

    def __init__(self, journal, topic: str, offset: int, value: bytes, model: str = "m"):
        self.journal, self.key, self.value, self.message = journal, model.encode(), value, Message(topic, offset)

    def ack(self):
        self.journal.append(("ack", self.message.offset))


class Side:
    """A Worker and its MonitorStage on ``table``, with their fakes (one worker process)."""

    def __init__(self, table, journal, dedup, settings=None, highwater=None, fail_sends: int = 0,
                 on_alert=None, committed: int = 0, probe=None):
        self.settings = settings or _settings()
        self.journal = journal
        self.failures = fail_sends

        def alert_sent(key, value):
            if self.failures:
                self.failures -= 1
                raise ConnectionError("broker down")
            if on_alert is not None:
                on_alert(self, orjson.loads(value))

        self.alerts = Topic(journal, "alerts", alert_sent)
        self.retrain = Topic(journal, "retrain", alert_sent)
        self.deadletters = Topic(journal, "deadletter")
        self.worker = Worker(self.settings, StateStore(table), {"alert": self.alerts, "retrain": self.retrain},
                             build_sinks([]), status=Status(), dedup=dedup)
        self.stage = MonitorStage(self.settings, self.worker, self.deadletters,
                                  highwater=highwater or (lambda topic, partition: None), probe=probe)
        self.tp = (self.settings.internal_topic, PARTITION)
        # what GapFiller does on an assignment's first message: the group's committed position
        self.worker.ledger.start(self.tp, committed)

    def event(self, offset: int, value: bytes, model: str = "m") -> Event:
        return Event(self.journal, self.settings.internal_topic, offset, value, model)

    def handle(self, events) -> None:
        async def run():
            for event in events:
                await self.stage.handle(event)
        asyncio.run(run())

    def predictions_folded(self, model: str = "m") -> int:
        return sum(v.counts["predictions"] for v in self.worker.monitors[model][1].versions.values())


def predictions(n: int, shift_at: int | None = None, seed: int = 0, model: str = "m", first: int = 0) -> list[dict]:
    """Correlated numeric features and a categorical one; ``a`` shifts by 1.0 from ``shift_at``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        z = rng.normal(size=2)
        a, b = z[0], 0.6 * z[0] + 0.8 * z[1]
        if shift_at is not None and i >= shift_at:
            a += 1.0
        score = float(1 / (1 + np.exp(-b)))
        out.append(validate_prediction({
            "prediction_id": f"{model}-{first + i}", "model": model, "model_version": "1",
            "timestamp": 1.0e9 + first + i,
            "features": {"a": float(a), "b": float(b), "c": str(rng.choice(["u", "v", "w"]))},
            "prediction": score >= 0.5, "score": score}, 1.0e9))
    return out


def internal_messages(items: list, per_message: int = 50, field: str = "p", source_partition: int = 0,
                      columns: bool = True) -> list[bytes]:
    """The ingest loop's internal messages: ``per_message`` events each, from one source message each;
    predictions as columns, or (``columns=False``) as the event dicts older versions wrote."""
    out = []
    for source_offset, start in enumerate(range(0, len(items), per_message)):
        chunk = items[start:start + per_message]
        out += bodies(field, chunk, [[source_partition, source_offset, 0, len(chunk)]], 1 << 20, columns)
    return out


def _id(record: dict) -> str:
    return record.get("alert_id") or record["event_id"]       # alerts / retrain requests


def _stored(table, model: str = "m") -> dict:
    return StateStore(table).load_checkpoint(model.encode())


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "event-dicts"])
def test_an_alert_is_sent_only_once_its_state_is_checkpointed_and_acked_only_after_both(columns):
    journal, dedup = [], Dedup()
    table = Table(journal)
    seen_at_send = []

    def on_alert(side, alert):      # the moment an alert leaves: what is persisted, what is acknowledged
        checkpoint = _stored(table)
        seen_at_send.append((_id(alert), checkpoint["monitor"].applied_offsets[PARTITION],
                             [_id(o[1]) for o in checkpoint["outbox"]],
                             side.worker.ledger.committable(side.tp)))

    side = Side(table, journal, dedup, on_alert=on_alert)
    values = internal_messages(predictions(1000, shift_at=500), columns=columns)
    assert all((b'"pc":' in v) == columns for v in values)
    side.handle(side.event(offset, value) for offset, value in enumerate(values))

    drift = [a for a in side.alerts.sent if a["kind"] == "input_drift"]
    assert drift and drift[0]["feature"] == "a" and drift[0]["window"]["start"] == 1.0e9 + 500
    # the message that closed the window (predictions 700-749, offset 14) emitted the alert
    alert_id, applied, outbox, committable = seen_at_send[0]
    assert alert_id == drift[0]["alert_id"] and applied == 14
    assert alert_id in outbox                       # persisted with the checkpoint, before it was sent
    assert committable is None                      # nothing acknowledged before it left
    first_send = next(i for i, e in enumerate(journal) if e[0] == "send")
    assert ("state", b"m", PARTITION) in journal[:first_send]
    acks = [i for i, e in enumerate(journal) if e == ("ack", 14)]
    assert len(acks) == 1 and acks[0] > first_send
    # every message up to the alert's is acknowledged once, after it; the ledger follows the acks
    assert [e[1] for e in journal if e[0] == "ack"][:15] == list(range(15))
    assert side.worker.ledger.committable(side.tp) == 1 + max(e[1] for e in journal if e[0] == "ack")
    assert dedup.delivered == {_id(r) for r in side.alerts.sent + side.retrain.sent}


def test_a_failed_send_acks_nothing_and_the_next_owner_sends_the_alert_once_and_skips_the_replay():
    journal, dedup = [], Dedup()
    table = Table(journal)
    values = internal_messages(predictions(1000, shift_at=500))
    side = Side(table, journal, dedup, fail_sends=1)
    with pytest.raises(ConnectionError):            # the agent dies with the broker: the input is re-read
        side.handle(side.event(offset, value) for offset, value in enumerate(values))
    assert [e for e in journal if e[0] in ("ack", "send")] == []
    assert side.worker.ledger.committable(side.tp) is None
    assert _stored(table)["monitor"].applied_offsets[PARTITION] == 14    # persisted up to the alert's message

    # the next owner restores the checkpoint and re-reads the partition from its committed offset (0)
    journal.clear()
    successor = Side(table, journal, dedup)
    successor.handle(successor.event(offset, value) for offset, value in enumerate(values))
    asyncio.run(successor.worker.commit(force=True))
    assert successor.worker.counts["replayed_skipped"] == 15                # offsets 0..14: already applied
    assert successor.predictions_folded() == 1000                           # each prediction counted once
    # the restored outbox is sent first; the outputs are those of a worker that never failed, once each
    assert _ids(successor) == _ids(_clean_run(values))
    assert [e[1] for e in journal if e[0] == "ack"] == list(range(len(values)))
    assert successor.worker.ledger.committable(successor.tp) == len(values)


def _ids(side) -> list[str]:
    return [_id(r) for r in side.alerts.sent + side.retrain.sent]


def _clean_run(values) -> Side:
    side = Side(Table([]), [], Dedup())
    side.handle(side.event(offset, value) for offset, value in enumerate(values))
    asyncio.run(side.worker.commit(force=True))
    return side


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "event-dicts"])
def test_a_replay_after_restore_and_a_re_delivery_by_ingest_are_skipped_and_still_acked(columns):
    journal, dedup = [], Dedup()
    table = Table(journal)
    values = internal_messages(predictions(300), columns=columns)
    side = Side(table, journal, dedup)
    side.handle(side.event(offset, value) for offset, value in enumerate(values))
    asyncio.run(side.worker.commit(force=True))                 # shutdown: everything checkpointed and acked
    assert side.predictions_folded() == 300 and [e[1] for e in journal if e[0] == "ack"] == list(range(6))

    journal.clear()
    successor = Side(table, journal, dedup, committed=4)     # the crash came before offsets 4, 5 were committed
    # the last two messages again at their offsets (not committed yet), then ingest forwarding the
    # last one again at a new offset after its own restart (same source positions)
    replay = [successor.event(4, values[4]), successor.event(5, values[5]), successor.event(6, values[5])]
    successor.handle(replay)
    asyncio.run(successor.worker.commit(force=True))
    counts = successor.worker.counts
    assert (counts["replayed_skipped"], counts["redelivered_skipped"]) == (2, 50)
    assert successor.predictions_folded() == 300                # nothing counted twice
    assert [e[1] for e in journal if e[0] == "ack"] == [4, 5, 6]
    assert successor.worker.ledger.committable(successor.tp) == 7
    assert _stored(table)["monitor"].applied_offsets[PARTITION] == 6


def test_a_recreated_log_is_counted_from_its_start_not_skipped():
    journal, dedup = [], Dedup()
    table = Table(journal)
    values = internal_messages(predictions(200, seed=1))
    side = Side(table, journal, dedup)
    side.handle(side.event(offset, value) for offset, value in enumerate(values))
    asyncio.run(side.worker.commit(force=True))

    # the broker lost the topic: the new log holds two messages, offsets 0 and 1, of new events
    fresh_values = internal_messages(predictions(100, seed=2, first=200))
    fresh_values = [orjson.dumps({**orjson.loads(v), "src": None}) for v in fresh_values]
    successor = Side(table, journal, dedup, highwater=lambda topic, partition: 2)
    successor.handle(successor.event(offset, value) for offset, value in enumerate(fresh_values))
    assert successor.worker.counts["log_restarts"] == 1 and successor.worker.counts["replayed_skipped"] == 0
    assert successor.predictions_folded() == 300
    # with the log intact (highwater past the applied offset) the same offsets are a replay
    again = Side(table, journal, dedup, highwater=lambda topic, partition: 4)
    again.handle(again.event(offset, value) for offset, value in enumerate(values[:2]))
    assert again.worker.counts["replayed_skipped"] == 2 and again.worker.counts["log_restarts"] == 0


class LogProbe:
    """streams.log_probe.RecordProbe on a log held in memory: ``values`` by offset (None: unreadable)."""

    def __init__(self, values: list | None):
        self.values, self.reads = values, []

    async def at(self, topic, partition, offset):
        self.reads.append((topic, partition, offset))
        if self.values is None:
            return None
        return mark(self.values[offset]) if offset < len(self.values) else ENDS_BEFORE


def _checkpointed(n: int, drop_mark: bool = False):
    """A worker that folded ``n`` predictions into model m and checkpointed it: (table, journal,
    dedup, the internal messages); ``drop_mark``: a checkpoint as before marks were kept."""
    journal, dedup = [], Dedup()
    table = Table(journal)
    values = internal_messages(predictions(n, seed=1))
    side = Side(table, journal, dedup)
    side.handle(side.event(offset, value) for offset, value in enumerate(values))
    if drop_mark:
        del side.worker.monitors["m"][1].applied_offsets[mark_key(PARTITION)]
    asyncio.run(side.worker.commit(force=True))
    return table, journal, dedup, values


def test_a_recreated_log_longer_than_the_state_is_told_by_the_record_read_back():
    # the new log has grown past the state's offset before the worker fetched it: its end cannot
    # tell, the record at the state's offset can (tests/reliability/test_broker_restart.py)
    table, journal, dedup, values = _checkpointed(200)
    applied = StateStore(table).load_checkpoint(b"m")["monitor"].applied_offsets
    assert applied[PARTITION] == len(values) - 1 and applied[mark_key(PARTITION)] == mark(values[-1])

    fresh_values = internal_messages(predictions(400, seed=2, first=200))
    fresh_values = [orjson.dumps({**orjson.loads(v), "src": None}) for v in fresh_values]
    assert len(fresh_values) > len(values)
    probe = LogProbe(fresh_values)
    successor = Side(table, journal, dedup, highwater=lambda topic, partition: len(fresh_values), probe=probe)
    successor.handle(successor.event(offset, value) for offset, value in enumerate(fresh_values))
    assert successor.worker.counts["log_restarts"] == 1 and successor.worker.counts["replayed_skipped"] == 0
    assert successor.predictions_folded() == 600
    assert probe.reads == [(successor.settings.internal_topic, PARTITION, len(values) - 1)]


def test_a_replay_is_told_by_the_same_record_read_back_once():
    table, journal, dedup, values = _checkpointed(300)
    probe = LogProbe(values + [b"later"] * 5)      # the same log, grown since
    successor = Side(table, journal, dedup, highwater=lambda topic, partition: len(values) + 5, probe=probe)
    successor.handle(successor.event(offset, value) for offset, value in enumerate(values))
    assert successor.worker.counts["replayed_skipped"] == len(values)
    assert successor.worker.counts["log_restarts"] == 0 and successor.predictions_folded() == 300
    assert len(probe.reads) == 1                      # one read back per model and partition
    # unreadable (the broker down, the record compacted): taken for a replay, as without a probe
    unreadable = Side(table, journal, dedup, highwater=lambda topic, partition: len(values) + 5,
                      probe=LogProbe(None))
    unreadable.handle([unreadable.event(0, values[0])])
    assert unreadable.worker.counts["replayed_skipped"] == 1 and unreadable.worker.counts["log_restarts"] == 0


def test_a_checkpoint_without_a_mark_is_not_read_back():
    table, journal, dedup, values = _checkpointed(200, drop_mark=True)
    probe = LogProbe([b"another"] * 10)
    successor = Side(table, journal, dedup, highwater=lambda topic, partition: 10, probe=probe)
    successor.handle([successor.event(0, values[0])])
    assert successor.worker.counts["replayed_skipped"] == 1 and probe.reads == []


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "event-dicts"])
def test_labels_join_their_predictions_and_are_skipped_on_replay(columns):
    journal, dedup = [], Dedup()
    table = Table(journal)
    events = predictions(100)
    labels = [validate_label({"prediction_id": e["prediction_id"], "model": "m", "label": e["prediction"],
                              "timestamp": e["timestamp"] + 1}, 1.0e9) for e in events]
    values = (internal_messages(events, columns=columns)
              + internal_messages(labels, field="l", source_partition=1, columns=columns))
    assert all((b'"lc":' in v) == columns for v in values[2:])
    side = Side(table, journal, dedup)
    side.handle(side.event(offset, value) for offset, value in enumerate(values))
    assert side.worker.counts["labels"] == 100
    joined = side.worker.monitors["m"][1].status()["join"]
    asyncio.run(side.worker.commit(force=True))
    successor = Side(table, journal, dedup)
    successor.handle([successor.event(3, values[3])])
    assert (successor.worker.counts["labels"], successor.worker.counts["replayed_skipped"]) == (0, 1)
    assert successor.worker.monitors["m"][1].status()["join"] == joined


def test_a_model_past_max_models_and_a_broken_message_are_dead_lettered_once_and_acked():
    journal, dedup = [], Dedup()
    table = Table(journal)
    settings = _settings(max_models=1, checkpoint_seconds=0.0)        # commit after every message
    side = Side(table, journal, dedup, settings=settings)
    first = internal_messages(predictions(50))[0]
    other = internal_messages(predictions(50, model="n"))[0]
    side.handle([side.event(0, first), side.event(1, other, model="n"), side.event(2, b"{not json", model="m")])
    reasons = [d["reason"] for d in side.deadletters.sent]
    assert len(reasons) == 2 and reasons[0].startswith("model limit reached")
    assert reasons[1].startswith("processing error")
    assert side.worker.counts["models_rejected"] == 1 and side.worker.counts["processing_errors"] == 1
    assert [(d["source_topic"], d["partition"], d["offset"]) for d in side.deadletters.sent] == [
        (settings.internal_topic, PARTITION, 1), (settings.internal_topic, PARTITION, 2)]
    assert [e[1] for e in journal if e[0] == "ack"] == [0, 1, 2]
    assert side.worker.ledger.committable(side.tp) == 3

    # re-read after a crash (a new worker): the same dead letters are recognised by id, not sent again
    again = Side(Table([]), [], dedup, settings=settings)
    again.handle([again.event(1, other, model="n"), again.event(2, b"{not json", model="m")])
    assert again.deadletters.sent == [] and again.worker.counts["deadletter_deduplicated"] == 1


def test_only_idle_models_with_something_pending_get_a_tick():
    journal, dedup = [], Dedup()
    side = Side(Table(journal), journal, dedup, settings=_settings(tick_seconds=5.0))
    side.handle([side.event(0, internal_messages(predictions(50))[0]),
                 side.event(1, internal_messages(predictions(50, model="n"))[0], model="n")])
    assert side.stage.models_to_tick() == []                     # both just had traffic
    side.worker.last_event_at["m"] -= 6.0                        # m idle for longer than tick_seconds
    assert side.stage.models_to_tick() == ["m"]
    asyncio.run(side.worker.commit(force=True))
    assert side.stage.models_to_tick() == []     # nothing pending: checkpointed, its reference still filling
    side.handle(side.event(2 + i, v) for i, v in enumerate(internal_messages(predictions(550, first=50))))
    side.worker.last_event_at["m"] -= 6.0
    asyncio.run(side.worker.commit(force=True))
    assert side.stage.models_to_tick() == ["m"]  # checkpointed, but its first window is open (100 of 250)


def test_an_idle_model_whose_window_waits_gets_no_tick_until_the_one_that_closes_it():
    """Issue 16: idle models cost no timer work. A tick that changes nothing (the window's clock
    already started, not yet due) is not sent: before, every idle model with an open window got
    one every tick_seconds, each forcing a whole checkpoint."""
    journal, dedup = [], Dedup()
    defaults = ModelSettings().merged({**MODEL_SETTINGS, "window_seconds": 3600.0})
    side = Side(Table(journal), journal, dedup, settings=_settings(tick_seconds=5.0, defaults=defaults))
    side.handle(side.event(i, v) for i, v in enumerate(internal_messages(predictions(600))))
    version = side.worker.monitors["m"][1].versions["1"]
    assert version.window.n == 100 and version.reference is not None
    side.worker.last_event_at["m"] -= 6.0
    asyncio.run(side.worker.commit(force=True))
    t0, offset = 1_000.0, 12
    assert side.stage.models_to_tick(t0) == ["m"]              # the first tick starts the window's clock
    side.handle([side.event(offset, orjson.dumps({"tick": t0}))])
    asyncio.run(side.worker.commit())
    assert side.worker.dirty == set() and version.open.first_tick == t0
    checkpoints = side.worker.counts["checkpoints"]
    for later in (5.0, 1800.0, 3599.9):                              # waiting: nothing to tick
        assert side.stage.models_to_tick(t0 + later) == []
    assert side.stage.models_to_tick(t0 + 3600.0) == ["m"]        # due: the tick that closes it
    side.handle([side.event(offset + 1, orjson.dumps({"tick": t0 + 3600.0}))])
    assert version.window.n == 0 and version.counts["windows"] == 1
    assert side.worker.counts["checkpoints"] == checkpoints      # no checkpoint in between
