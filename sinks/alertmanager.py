"""Alerts POSTed to Prometheus Alertmanager (``/api/v2/alerts``), which then routes them.

Alertmanager knows an alert by its label set. Each condition an alert announces becomes
one Alertmanager alert labelled ``alertname``, ``model``, ``model_version``, ``kind``,
``severity`` and ``condition`` (the feature, or the lifecycle key); driftline's
``resolved`` alert for that condition sets ``endsAt`` on it. A resolved alert does not
carry the severity the condition was announced with, so it ends both (an end for a
label set Alertmanager never saw firing is stored as resolved and notifies no one).

Firing alerts get ``endsAt = now + ttl``: driftline re-announces a persisting condition
only every ``realert_windows`` windows, so without an end of its own Alertmanager would
resolve it after its ``resolve_timeout`` (5 minutes by default). Retrain requests are
events, not alerts, and are not sent.
"""
from __future__ import annotations

import datetime as dt
import time

from sinks.base import redact_url, to_json
from sinks.webhook import WebhookSink, summary_line

_WINDOW_SEVERITIES = ("warning", "critical")   # what a window alert can be announced with
# `driftline audit --recompute` reruns these (streams.audit.WINDOW_KINDS; sinks do not import streams)
_RECOMPUTABLE = ("input_drift", "prediction_drift", "data_quality", "multivariate_drift", "segment_drift",
                 "estimated_performance", "fairness")


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def alertname(kind: str) -> str:
    """``input_drift`` -> ``DriftlineInputDrift`` (Prometheus' CamelCase alert names).

    >>> alertname("estimated_performance")
    'DriftlineEstimatedPerformance'
    """
    return "Driftline" + "".join(part.capitalize() for part in kind.split("_"))


def alertmanager_alerts(record: dict, ttl: float, now: float | None = None) -> list[dict]:
    """The Alertmanager alerts for one driftline record ([] for a retrain request).

    >>> firing = {"alert_id": "a1", "model": "fraud", "model_version": "3", "kind": "input_drift",
    ...           "severity": "critical", "conditions": ["amount"], "message": "input drift in amount",
    ...           "created_at": 0.0}
    >>> [a] = alertmanager_alerts(firing, ttl=60, now=0.0)
    >>> a["labels"]["alertname"], a["labels"]["condition"], a["endsAt"]
    ('DriftlineInputDrift', 'amount', '1970-01-01T00:01:00Z')
    >>> resolved = {**firing, "kind": "resolved", "severity": "info", "evidence": {"resolves": "input_drift"}}
    >>> [(a["labels"]["severity"], a["endsAt"]) for a in alertmanager_alerts(resolved, ttl=60, now=5.0)]
    [('warning', '1970-01-01T00:00:05Z'), ('critical', '1970-01-01T00:00:05Z')]
    """
    now = time.time() if now is None else now
    kind = record.get("kind")
    if kind == "retrain" or "alert_id" not in record:
        return []
    alert_id = str(record["alert_id"])
    base = {"model": str(record.get("model")), "model_version": str(record.get("model_version"))}
    recompute = " --recompute" if kind in _RECOMPUTABLE else ""
    annotations = {"summary": record.get("message") or summary_line(record), "alert_id": alert_id,
                   "audit": f"driftline audit {alert_id}{recompute}"}
    conditions = record.get("conditions") or []
    if kind == "resolved":
        ended = (record.get("evidence") or {}).get("resolves")
        if not ended:
            return []
        return [{"labels": {"alertname": alertname(ended), **base, "kind": ended, "severity": severity,
                            **({"condition": str(c)} if c is not None else {})},
                 "annotations": {**annotations, "resolved_by": alert_id}, "endsAt": _iso(now)}
                for c in conditions or [None] for severity in _WINDOW_SEVERITIES]
    created = record.get("created_at")
    starts = created if isinstance(created, (int, float)) and created <= now else now
    return [{"labels": {"alertname": alertname(str(kind)), **base, "kind": str(kind),
                        "severity": str(record.get("severity")),
                        **({"condition": str(c)} if c is not None else {})},
             "annotations": annotations, "startsAt": _iso(starts), "endsAt": _iso(now + ttl)}
            for c in conditions or [None]]


class AlertmanagerSink(WebhookSink):
    """POST each alert to ``{url}/api/v2/alerts``; failures raise, and the router retries.

    ``url`` is Alertmanager's base URL (``http://127.0.0.1:9093``); ``ttl`` is how long a
    firing alert stays firing in Alertmanager without a re-announcement or a ``resolved``.
    Delivery, timeouts and error messages are the webhook sink's.
    """

    def __init__(self, url: str, timeout: float = 5.0, ttl: float = 86400.0,
                 headers: dict[str, str] | None = None, name: str | None = None):
        super().__init__(url.rstrip("/") + "/api/v2/alerts", timeout=timeout, headers=headers,
                         name=name or "alertmanager")
        self.ttl = float(ttl)

    async def __call__(self, record: dict) -> None:
        alerts = alertmanager_alerts(record, self.ttl)
        if alerts:
            await self._post(to_json(alerts))

    def __repr__(self) -> str:
        return f"AlertmanagerSink(url={redact_url(self.url)!r}, ttl={self.ttl}, name={self.name!r})"
