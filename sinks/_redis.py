"""Redis client settings shared by ``RedisSink`` and ``StatusStore``.

Short socket timeouts and no client-side retries: the router owns retrying (with
backoff), and the CLI would rather report "Redis unreachable" than wait.
"""
from __future__ import annotations

import redis
import redis.asyncio
from redis.backoff import NoBackoff


def async_client(url: str, timeout: float) -> "redis.asyncio.Redis":
    from redis.asyncio.retry import Retry

    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,  # PING a connection idle this long before reusing it
    )


def sync_client(url: str, timeout: float) -> "redis.Redis":
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
