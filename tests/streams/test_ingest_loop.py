"""IngestLoop without a broker: produce, then commit; dead letters once per id; a revoked batch dropped.

Consumer, producer and dedup guard are in-memory fakes sharing one journal (a unit test of
one class); the decoding, re-keying and dead-letter records are the real ones.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson
from aiokafka import TopicPartition

from streams import records
from streams.deadletter_log import DeadLetterLog
from streams.ingest import IngestLoop, IngestOptions, Source
from tests.streams.fakes import Dedup

PRED = TopicPartition("preds", 0)
LABEL = TopicPartition("labels", 1)


@dataclass
class Record:
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp: int = 1_767_225_600_000


class Producer:
    def __init__(self, journal, fail: int = 0):
        self.journal, self.fail, self.sent = journal, fail, []

    async def send(self, topic, key, value):
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker down")
        future = asyncio.get_running_loop().create_future()

        def delivered():
            self.journal.append(("delivered", topic, key))
            self.sent.append((topic, key, value))
            future.set_result(None)

        asyncio.get_running_loop().call_soon(delivered)    # acknowledged later, as a broker does
        return future


class Consumer:
    def __init__(self, journal):
        self.journal = journal

    async def commit(self, offsets):
        self.journal.append(("commit", {(tp.topic, tp.partition): o.offset for tp, o in offsets.items()}))


def _loop(journal, dedup, fail: int = 0, commit_interval: float = 0.0) -> tuple[IngestLoop, Producer, dict]:
    counts = {"deadletter": 0, "deadletter_deduplicated": 0}
    producer = Producer(journal, fail)
    loop = IngestLoop([Source("preds", "p", records.decode_predictions), Source("labels", "l", records.decode_labels)],
                      IngestOptions(internal_topic="events", deadletter_topic="dead", max_message_bytes=1_000_000,
                                    batch_records=100, linger_ms=10, commit_interval=commit_interval),
                      consumer_factory=None, producer_factory=None, dedup=dedup,
                      deadletters=DeadLetterLog(logging.getLogger("test")), counts=counts)
    loop.producer, loop.consumer = producer, Consumer(journal)
    return loop, producer, counts


def _prediction(pid: str, model: str) -> dict:
    return {"prediction_id": pid, "model": model, "prediction": 1, "features": {"x": 1.5}}


def _batch() -> dict:
    return {
        PRED: [Record(5, orjson.dumps([_prediction("a", "m1"), _prediction("b", "m2"), {"model": "m1"}])),
               Record(6, orjson.dumps(_prediction("c", "m1"))),
               Record(7, b"not json")],
        LABEL: [Record(40, orjson.dumps({"prediction_id": "a", "model": "m1", "label": 0}))],
    }


def test_a_batch_is_committed_after_every_record_is_delivered():
    journal, dedup = [], Dedup()
    loop, producer, counts = _loop(journal, dedup)
    assert asyncio.run(loop.handle(_batch(), loop.generation))
    commit = journal.index(("commit", {("preds", 0): 8, ("labels", 1): 41}))
    assert commit == len(journal) - 1 and len([e for e in journal if e[0] == "delivered"]) == commit
    internal = sorted(((key, orjson.loads(body)) for topic, key, body in producer.sent if topic == "events"),
                      key=lambda kb: (kb[0], "pc" in kb[1]))
    assert [(key, "pc" in body, (body.get("pc") or body["lc"])["id"],
             body["src"]) for key, body in internal] == [
        (b"m1", False, ["a"], [[1, 40, 0, 1]]),                         # the label, from labels[1]
        (b"m1", True, ["a", "c"], [[0, 5, 0, 1], [0, 6, 0, 1]]),       # source positions for the monitor
        (b"m2", True, ["b"], [[0, 5, 0, 1]])]
    dead = sorted((orjson.loads(v) for t, _, v in producer.sent if t == "dead"), key=lambda d: d["offset"])
    raw = {5: _batch()[PRED][0].value, 7: b"not json"}
    assert [(d["offset"], d["index"]) for d in dead] == [(5, 2), (7, None)]
    for d in dead:     # exactly the records the contract defines (streams.records.deadletter_record)
        assert d == records.deadletter_record(raw[d["offset"]], d["reason"], "preds", 0, d["offset"], d["index"])
    assert dead[0]["reason"].startswith("prediction_id") and dead[1]["reason"].startswith("invalid JSON")
    assert counts["deadletter"] == 2 and len(dedup.delivered) == 2


def test_a_failed_send_is_retried_and_dead_letters_go_out_once_per_id():
    journal, dedup = [], Dedup()
    loop, producer, counts = _loop(journal, dedup, fail=1)
    asyncio.run(loop.handle(_batch(), loop.generation))
    assert loop.ingest_counts["ingest_retries"] == 1 and journal[-1][0] == "commit"
    # the same batch re-read (a crash after the sends, before the commit): no dead letter twice
    journal.clear()
    again, producer2, counts2 = _loop(journal, dedup)
    asyncio.run(again.handle(_batch(), again.generation))
    assert [t for t, _, _ in producer2.sent].count("dead") == 0 and counts2["deadletter_deduplicated"] == 2


def test_a_batch_fetched_before_a_revoke_is_dropped_uncommitted():
    journal, dedup = [], Dedup()
    loop, producer, _ = _loop(journal, dedup)
    generation = loop.generation

    async def scenario():
        await loop.revoked({PRED, LABEL})       # nothing in flight: returns at once
        return await loop.handle(_batch(), generation)

    assert asyncio.run(scenario()) is False
    assert journal == [] and producer.sent == [] and loop.ingest_counts["ingest_batches_dropped"] == 1


def test_a_revoke_waits_for_the_batch_in_flight_to_commit():
    journal, dedup = [], Dedup()
    loop, _, _ = _loop(journal, dedup)

    async def scenario():
        in_flight = asyncio.ensure_future(loop.handle(_batch(), loop.generation))
        await asyncio.sleep(0)                    # the batch holds the lock, its sends pending
        await loop.revoked({PRED, LABEL})
        journal.append(("revoked",))
        return await in_flight

    assert asyncio.run(scenario()) is True
    assert [e[0] for e in journal][-2:] == ["commit", "revoked"]


def test_commits_wait_for_the_interval_and_a_revoke_commits_what_was_sent():
    journal, dedup = [], Dedup()
    loop, _, _ = _loop(journal, dedup, commit_interval=600)

    async def scenario():
        await loop.handle(_batch(), loop.generation)
        assert [e for e in journal if e[0] == "commit"] == []        # sent, not committed yet
        await loop.revoked({PRED, LABEL})

    asyncio.run(scenario())
    assert journal[-1] == ("commit", {("preds", 0): 8, ("labels", 1): 41})


class _AssigningConsumer(Consumer):
    """What ``assigned`` asks of the consumer: seeks to the start, committed offsets."""

    def __init__(self, journal, committed=None):
        super().__init__(journal)
        self._committed = committed or {}

    async def seek_to_beginning(self, *partitions):
        self.journal.append(("seek_to_beginning", sorted((tp.topic, tp.partition) for tp in partitions)))

    async def committed(self, tp):
        return self._committed.get(tp)


def test_a_recreated_topic_is_read_from_its_start_and_others_from_their_commits():
    from streams.topic_identity import TopicIdentity

    ids = {"preds": "id-1", "labels": "id-2"}

    async def describe(topics):
        return {t: ids[t] for t in topics}

    journal, dedup = [], Dedup()
    loop, _, _ = _loop(journal, dedup)
    loop.topic_identity = TopicIdentity(describe)
    loop.consumer = _AssigningConsumer(journal, committed={PRED: 7, LABEL: 41})
    previous_group = []

    async def fallback(tps):
        previous_group.extend(tps)
        return {}

    loop.fallback_positions = fallback

    async def scenario():
        await loop.assigned({PRED, LABEL})           # first sight: ids remembered, commits stand
        assert [e for e in journal if e[0] == "seek_to_beginning"] == []
        await loop.assigned({PRED, LABEL})           # same ids: nothing to do
        assert [e for e in journal if e[0] == "seek_to_beginning"] == []
        ids["preds"] = "id-3"                        # the broker restarted empty, or the topic was recreated
        await loop.assigned({PRED, LABEL})

    asyncio.run(scenario())
    assert [e for e in journal if e[0] == "seek_to_beginning"] == [("seek_to_beginning", [("preds", 0)])]
    assert loop.ingest_counts["ingest_logs_recreated"] == 1
    assert previous_group == []                    # committed partitions never ask the previous group


def test_topic_identity_knows_nothing_when_the_broker_cannot_say():
    from streams.topic_identity import NO_ID, TopicIdentity

    answers = [{"t": "a"}, {"t": NO_ID}, ConnectionError("down"), {"t": "b"}, {}, {"t": "b"}]

    async def describe(topics):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    identity = TopicIdentity(describe)

    async def scenario():
        found = []
        for _ in range(6):
            found.append(await identity.recreated(["t"]))
            identity.accept()
        return found + [await identity.recreated([])]

    assert asyncio.run(scenario()) == [set(), set(), set(), {"t"}, set(), set(), set()]


def test_a_recreated_topic_not_acted_on_is_named_again():
    """A seek interrupted (another rebalance) before ``accept``: the next assignment still sees it."""
    from streams.topic_identity import TopicIdentity

    answers = [{"t": "a"}, {"t": "b"}, {"t": "b"}, {"t": "b"}]

    async def describe(topics):
        return answers.pop(0)

    identity = TopicIdentity(describe)

    async def scenario():
        first = await identity.recreated(["t"])
        identity.accept()
        interrupted = await identity.recreated(["t"])          # no accept: the seek never happened
        again = await identity.recreated(["t"])
        identity.accept()
        return first, interrupted, again, await identity.recreated(["t"])

    assert asyncio.run(scenario()) == (set(), {"t"}, {"t"}, set())
