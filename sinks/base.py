"""What every sink is: an async callable that delivers one alert dict, or raises.

Alerts and retrain requests reach sinks as plain, JSON-safe dicts with at least
``model``, ``model_version``, ``kind``, ``severity`` and ``created_at``, plus an
``alert_id`` (alerts) or ``event_id`` (retrain requests) and any evidence fields.
Sinks never mutate the record: the router hands the same dict to every sink.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, runtime_checkable
from urllib.parse import urlsplit

import orjson

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")


def severity_rank(severity: str) -> int:
    """Position of ``severity`` in ``SEVERITIES`` (info=0 < warning=1 < critical=2).

    >>> severity_rank("critical") > severity_rank("warning")
    True
    """
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {SEVERITIES}") from None


def record_id(record: dict) -> str | None:
    """The record's identity: ``alert_id`` for alerts, ``event_id`` for retrain requests."""
    value = record.get("alert_id") or record.get("event_id")
    return None if value is None else str(value)


@runtime_checkable
class Sink(Protocol):
    """Somewhere alerts go. ``__call__`` raises on delivery failure so the router retries."""

    name: str

    async def __call__(self, record: dict) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class WindowClosed:
    """A tested window's summary (``ModelMonitor.window_summaries``), for sinks with ``takes_windows = True``:
    the router hands them these besides alerts and retrain requests."""

    summary: dict


class DeliveryError(Exception):
    """A sink could not deliver a record (the message never contains secrets)."""


@dataclass(frozen=True)
class SinkFilter:
    """Which records a sink wants: by ``kind`` and/or at or above ``min_severity``.

    ``None`` means "no restriction". A record with an unknown severity never passes
    a ``min_severity`` filter.

    >>> f = SinkFilter(kinds={"input_drift"}, min_severity="warning")
    >>> f.matches({"kind": "input_drift", "severity": "critical"})
    True
    >>> f.matches({"kind": "input_drift", "severity": "info"})
    False
    """

    kinds: frozenset[str] | None = None
    min_severity: str | None = None

    def __init__(self, kinds: Iterable[str] | None = None, min_severity: str | None = None):
        if isinstance(kinds, str):  # a lone string would otherwise become a set of letters
            kinds = [kinds]
        object.__setattr__(self, "kinds", None if kinds is None else frozenset(kinds))
        if min_severity is not None:
            severity_rank(min_severity)  # fail at configuration time, not per record
        object.__setattr__(self, "min_severity", min_severity)

    def matches(self, record: dict) -> bool:
        if self.kinds is not None and record.get("kind") not in self.kinds:
            return False
        if self.min_severity is not None:
            severity = record.get("severity")
            if severity not in SEVERITIES:
                return False
            return severity_rank(severity) >= severity_rank(self.min_severity)
        return True


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """Scheme, host and port only: credentials, paths (a Slack webhook's path *is* its
    secret) and query strings are dropped.

    >>> redact_url("https://user:pw@hooks.example.com:8443/services/T0/B0/XyZ?token=s3")
    'https://hooks.example.com:8443/…'
    >>> redact_url("redis://:hunter2@127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/…'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<url>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/…"


def redact(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """A one-line, secret-free description of ``exc`` for stats and logs."""
    message = redact(str(exc)).replace("\n", " ").strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_default(value: Any) -> Any:
    # Alerts should already be JSON-safe; sets and numpy scalars are the usual strays.
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(record: dict) -> bytes:
    """orjson bytes for ``record`` (numpy arrays and scalars are accepted)."""
    return orjson.dumps(record, default=_json_default,
                        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
