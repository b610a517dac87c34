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
from streams.worker import Worker


class Journal(list):
    pass


class Table(dict):
    """The state table: every write goes to the journal."""
    write_partition = None

    def __init__(self, journal):
        super().__init__()
        self.journal = journal

    def __setitem__(self, key, value):
        self.journal.append(("state", key, self.write_partition))
        super().__setitem__(key, value)


class Topic:
    def __init__(self, journal, fail: int = 0):
        self.journal, self.fail, self.sent = journal, fail, []

    async def send(self, key, value, headers=None):
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker down")
        self.journal.append(("send", key))
        self.sent.append(value)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class Dedup:
    def __init__(self):
        self.delivered = set()

    async def delivered_before(self, record_id):
        return record_id in self.delivered

    async def mark_delivered(self, record_id):
        self.delivered.add(record_id)


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
    """What streams.app._fold leaves behind: a dirty monitor, an output queued, the message held."""
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
