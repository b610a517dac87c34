"""Drop redelivered alerts before they reach ``driftline.alerts`` consumers.

Processing is at-least-once (the embedded broker has no transactional producer),
so a worker that crashes between sending an alert and checkpointing will send
it again after the restart. Alert ids are deterministic, so one ``SET NX`` in
Redis per alert tells a first delivery from a repeat. When Redis is down the
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

    async def first_delivery(self, record_id: str) -> bool:
        try:
            fresh = await self.client.set(self.prefix + record_id, 1, nx=True, ex=int(self.ttl))
        except Exception as exc:  # Redis down: let it through
            self.unavailable += 1
            log.warning("dedup guard unavailable (%s); delivering %s without dedup", type(exc).__name__, record_id)
            await self._reset()
            return True
        if not fresh:
            self.skipped += 1
        return bool(fresh)

    async def forget(self, record_id: str) -> None:
        """Undo a mark when the delivery it guarded failed."""
        try:
            await self.client.delete(self.prefix + record_id)
        except Exception:
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
