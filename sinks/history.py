"""The window history: every tested window's summary, per model version, in a capped Redis stream.

    {prefix}:history:{model}:{version}    stream, entry id "{window index + 1}-0", field json

``{prefix}`` is the app id, as for the status keys (sinks.status).

The entry id is the window's index, so a window that a restarted worker tests again
(replaying from its checkpoint) is refused by Redis as "equal or smaller" instead of
being stored twice. The worker writes in the background; the CLI, the dashboard and
reports read with :func:`read_history_sync`.
"""
from __future__ import annotations

import contextlib

import orjson

from sinks._redis import sync_client
from sinks.status import DEFAULT_PREFIX, MODELS_KEY, StoreUnavailable, _as_unavailable

HISTORY_KEY = "{prefix}:history:{model}:{version}"


class UnknownModel(LookupError):
    """No status or history for the model (or the version) asked for."""


def history_entry_id(entry: dict) -> str:
    return f"{int(entry['index']) + 1}-0"


def versions_sync(url: str, model: str, timeout: float = 1.0, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The versions of ``model`` driftline has seen, in name order."""
    with _as_unavailable(url), contextlib.closing(sync_client(url, timeout)) as client:
        members = client.smembers(MODELS_KEY.format(prefix=prefix))
    return sorted(v for m, _, v in (m.decode().rpartition(":") for m in members) if m == model)


def models_sync(url: str, timeout: float = 1.0, prefix: str = DEFAULT_PREFIX) -> list[tuple[str, list[str]]]:
    """[(model, versions)] of every model driftline has status for, in name order."""
    with _as_unavailable(url), contextlib.closing(sync_client(url, timeout)) as client:
        members = sorted(m.decode() for m in client.smembers(MODELS_KEY.format(prefix=prefix)))
    found: dict[str, list[str]] = {}
    for model, _, version in (m.rpartition(":") for m in members):
        found.setdefault(model, []).append(version)
    return sorted(found.items())


def read_history_sync(url: str, model: str, version: str | None = None, last: int | None = None,
                      since: float | None = None, until: float | None = None,
                      timeout: float = 1.0, prefix: str = DEFAULT_PREFIX) -> dict[str, list[dict]]:
    """{version: window summaries, oldest first} of ``model`` (every version unless ``version``).

    ``last`` keeps the newest N windows of each version; ``since``/``until`` keep windows whose
    event-time end lies in that range. Raises :class:`UnknownModel` for a model or version never
    seen, and :class:`~sinks.status.StoreUnavailable` when Redis cannot be read.
    """
    known = versions_sync(url, model, timeout, prefix)
    if not known:
        raise UnknownModel(f"model {model!r} is not known to driftline (no status in Redis)")
    if version is not None and version not in known:
        raise UnknownModel(f"model {model!r} has no version {version!r}; known: {', '.join(known)}")
    found: dict[str, list[dict]] = {}
    with _as_unavailable(url), contextlib.closing(sync_client(url, timeout)) as client:
        for name in [version] if version is not None else known:
            key = HISTORY_KEY.format(prefix=prefix, model=model, version=name)
            rows = client.xrevrange(key, count=last) if last else client.xrevrange(key)
            entries = []
            for _id, fields in reversed(rows):
                try:
                    entry = orjson.loads(fields[b"json"])
                except (KeyError, orjson.JSONDecodeError):
                    raise StoreUnavailable(f"unreadable history entry {_id!r} in {key}") from None
                end = entry.get("end")
                if since is not None and (end is None or end < since):
                    continue
                if until is not None and (end is None or end > until):
                    continue
                entries.append(entry)
            found[name] = entries
    return found
