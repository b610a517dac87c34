"""Alerts into a Redis stream, plus one hash per alert for ``driftline audit``."""
from __future__ import annotations

import asyncio

import redis.exceptions

from sinks._redis import async_client
from sinks.base import record_id, redact_url, to_json

ALERT_KEY = "{prefix}:alert:{id}"
THIRTY_DAYS = 30 * 24 * 3600


def _field(value: object) -> str | int | float:
    return value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else (
        "" if value is None else str(value))


class RedisSink:
    """XADD each record to ``stream`` (trimmed to about ``maxlen`` entries) and keep
    ``{prefix}:alert:{alert_id}`` (or ``{event_id}``) as a hash for ``audit_ttl``
    seconds (``None`` keeps it forever). ``prefix`` is the app id (streams.config), so
    deployments sharing one Redis keep their alerts apart.

    Stream entries carry ``json`` (the whole record) and ``model``, ``model_version``,
    ``kind``, ``severity`` so consumers can filter without parsing. Both writes go
    in one MULTI/EXEC, so an alert is never half-written.

    Outages: a command that fails with a connection error drops the client's pooled
    connections, so the next attempt (the router retries with backoff) dials Redis
    afresh and delivery resumes as soon as the server is back.
    """

    def __init__(
        self,
        url: str,
        stream: str = "driftline:alerts",
        maxlen: int | None = 100_000,
        audit_ttl: int | None = THIRTY_DAYS,
        timeout: float = 2.0,
        name: str = "redis",
        prefix: str = "driftline",
    ):
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.audit_ttl = audit_ttl
        self.timeout = timeout
        self.name = name
        self.prefix = prefix
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = async_client(self.url, self.timeout)
        return self._client

    async def __call__(self, record: dict) -> None:
        body = to_json(record).decode()
        entry = {
            "json": body,
            "model": _field(record.get("model")),
            "model_version": _field(record.get("model_version")),
            "kind": _field(record.get("kind")),
            "severity": _field(record.get("severity")),
        }
        ident = record_id(record)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(self.stream, entry, maxlen=self.maxlen, approximate=True)
                if ident is not None:
                    key = ALERT_KEY.format(prefix=self.prefix, id=ident)
                    pipe.hset(key, mapping={**entry, "created_at": _field(record.get("created_at")),
                                            "stream": self.stream})
                    if self.audit_ttl:
                        pipe.expire(key, int(self.audit_ttl))
                await asyncio.wait_for(pipe.execute(), self.timeout * 3)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                OSError, asyncio.TimeoutError):
            await self._reset()
            raise

    async def _reset(self) -> None:
        """Forget every pooled connection so the next call reconnects from scratch."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.aclose(), self.timeout)
            except Exception:
                pass  # it is already broken; we only want it gone

    async def close(self) -> None:
        await self._reset()

    def __repr__(self) -> str:
        return f"RedisSink(url={redact_url(self.url)!r}, stream={self.stream!r}, name={self.name!r})"
