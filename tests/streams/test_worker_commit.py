"""Worker.commit without a broker: checkpoint, then deliver, then acknowledge, and what a crash leaves.

The state table is a dict, the output topic and the dedup guard are in-memory fakes that
write to one journal, so the order of the three steps is asserted as it happened. The
monitor is a real ModelMonitor and the checkpoint a real one (pickled, restored by a second
Worker on the same table, as a worker taking over the partition would).
"""
from __future__ import annotations

import asyncio

import pytest

from sinks import build_sinks
from streams.config import Settings
from streams.state import StateStore
from streams.worker import CHECKPOINT_GROWTH, Worker
from tests.streams.fakes import Dedup, Table, sent_future


class Journal(list):
    pass


class Topic:
    def __init__(self, journal, fail: int = 0):
        self.journal, self.fail, self.sent = journal, fail, []

    async def send(self, key, value, headers=None):
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker down")
        self.journal.append(("send", key))
        self.sent.append(value)
        return sent_future()


class Message:
    def __init__(self, offset):
        self.topic, self.partition, self.offset = "monitor-events", 3, offset


class Event:
    def __init__(self, journal, offset):
        self.journal, self.message = journal, Message(offset)

    def ack(self):
        self.journal.append(("ack", self.message.offset))


def _worker(table, journal, dedup, fail: int = 0) -> tuple[Worker, Topic]:
    topic = Topic(journal, fail)
    worker = Worker(Settings(), StateStore(table), {"alert": topic, "retrain": topic}, build_sinks([]),
                    status=None, dedup=dedup)
    return worker, topic


def _alert(alert_id: str) -> dict:
    return {"alert_id": alert_id, "model": "m", "model_version": "1", "kind": "drift", "message": "test"}


def _fold(worker: Worker, journal, offset: int, alert_id: str) -> None:
    """What MonitorStage.fold (streams.monitor_stage) leaves behind: a dirty monitor, an output queued, the message held."""
    worker.monitor_for("m", 3).applied_offsets[3] = offset
    worker.dirty.add("m")
    worker.outbox.append(("alert", _alert(alert_id), 3))
    worker.held.append(Event(journal, offset))


def test_commit_checkpoints_then_delivers_then_acks():
    journal = Journal()
    table, dedup = Table(journal), Dedup()
    worker, topic = _worker(table, journal, dedup)
    _fold(worker, journal, 10, "a1")
    asyncio.run(worker.commit())
    kinds = [entry[0] for entry in journal]
    assert kinds.index("send") > max(i for i, k in enumerate(kinds) if k == "state")
    assert kinds[-1] == "ack" and kinds.count("ack") == 1 and kinds.count("send") == 1
    assert ("state", b"m", 3) in journal          # the model's checkpoint, on the model's partition
    assert worker.outbox == [] and worker.held == [] and worker.dirty == set()
    assert dedup.delivered == {"a1"} and worker.counts["alerts_sent"] == 1


def test_a_crash_while_delivering_keeps_the_checkpoint_and_sends_each_output_once():
    journal = Journal()
    table, dedup = Table(journal), Dedup()
    worker, _ = _worker(table, journal, dedup, fail=1)
    _fold(worker, journal, 10, "a1")
    with pytest.raises(ConnectionError):
        asyncio.run(worker.commit())
    assert "ack" not in [e[0] for e in journal]    # nothing acknowledged: the input is re-read
    assert "send" not in [e[0] for e in journal]

    # the next owner restores the checkpoint: the monitor with its applied offset and the unsent alert
    journal.clear()
    successor, topic = _worker(table, journal, dedup)
    restored = successor.monitor_for("m", 3)
    assert restored.applied_offsets[3] == 10
    assert [o[1]["alert_id"] for o in successor.outbox] == ["a1"]
    asyncio.run(successor.deliver())
    assert len(topic.sent) == 1

    # a third owner restoring the same checkpoint drops the alert: delivered before
    journal.clear()
    third, topic = _worker(table, journal, dedup)
    third.monitor_for("m", 3)
    asyncio.run(third.deliver())
    assert topic.sent == [] and third.counts["alerts_deduplicated"] == 1


def test_outputs_folded_while_delivering_wait_for_the_next_checkpoint():
    journal = Journal()
    table, dedup = Table(journal), Dedup()
    worker, topic = _worker(table, journal, dedup)
    _fold(worker, journal, 10, "a1")
    original = topic.send

    async def send_and_fold(key, value, headers=None):
        if not worker.held and len(worker.outbox) == 1:     # folded while the first alert is in flight
            _fold(worker, journal, 11, "a2")
        return await original(key, value, headers)

    topic.send = send_and_fold
    asyncio.run(worker.commit())
    assert [e for e in journal if e[0] == "ack"] == [("ack", 10)]    # offset 11 is held for its checkpoint
    assert [e.message.offset for e in worker.held] == [11] and "m" in worker.dirty


class KeyedEvent(Event):
    def __init__(self, journal, offset, model: str, partition: int = 3):
        super().__init__(journal, offset)
        self.key = model.encode()
        self.message.partition = partition


def _fold_quietly(worker: Worker, journal, model: str, offset: int, nbytes: int, partition: int = 3) -> None:
    """A message that changes ``model``'s state (``nbytes`` of input) and emits nothing."""
    worker.monitor_for(model, partition).applied_offsets[partition] = offset
    worker.folded(model, nbytes)
    worker.held.append(KeyedEvent(journal, offset, model, partition))


def _stored_offset(table, model: str, partition: int = 3) -> int:
    return StateStore(table).load_checkpoint(model.encode())["monitor"].applied_offsets[partition]


def test_a_model_is_checkpointed_when_its_changes_are_worth_it_and_acks_wait_for_it():
    journal = Journal()
    table, dedup = Table(journal), Dedup()
    worker, _ = _worker(table, journal, dedup)
    _fold_quietly(worker, journal, "a", 10, 100)
    _fold_quietly(worker, journal, "b", 11, 100)
    asyncio.run(worker.commit())                  # first checkpoint of each: always due
    size_a = worker.saved_bytes["a"]
    assert size_a > 1000 and [e[1] for e in journal if e[0] == "ack"] == [10, 11]

    journal.clear()
    _fold_quietly(worker, journal, "a", 12, 100)          # a few bytes: a is not rewritten...
    _fold_quietly(worker, journal, "b", 13, int(CHECKPOINT_GROWTH * worker.saved_bytes["b"]))   # ...b has grown enough
    _fold_quietly(worker, journal, "b", 14, 0, partition=4)               # another partition
    asyncio.run(worker.commit())
    assert ("state", b"a", 3) not in journal and ("state", b"b", 3) in journal
    # 12 (a, unsaved) holds 13 back on its partition; partition 4 goes on
    assert [e[1] for e in journal if e[0] == "ack"] == [14]
    assert [e.message.offset for e in worker.held] == [12, 13] and worker.dirty == {"a"}
    assert _stored_offset(table, "a") == 10 and _stored_offset(table, "b") == 13

    # every acknowledged message's effects are in its model's checkpoint
    journal.clear()
    worker.unsaved_bytes["a"] = int(CHECKPOINT_GROWTH * size_a)
    asyncio.run(worker.commit())
    assert [e[1] for e in journal if e[0] == "ack"] == [12, 13] and worker.held == []
    assert _stored_offset(table, "a") == 12 and worker.dirty == set()


def _saved_then_changed_a_little():
    """A model checkpointed at offset 10, then changed a little (offset 11): not due yet."""
    journal = Journal()
    table, dedup = Table(journal), Dedup()
    worker, _ = _worker(table, journal, dedup)
    _fold_quietly(worker, journal, "a", 10, 100)
    asyncio.run(worker.commit())
    _fold_quietly(worker, journal, "a", 11, 100)
    asyncio.run(worker.commit())
    return worker, journal, table


def test_an_unchanged_little_model_is_checkpointed_after_checkpoint_max_seconds_and_at_shutdown():
    worker, journal, table = _saved_then_changed_a_little()
    assert worker.dirty == {"a"} and _stored_offset(table, "a") == 10
    worker.dirty_since["a"] -= worker.settings.checkpoint_max_seconds       # dirty that long
    asyncio.run(worker.commit())
    assert worker.dirty == set() and _stored_offset(table, "a") == 11

    _fold_quietly(worker, journal, "a", 12, 1)
    asyncio.run(worker.commit(force=True))                                  # shutdown
    assert worker.dirty == set() and worker.held == [] and _stored_offset(table, "a") == 12


class Statuses:
    def __init__(self):
        self.writes = []

    async def write_statuses(self, entries):
        self.writes.append(list(entries))


def test_status_of_changed_models_is_written_once_a_second_in_one_batch():
    from streams.records import validate_prediction

    journal = Journal()
    worker, _ = _worker(Table(journal), journal, Dedup())
    worker.status = Statuses()
    for model in ("a", "b", "c"):
        event = validate_prediction({"prediction_id": f"{model}-1", "model": model, "model_version": "1",
                                     "prediction": 1, "score": 0.7, "features": {"x": 1.0}}, 1.0e9)
        worker.monitor_for(model, 3).add_predictions([event], offset=1, partition=3)
        worker.schedule_status(model, worker.monitors[model][1])
    worker.schedule_status("a", worker.monitors["a"][1])          # twice: written once

    async def flush_twice():
        written = worker.flush_statuses()
        again = worker.flush_statuses()                              # nothing changed since
        await asyncio.gather(*worker._tasks)
        return written, again

    assert asyncio.run(flush_twice()) == (3, 0)
    assert len(worker.status.writes) == 1                            # one round trip for all
    assert [(m, v) for m, v, _ in worker.status.writes[0]] == [("a", "1"), ("b", "1"), ("c", "1")]
    assert all(s["counts"]["predictions"] == 1 and s["worker"]["checkpoints"] == 0 and "join" in s
               for _, _, s in worker.status.writes[0])


def test_an_idle_model_is_checkpointed_at_its_tick():
    worker, journal, table = _saved_then_changed_a_little()
    assert _stored_offset(table, "a") == 10                 # little change: not rewritten
    worker.monitor_for("a", 3).applied_offsets[3] = 12      # the idle tick, folded in
    worker.folded("a", 20, tick=True)
    worker.held.append(KeyedEvent(journal, 12, "a"))
    asyncio.run(worker.commit())
    assert _stored_offset(table, "a") == 12 and worker.dirty == set() and worker.held == []
