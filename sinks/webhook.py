"""Alerts POSTed as JSON to a webhook, optionally shaped for Slack."""
from __future__ import annotations

import asyncio
import datetime as dt
import math
from numbers import Real

import aiohttp

from sinks.base import DeliveryError, record_id, redact_url, to_json
from sinks.cloudevents import STRUCTURED_CONTENT_TYPE, CloudEventsEnvelope

_ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
_DETAIL_FIELDS = ("feature", "metric", "reason")
_SKIP = {"alert_id", "event_id", "model", "model_version", "kind", "severity", "created_at"}


class WebhookError(DeliveryError):
    """The webhook answered with a non-2xx status or could not be reached."""


def _escape(text: str) -> str:
    # Slack mrkdwn treats &, < and > as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(value: Real) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def summary_line(record: dict, max_numbers: int = 3, limit: int = 300) -> str:
    """One human line: ``[WARNING] input_drift on fraud v3: feature=amount, psi=0.31``."""
    head = (f"[{str(record.get('severity', '?')).upper()}] {record.get('kind', 'alert')} "
            f"on {record.get('model', '?')} v{record.get('model_version', '?')}")
    details = [f"{key}={record[key]}" for key in _DETAIL_FIELDS if isinstance(record.get(key), str)]
    details += [
        f"{key}={_number(value)}" for key, value in record.items()
        if key not in _SKIP and isinstance(value, Real) and not isinstance(value, bool)
    ][:max_numbers]
    line = head + (": " + ", ".join(details) if details else "")
    line = " ".join(line.split())  # one line, whatever the fields held
    return line if len(line) <= limit else line[: limit - 1] + "…"


def slack_payload(record: dict) -> dict:
    """A small Slack message: a ``text`` fallback, one section and one context block."""
    line = summary_line(record)
    context = []
    created = record.get("created_at")
    if isinstance(created, Real):
        stamp = dt.datetime.fromtimestamp(float(created), dt.timezone.utc)
        context.append(stamp.strftime("%Y-%m-%d %H:%M:%S UTC"))
    ident = record_id(record)
    if ident is not None:
        context.append(f"id `{_escape(ident)}`")
    icon = _ICONS.get(record.get("severity"), ":bell:")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {_escape(line)}"}}]
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    return {"text": line, "blocks": blocks}


class WebhookSink:
    """POST each record as JSON (or, with ``slack=True``, as a Slack message; with ``envelope``, as a
    structured-mode CloudEvent, ``application/cloudevents+json``).

    A non-2xx answer, a connection error or a timeout raises :class:`WebhookError`,
    whose message names only the scheme, host and port (webhook URLs often carry
    their secret in the path or query), and the router retries with backoff. One
    ``aiohttp.ClientSession`` is created on first use and closed by ``close``.
    """

    def __init__(
        self,
        url: str,
        slack: bool = False,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
        name: str | None = None,
        envelope: CloudEventsEnvelope | None = None,
    ):
        if slack and envelope is not None:
            raise ValueError("a Slack message cannot be a CloudEvent")
        self.url = url
        self.slack = slack
        self.envelope = envelope
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.name = name or ("slack" if slack else "webhook")
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Content-Type": STRUCTURED_CONTENT_TYPE if self.envelope else "application/json",
                         **self.headers},
            )
        return self._session

    async def __call__(self, record: dict) -> None:
        if self.envelope is not None:
            body = self.envelope.structured(record)
        else:
            body = slack_payload(record) if self.slack else record
        await self._post(to_json(body))

    async def _post(self, body: bytes) -> None:
        where = redact_url(self.url)
        try:
            async with self._get_session().post(self.url, data=body, allow_redirects=False) as response:
                if not 200 <= response.status < 300:
                    raise WebhookError(f"POST {where} answered HTTP {response.status}")
                await response.read()  # let the connection go back to the pool
        except WebhookError:
            raise
        except asyncio.TimeoutError:
            raise WebhookError(f"POST {where} timed out after {self.timeout}s") from None
        except aiohttp.ClientError as exc:
            raise WebhookError(f"POST {where} failed: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:
        return f"WebhookSink(url={redact_url(self.url)!r}, slack={self.slack}, name={self.name!r})"
