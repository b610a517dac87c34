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

from sinks._redis import async_client

log = logging.getLogger(__name__)


class DedupGuard:
    """Remembers delivered record ids in Redis for ``ttl`` seconds."""

    def __init__(self, url: str, ttl: float = 7 * 24 * 3600, timeout: float = 1.0,
                 prefix: str = "driftline:delivered:"):
        self.url = url
        self.ttl = ttl
        self.timeout = timeout
        self.prefix = prefix
        self._client = None
        self.skipped = 0
        self.unavailable = 0

    @property
    def client(self):
        if self._client is None:
            self._client = async_client(self.url, self.timeout)
        return self._client

    async def delivered_before(self, record_id: str) -> bool:
        """True when this id was delivered already. Ask before sending, mark after:
        a crash in between re-sends (a duplicate with the same id) instead of losing it."""
        try:
            seen = await self.client.exists(self.prefix + record_id)
        except Exception as exc:  # Redis down: let it through
            self.unavailable += 1
            log.warning("dedup guard unavailable (%s); delivering %s without dedup", type(exc).__name__, record_id)
            await self._reset()
            return False
        if seen:
            self.skipped += 1
        return bool(seen)

    async def mark_delivered(self, record_id: str) -> None:
        try:
            await self.client.set(self.prefix + record_id, 1, ex=int(self.ttl))
        except Exception:
            self.unavailable += 1
            await self._reset()

    async def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:
                pass

    async def close(self) -> None:
        await self._reset()
