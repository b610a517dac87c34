"""Per-model status and reference profiles in Redis, for the worker and the CLI.

Keys (``{prefix}`` is the app id, ``driftline`` by default, so deployments sharing
one Redis never see each other's models):
    {prefix}:status:{model}:{version}     hash: json, updated_at
    {prefix}:models                       set of "{model}:{version}"
    {prefix}:reference:{model}:{version}  string: the reference profile as JSON
    {prefix}:reference-archive:{id}       string: every reference alerts were computed against,
                                          with its window settings (for audits)
    {prefix}:history:{model}:{version}    stream: window summaries (sinks.history)

Every failure (unreachable, timed out, unreadable data) raises
:class:`StoreUnavailable`, a ``ConnectionError``, within a few seconds: socket
timeouts default to 1 s and the client does not retry on its own.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import redis.exceptions

from sinks._redis import async_client, sync_client
from sinks.base import describe_error, redact_url, to_json

DEFAULT_PREFIX = "driftline"
MODELS_KEY = "{prefix}:models"
STATUS_KEY = "{prefix}:status:{model}:{version}"
REFERENCE_KEY = "{prefix}:reference:{model}:{version}"
ARCHIVE_KEY = "{prefix}:reference-archive:{reference_id}"
_FAILURES = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)


class StoreUnavailable(ConnectionError):
    """Redis could not be reached or answered with something unusable."""


@contextlib.contextmanager
def _as_unavailable(url: str):
    try:
        yield
    except StoreUnavailable:
        raise
    except _FAILURES as exc:
        raise StoreUnavailable(f"redis at {redact_url(url)}: {describe_error(exc)}") from None


def _status_entry(member: str, fields: dict) -> dict | None:
    raw = fields.get(b"json")
    if raw is None:  # deleted between SMEMBERS and HGETALL
        return None
    try:
        status = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(status, dict):
        return None
    model, _, version = member.rpartition(":")
    status.setdefault("model", model)
    status.setdefault("model_version", version)
    updated = fields.get(b"updated_at")
    if updated is not None:
        status["updated_at"] = float(updated)
    return status


def _status_fields(model: str, version, status: dict) -> dict:
    body = {"model": model, "model_version": version, **status}
    return {"json": to_json(body), "updated_at": repr(time.time())}


def _reference(raw: bytes | None, url: str) -> dict | None:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StoreUnavailable(f"redis at {redact_url(url)}: unreadable reference profile ({exc})") from None


def _sort(statuses: list[dict]) -> list[dict]:
    return sorted(statuses, key=lambda s: (str(s.get("model")), str(s.get("model_version"))))


class StatusStore:
    """Async access to model status and reference profiles (see the module docstring).

    Entries that cannot be parsed are skipped by ``read_all`` rather than hiding
    every other model's status.
    """

    def __init__(self, url: str, timeout: float = 1.0, prefix: str = DEFAULT_PREFIX):
        self.url = url
        self.timeout = timeout
        self.prefix = prefix
        self._client = None
        self._history_lock = asyncio.Lock()

    @property
    def client(self):
        if self._client is None:
            self._client = async_client(self.url, self.timeout)
        return self._client

    async def _run(self, coro):
        # The socket timeouts bound each read; this bounds the whole operation.
        with _as_unavailable(self.url):
            try:
                return await asyncio.wait_for(coro, self.timeout * 4)
            except _FAILURES:
                await self._reset()
                raise

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers (readiness probe)."""
        await self._run(self.client.ping())

    async def append_window(self, entry: dict, maxlen: int) -> None:
        """Add a window summary to its version's history (sinks.history), keeping the newest ``maxlen``."""
        from sinks.history import HISTORY_KEY, history_entry_id

        key = HISTORY_KEY.format(prefix=self.prefix, model=entry["model"], version=entry["model_version"])

        async def add():
            try:
                await self.client.xadd(key, {"json": to_json(entry)}, id=history_entry_id(entry),
                                       maxlen=maxlen, approximate=False)
            except redis.exceptions.ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    raise   # else: a window tested again after a restart, already in the history

        # Writes run as background tasks: the lock (it wakes waiters first come, first served)
        # keeps them in window order, since a stream refuses an id below its last one.
        async with self._history_lock:
            await self._run(add())

    async def write_status(self, model: str, version, status: dict) -> None:
        async def write():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(STATUS_KEY.format(prefix=self.prefix, model=model, version=version),
                          mapping=_status_fields(model, version, status))
                pipe.sadd(MODELS_KEY.format(prefix=self.prefix), f"{model}:{version}")
                await pipe.execute()

        await self._run(write())

    async def write_statuses(self, entries) -> None:
        """Write many versions' status in one round trip: ``entries`` of ``(model, version, status)``.

        A worker with hundreds of active models writes them all once a second in one pipeline,
        not one transaction each (issue 16).
        """
        entries = list(entries)
        if not entries:
            return

        async def write():
            async with self.client.pipeline(transaction=False) as pipe:
                for model, version, status in entries:
                    pipe.hset(STATUS_KEY.format(prefix=self.prefix, model=model, version=version),
                              mapping=_status_fields(model, version, status))
                pipe.sadd(MODELS_KEY.format(prefix=self.prefix), *{f"{m}:{v}" for m, v, _ in entries})
                await pipe.execute()

        await self._run(write())

    async def read_all(self) -> list[dict]:
        async def read():
            members = sorted(m.decode() for m in await self.client.smembers(MODELS_KEY.format(prefix=self.prefix)))
            async with self.client.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.hgetall(f"{self.prefix}:status:{member}")
                rows = await pipe.execute()
            return members, rows

        members, rows = await self._run(read())
        return _sort([s for m, r in zip(members, rows) if (s := _status_entry(m, r)) is not None])

    async def put_reference(self, model: str, version, profile: dict) -> None:
        await self._run(self.client.set(REFERENCE_KEY.format(prefix=self.prefix, model=model, version=version),
                                        to_json(profile)))

    async def get_reference(self, model: str, version) -> dict | None:
        raw = await self._run(self.client.get(REFERENCE_KEY.format(prefix=self.prefix, model=model, version=version)))
        return _reference(raw, self.url)

    async def read_status(self, model: str, version) -> dict | None:
        fields = await self._run(self.client.hgetall(STATUS_KEY.format(prefix=self.prefix, model=model,
                                                                            version=version)))
        return _status_entry(f"{model}:{version}", fields) if fields else None

    async def archive_reference(self, entry: dict) -> None:
        """Keep a reference (and the settings windows were judged with) under its id."""
        await self._run(self.client.set(ARCHIVE_KEY.format(prefix=self.prefix, reference_id=entry["reference_id"]),
                                        to_json(entry)))

    async def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), self.timeout)

    async def close(self) -> None:
        await self._reset()

    def __repr__(self) -> str:
        return f"StatusStore(url={redact_url(self.url)!r})"


# -- synchronous helpers for the CLI ------------------------------------------

def read_status_sync(url: str, timeout: float = 1.0, prefix: str = DEFAULT_PREFIX) -> list[dict]:
    """Every model's status, sorted by model and version; raises ``StoreUnavailable``."""
    with _as_unavailable(url), contextlib.closing(sync_client(url, timeout)) as client:
        members = sorted(m.decode() for m in client.smembers(MODELS_KEY.format(prefix=prefix)))
        pipe = client.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(f"{prefix}:status:{member}")
        rows = pipe.execute()
    return _sort([s for m, r in zip(members, rows) if (s := _status_entry(m, r)) is not None])


def write_status_sync(url: str, model: str, version, status: dict, timeout: float = 1.0,
                      prefix: str = DEFAULT_PREFIX) -> None:
    with _as_unavailable(url), contextlib.closing(sync_client(url, timeout)) as client:
        pipe = client.pipeline(transaction=True)
        pipe.hset(STATUS_KEY.format(prefix=prefix, model=model, version=version),
                  mapping=_status_fields(model, version, status))
        pipe.sadd(MODELS_KEY.format(prefix=prefix), f"{model}:{version}")
        pipe.execute()


def put_reference_sync(url: str, model: str, version, profile: dict, timeout: float = 1.0,
                       prefix: str = DEFAULT_PREFIX) -> None:
    with _as_unavailable(url), contextlib.closing(sync_client(url, timeout)) as client:
        client.set(REFERENCE_KEY.format(prefix=prefix, model=model, version=version), to_json(profile))


def get_reference_sync(url: str, model: str, version, timeout: float = 1.0,
                       prefix: str = DEFAULT_PREFIX) -> dict | None:
    with _as_unavailable(url), contextlib.closing(sync_client(url, timeout)) as client:
        raw = client.get(REFERENCE_KEY.format(prefix=prefix, model=model, version=version))
    return _reference(raw, url)


def get_archived_reference_sync(url: str, reference_id: str, timeout: float = 1.0,
                                prefix: str = DEFAULT_PREFIX) -> dict | None:
    with _as_unavailable(url), contextlib.closing(sync_client(url, timeout)) as client:
        raw = client.get(ARCHIVE_KEY.format(prefix=prefix, reference_id=reference_id))
    return _reference(raw, url)
