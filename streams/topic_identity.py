"""Tell a recreated topic from the one a consumer read before: by its topic id (KIP-516).

A topic deleted and created again under the same name, or every topic of a memory-only broker
that restarted (the embedded Tansu), starts its partitions at offset 0 again. A consumer that
reconnects keeps what it knew of the old log: its fetch positions, and offsets it commits
meanwhile, which the new broker may store (Tansu does, while answering UnknownMemberId). It then
reads the new log from the old log's positions and never sees the records below them. Seen in
tests/reliability/test_broker_restart.py: the new log of ``predictions[2]`` held offsets 0 and
1, the ingest consumer fetched from 1 (the old log's position) and committed 2, and after the
rejoin it started at that commit: the record at offset 0 was lost.

Offsets cannot tell the two logs apart; the topic id can: the broker gives every topic a new
UUID when it is created. :class:`TopicIdentity` remembers each topic's id as last seen and, on
an assignment, names the topics whose id changed: their partitions start at the log's start.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger("driftline")

NO_ID = "00000000-0000-0000-0000-000000000000"   # what a broker without topic ids (before 2.8) answers


class TopicIdentity:
    """``describe(topics)`` returns ``{topic: topic id or None}`` (None: the broker gives none).

    :meth:`recreated` names the changed topics; the ids it read become the known ones only at
    :meth:`accept`, once the caller has acted on them (a seek interrupted by another rebalance
    is then asked again)."""

    def __init__(self, describe: Callable[[list[str]], Awaitable[dict]]) -> None:
        self._describe = describe
        self._ids: dict[str, str] = {}
        self._read: dict[str, str] = {}

    async def recreated(self, topics: Iterable[str]) -> set[str]:
        """The topics among ``topics`` whose id is not the one accepted last time (none the first
        time a topic is seen, or when the broker cannot be asked: then nothing is known)."""
        topics = sorted(set(topics))
        if not topics:
            return set()
        try:
            ids = await self._describe(topics)
        except Exception as exc:     # best effort: the assignment goes on from the committed offsets
            log.warning("reading the ids of %s failed (%r): a recreated topic would go unnoticed", topics, exc)
            return set()
        changed = set()
        for topic in topics:
            new = ids.get(topic)
            if new is None or new == NO_ID:
                continue
            old = self._ids.get(topic)
            if old is not None and old != new:
                changed.add(topic)
            self._read[topic] = new
        return changed

    def accept(self) -> None:
        """The ids :meth:`recreated` read are the known ones from now on."""
        self._ids.update(self._read)
        self._read = {}


def admin_describe(options: dict) -> Callable[[list[str]], Awaitable[dict]]:
    """A ``describe`` for :class:`TopicIdentity` asking the cluster with kafka-python's admin client
    (aiokafka's Metadata requests carry no topic ids), in a thread: it is a blocking client.
    Its connection chatter (a dozen INFO lines per call) is kept out of the worker's log."""
    logging.getLogger("kafka").setLevel(logging.WARNING)

    def describe(topics: list[str]) -> dict:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(**options)
        try:
            return {t["name"]: t.get("topic_id") for t in admin.describe_topics(topics) if not t.get("error_code")}
        finally:
            admin.close()

    async def run(topics: list[str]) -> dict:
        return await asyncio.to_thread(describe, topics)

    return run
