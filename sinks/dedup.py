"""Drop redelivered alerts before they reach ``driftline.alerts`` consumers.

Processing is at-least-once (the embedded broker has no transactional producer),
so a worker that crashes between sending an alert and checkpointing will send
it again after the restart. Alert ids are deterministic, so a key per delivered
alert in Redis tells a first delivery from a repeat. When Redis is down the
guard lets the alert through: a possible duplicate (same id, consumers can drop
it) is better than a lost alert.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sinks._redis import async_client

log = logging.getLogger(__name__)


class DedupGuard:
    """Remembers delivered record ids in Redis for ``ttl`` seconds, and in this process.

    The ids this process delivered are also kept in memory (the last ``recent`` of them), and a
    mark that Redis could not take is retried at the next call: a Redis restart or outage then
    costs no duplicate of what this worker sent itself, only of what another worker sent
    during the outage. A connection that a restarted server closed is retried once at once.
    """

    def __init__(self, url: str, ttl: float = 7 * 24 * 3600, timeout: float = 1.0,
                 prefix: str = "driftline:delivered:", recent: int = 100_000):
        self.url = url
        self.ttl = ttl
        self.timeout = timeout
        self.prefix = prefix
        self.recent = recent
        self._client = None
        self._sent: OrderedDict = OrderedDict()
        self._unmarked: list[str] = []
        self.skipped = 0
        self.unavailable = 0

    @property
    def client(self):
        if self._client is None:
            self._client = async_client(self.url, self.timeout)
        return self._client

    async def _call(self, command: str, *args, **kwargs):
        """One Redis command, tried twice: the first use of a pooled connection after a server
        restart fails with ConnectionError, and a new connection then succeeds."""
        try:
            return await getattr(self.client, command)(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError):
            await self._reset()
            return await getattr(self.client, command)(*args, **kwargs)

    async def delivered_before(self, record_id: str) -> bool:
        """True when this id was delivered already. Ask before sending, mark after:
        a crash in between re-sends (a duplicate with the same id) instead of losing it."""
        if record_id in self._sent:
            self.skipped += 1
            return True
        try:
            await self._flush_unmarked()
            seen = await self._call("exists", self.prefix + record_id)
        except Exception as exc:  # Redis down: let it through
            self.unavailable += 1
            log.warning("dedup guard unavailable (%s); delivering %s without dedup", type(exc).__name__, record_id)
            await self._reset()
            return False
        if seen:
            self.skipped += 1
        return bool(seen)

    async def mark_delivered(self, record_id: str) -> None:
        self._sent[record_id] = None
        if len(self._sent) > self.recent:
            self._sent.popitem(last=False)
        try:
            await self._call("set", self.prefix + record_id, 1, ex=int(self.ttl))
        except Exception:
            self.unavailable += 1
            if len(self._unmarked) < self.recent:
                self._unmarked.append(record_id)
            await self._reset()

    async def _flush_unmarked(self) -> None:
        """Marks Redis missed while it was away."""
        while self._unmarked:
            await self._call("set", self.prefix + self._unmarked[-1], 1, ex=int(self.ttl))
            self._unmarked.pop()

    async def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:
                pass

    async def close(self) -> None:
        await self._reset()
