"""The mlflow sink when its server is not there: the worker's side never waits, failures are counted
(against the real server: tests/integration/test_mlflow.py)."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from detectors.kpi import KpiTracker
from detectors.latency import LatencyTracker
from sinks import SinkRouter, build_sink
from sinks.base import SinkFilter
from sinks.mlflow_tracking import MlflowSink, window_metrics
from streams.config_check import ConfigError, check
from streams.embedded import free_port

def _outcomes():
    """A window summary's ``latency`` and ``kpis`` as the monitor writes them (real trackers)."""
    rng = np.random.default_rng(3)
    latency = LatencyTracker(reference_size=200, window_size=100, rolling_size=300, slo_ms={"p99": 250},
                             ert_windows=0)
    latency.observe(rng.lognormal(3.0, 0.4, 300))
    kpis = KpiTracker({"revenue": "higher"}, window=50)
    kpis.observe("revenue", rng.gamma(2.0, 2.0, 120), [{"region": "eu"}] * 120)
    return latency.close_window().to_dict(), kpis.summary()


LATENCY, KPIS = _outcomes()
SUMMARY = {"model": "m", "model_version": "1", "index": 4, "end": 1767225600.5, "n": 500,
           "metrics": {"accuracy": 0.91}, "estimate": {"accuracy": 0.9, "window": 4},
           "drifted_features": [], "features": {"x": {"effect_size": 0.01, "p_value": 0.5}}, "alerts": [],
           "latency": LATENCY, "kpis": KPIS}


def test_window_metrics_take_latency_and_kpis_when_the_summary_has_them():
    found = window_metrics(SUMMARY)
    assert found["latency.percentiles.p99"] == LATENCY["percentiles"]["p99"]
    assert found["latency.rolling.p50"] == LATENCY["rolling"]["p50"]
    assert found["latency.slo.p99.value"] == LATENCY["slo"]["p99"]["value"] and found["latency.slo.p99.limit"] == 250
    assert found["latency.n"] == 100 and found["latency.drift.p_value"] == LATENCY["drift"]["p_value"]
    revenue = KPIS["revenue"]
    assert found["kpis.revenue.mean"] == revenue["mean"] and found["kpis.revenue.n"] == 120
    assert [found["kpis.revenue.ci95_low"], found["kpis.revenue.ci95_high"]] == revenue["ci95"]
    assert found["kpis.revenue.baseline.mean"] == revenue["baseline"]["mean"]
    assert found["kpis.revenue.segments.region=eu.mean".replace("=", "_")] == revenue["segments"]["region=eu"]["mean"]
    assert "latency.percentiles.p50" not in window_metrics({**SUMMARY, "latency": None})


def test_an_unreachable_server_costs_publish_nothing_and_failures_are_counted():
    async def scenario():
        sink = MlflowSink(f"http://127.0.0.1:{free_port()}", timeout=1)
        router = SinkRouter([(sink, SinkFilter())], maxsize=3, backoff_base=0.05, backoff_cap=0.2)
        await router.start()
        started = time.perf_counter()
        for i in range(10):
            router.publish_window({**SUMMARY, "index": i})
            router.publish({"alert_id": f"a{i}", "kind": "input_drift", "severity": "warning", "model": "m",
                            "model_version": "1", "message": "x"})
        publish_seconds = time.perf_counter() - started
        deadline = time.monotonic() + 30
        while router.stats()["mlflow"]["failed_attempts"] < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stats = router.stats()["mlflow"]
        await router.stop(flush_timeout=0.1)
        return publish_seconds, stats

    publish_seconds, stats = asyncio.run(scenario())
    assert publish_seconds < 0.05
    assert stats["failed_attempts"] >= 2 and stats["delivered"] == 0
    assert stats["dropped"] >= 17 and stats["pending"] <= 3          # bounded: the oldest go
    assert "mlflow at http://127.0.0.1" in stats["last_error"]


def test_configuration():
    check("x.toml", {"sinks": [{"type": "mlflow", "tracking_uri": "http://127.0.0.1:5000", "experiment_prefix": "p/"}]})
    with pytest.raises(ConfigError) as caught:
        check("x.toml", {"sinks": [{"type": "mlflow", "tracking_url": "http://127.0.0.1:5000"}]})
    assert "did you mean 'tracking_uri'" in "\n".join(caught.value.lines)
    with pytest.raises(ValueError, match="needs"):
        build_sink({"type": "mlflow"})
