"""Where alerts and retrain requests go: Kafka topic, Redis, webhook, Alertmanager, file, log.

Sinks are small async callables (see :mod:`sinks.base`); :class:`SinkRouter` gives
each one a bounded buffer and a retrying worker so no sink can block monitoring.
This package never imports faust and never reads the environment: the streams
layer passes in configuration and, for the Kafka sink, a ``send`` callable.
"""
from __future__ import annotations

from typing import Any

from sinks.alertmanager import AlertmanagerSink
from sinks.cloudevents import ENVELOPES, CloudEventsEnvelope
from sinks.base import SEVERITIES, DeliveryError, Sink, SinkFilter, redact_url, severity_rank
from sinks.jsonl import JsonlSink
from sinks.log import LogSink
from sinks.redis_sink import RedisSink
from sinks.router import SinkRouter
from sinks.status import (
    StatusStore,
    StoreUnavailable,
    get_reference_sync,
    put_reference_sync,
    read_status_sync,
    write_status_sync,
)
from sinks.topic import Send, TopicSink
from sinks.webhook import WebhookError, WebhookSink, slack_payload

__all__ = [
    "AlertmanagerSink", "CloudEventsEnvelope", "SEVERITIES", "DeliveryError", "JsonlSink", "LogSink", "RedisSink", "Send", "Sink",
    "SinkFilter", "SinkRouter", "StatusStore", "StoreUnavailable", "TopicSink",
    "WebhookError", "WebhookSink", "build_sink", "build_sinks", "get_reference_sync",
    "put_reference_sync", "read_status_sync", "redact_url", "severity_rank",
    "slack_payload", "write_status_sync",
]

# Keys each sink type accepts besides the common "type", "name", "kinds", "min_severity".
_OPTIONS = {
    "kafka": {"envelope", "source", "mode"},   # the alerts/retrain topics' envelope (the worker writes them)
    "log": {"logger"},
    "jsonl": {"path"},
    "redis": {"url", "stream", "maxlen", "audit_ttl", "timeout", "prefix"},
    "webhook": {"url", "slack", "timeout", "headers", "envelope", "source"},
    "alertmanager": {"url", "timeout", "ttl", "headers"},
    "mlflow": {"tracking_uri", "experiment_prefix", "timeout", "retries"},   # pip install 'driftline[mlflow]'
}
_REQUIRED = {"jsonl": {"path"}, "redis": {"url"}, "webhook": {"url"}, "alertmanager": {"url"}, "mlflow": {"tracking_uri"}}
_COMMON = {"type", "name", "kinds", "min_severity"}


def build_sink(entry: dict[str, Any], send: Send | None = None) -> tuple[Sink, SinkFilter]:
    """One config entry -> (sink, filter). Unknown types and keys raise ``ValueError``."""
    kind = entry.get("type")
    if kind not in _OPTIONS:
        raise ValueError(f"sink type {kind!r} is not one of {sorted(_OPTIONS)}")
    unknown = set(entry) - _COMMON - _OPTIONS[kind]
    if unknown:
        raise ValueError(f"{kind} sink: unknown option(s) {sorted(unknown)}; "
                         f"allowed: {sorted(_COMMON | _OPTIONS[kind])}")
    missing = _REQUIRED.get(kind, set()) - {k for k, v in entry.items() if v}
    if missing:
        raise ValueError(f"{kind} sink needs {sorted(missing)}")
    options = {k: v for k, v in entry.items() if k in _OPTIONS[kind]}
    name = entry.get("name")
    envelope = envelope_of(entry)
    if kind == "webhook":
        options.pop("source", None)
        options["envelope"] = envelope
    if kind == "kafka":
        if send is None:
            raise ValueError("a kafka sink needs the streams layer's send callable")
        sink: Sink = TopicSink(send, name=name or "kafka",
                               envelope=envelope if envelope and envelope.mode == "structured" else None)
    elif kind == "log":
        sink = LogSink(**options, name=name or "log")
    elif kind == "jsonl":
        sink = JsonlSink(**options, name=name or "jsonl")
    elif kind == "redis":
        sink = RedisSink(**options, name=name or "redis")
    elif kind == "alertmanager":
        sink = AlertmanagerSink(**options, name=name)
    elif kind == "mlflow":
        from sinks.mlflow_tracking import MlflowSink   # the optional extra: imported only when configured

        sink = MlflowSink(**options, name=name)
    else:
        sink = WebhookSink(**options, name=name)
    return sink, SinkFilter(entry.get("kinds"), entry.get("min_severity"))


def envelope_of(entry: dict[str, Any]) -> CloudEventsEnvelope | None:
    """The CloudEvents envelope a ``webhook`` or ``kafka`` entry asks for (``envelope = "cloudevents"``), or None."""
    envelope = entry.get("envelope", "none")
    if envelope not in ENVELOPES:
        raise ValueError(f"envelope {envelope!r} is not one of {ENVELOPES}")
    if envelope == "none":
        for key in ("source", "mode"):
            if key in entry:
                raise ValueError(f"{entry.get('type')} sink: {key!r} needs envelope = \"cloudevents\"")
        return None
    if entry.get("slack"):
        raise ValueError("webhook sink: slack = true and envelope = \"cloudevents\" exclude each other")
    if entry.get("type") == "webhook" and entry.get("mode", "structured") != "structured":
        raise ValueError("webhook sink: CloudEvents are sent in structured mode")
    return CloudEventsEnvelope(source=entry.get("source") or "/driftline", mode=entry.get("mode", "structured"))


def build_sinks(config: list[dict[str, Any]], send: Send | None = None, maxsize: int = 10_000,
                **router_options: Any) -> SinkRouter:
    """A (not yet started) :class:`SinkRouter` from config entries such as
    ``{"type": "webhook", "url": ..., "slack": True, "kinds": [...], "min_severity": "warning"}``.

    Sinks without an explicit ``name`` are named after their type, with ``-2``,
    ``-3``... appended when a type appears more than once.
    """
    router = SinkRouter(maxsize=maxsize, **router_options)
    taken: set[str] = set()
    for entry in config:
        sink, sink_filter = build_sink(entry, send)
        if "name" not in entry:
            base, n = sink.name, 2
            while sink.name in taken:
                sink.name, n = f"{base}-{n}", n + 1
        taken.add(sink.name)
        router.add(sink, sink_filter)
    return router
