"""Alerts as one log line each, through python logging."""
from __future__ import annotations

import logging
import math
from numbers import Real

from sinks.base import record_id

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
# Evidence fields worth a glance in a log line. Strings are only taken from this
# list (evidence can carry anything, including URLs with credentials); numbers from
# any field, since a number cannot leak a secret.
_STRING_FIELDS = ("feature", "features", "metric", "detector", "reason", "segment", "status")
_HEADER = ("kind", "model", "model_version", "severity")
_SKIP = {*_HEADER, "alert_id", "event_id", "created_at"}


def _short(value: object, limit: int = 80) -> str:
    text = str(value).replace("\n", " ").replace("\r", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Real) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)


def summarise(record: dict, max_numbers: int = 6) -> str:
    """``key=value`` pairs for one line: header fields, id, a few evidence numbers."""
    parts = [f"{key}={_short(record.get(key))}" for key in _HEADER]
    ident = record_id(record)
    if ident is not None:
        parts.append(f"id={_short(ident)}")
    for key in _STRING_FIELDS:
        value = record.get(key)
        if isinstance(value, str):
            parts.append(f"{key}={_short(value)!r}")
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            parts.append(f"{key}={_short(','.join(value))!r}")
    numbers = [
        (key, value) for key, value in record.items()
        if key not in _SKIP and isinstance(value, Real) and not isinstance(value, bool)
    ]
    parts += [f"{_short(key, 40)}={_number(value)}" for key, value in numbers[:max_numbers]]
    return " ".join(parts)


class LogSink:
    """Log each alert as one line at a level that follows its severity.

    Only the header fields, the id, whitelisted string fields and numeric evidence
    are logged, so secrets that ride along in a record never reach the log.
    """

    def __init__(self, logger: logging.Logger | str = "driftline.alerts", name: str = "log"):
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.name = name

    async def __call__(self, record: dict) -> None:
        level = _LEVELS.get(record.get("severity"), logging.WARNING)
        self.logger.log(level, "driftline alert %s", summarise(record))

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"LogSink(logger={self.logger.name!r}, name={self.name!r})"
