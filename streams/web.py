"""Operations endpoints on the worker's web server (Faust's, 127.0.0.1:6066 by default).

    /metrics   Prometheus text format (streams.metrics)
    /healthz   the process is up and its event loop answers: always 200
    /readyz    partitions assigned, state recovered and the broker answering: 200, else 503;
               Redis down is reported as "degraded" with 200 (monitoring goes on without
               Redis, only status and history writes wait), as Kubernetes' readiness idiom expects
    /dashboard the window history of every model, drawn (streams.report); read from Redis
"""
from __future__ import annotations

import asyncio
import gc
import time

from faust.web import View

from sinks.base import describe_error
from streams.metrics import CONTENT_TYPE, Metrics


def readiness(assigned: int, recovered: bool, rebalancing: bool, redis_error: str | None,
              broker_error: str | None = None) -> tuple[int, dict]:
    """HTTP status and body of ``/readyz`` from what the worker knows.

    >>> readiness(0, False, False, None)[0], readiness(4, True, False, None)[0]
    (503, 200)
    >>> code, body = readiness(4, True, False, "ConnectionError")
    >>> code, body["status"], body["checks"]["redis"]
    (200, 'degraded', 'ConnectionError')
    >>> readiness(4, True, False, None, "KafkaError")[0]
    503
    """
    ready = assigned > 0 and recovered and not rebalancing and not broker_error
    status = "unready" if not ready else ("degraded" if redis_error else "ready")
    checks = {"assigned_partitions": assigned, "recovered": recovered, "rebalancing": rebalancing,
              "broker": broker_error or "ok", "redis": redis_error or "ok"}
    return (200 if ready else 503), {"status": status, "checks": checks}


def install(app, worker, settings, extra_counts=dict) -> Metrics:
    """Add the endpoints to ``app``'s web server; returns the metrics (for the worker's hooks)."""
    metrics = Metrics(worker, settings, extra_counts)
    started = time.time()

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request):
            return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request):
            # the collector's thresholds in force (streams/gc_policy.py): what the worker applied
            return self.json({"status": "ok", "uptime_seconds": round(time.time() - started, 3),
                              "gc_thresholds": list(gc.get_threshold())})

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request):
            try:
                assigned = len(app.consumer.assignment())
            except Exception:      # the consumer is not started yet
                assigned = 0
            recovery = app.tables.recovery
            redis_error = broker_error = None
            try:
                await asyncio.wait_for(worker.status.ping(), 2.0)
            except Exception as exc:
                redis_error = describe_error(exc)
            try:   # a metadata request on the producer's client: does the broker answer now?
                client = app.producer._ensure_producer().client
                await asyncio.wait_for(client.fetch_all_metadata(), 2.0)
            except Exception as exc:
                broker_error = describe_error(exc)
            code, body = readiness(assigned, recovery.completed.is_set(), bool(app.rebalancing), redis_error,
                                   broker_error)
            return self.json(body, status=code)

    async def dashboard(view, request, model):
        from streams.report import dashboard_response   # plotly is imported on first use only

        code, html = await asyncio.to_thread(dashboard_response, settings.redis_url, "/dashboard", model,
                                             dict(request.query), settings.redis_prefix)
        return view.html(html, status=code)

    @app.page("/dashboard")
    class DashboardIndexView(View):
        async def get(self, request):
            return await dashboard(self, request, None)

    @app.page("/dashboard/{model}")
    class DashboardModelView(View):
        async def get(self, request, model):
            return await dashboard(self, request, model)

    return metrics
