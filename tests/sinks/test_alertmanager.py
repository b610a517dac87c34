"""AlertmanagerSink against a real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1."""
from __future__ import annotations

import asyncio
import time

import pytest

from sinks import SinkRouter, build_sinks
from sinks.alertmanager import AlertmanagerSink
from streams.embedded import free_port
from tests.ops_services import get_json, start_alertmanager

pytestmark = pytest.mark.integration


def firing(alert_id="a1", severity="critical", conditions=("income",)):
    return {"alert_id": alert_id, "model": "credit", "model_version": "7", "kind": "input_drift",
            "severity": severity, "conditions": list(conditions), "feature": conditions[0],
            "message": f"input drift in {', '.join(conditions)} (window 3, n=500)", "created_at": time.time(),
            "window": {"end": time.time()}}


def resolved(condition="income", alert_id="r1"):
    return {"alert_id": alert_id, "model": "credit", "model_version": "7", "kind": "resolved", "severity": "info",
            "conditions": [condition], "feature": condition, "evidence": {"resolves": "input_drift"},
            "message": f"input drift in {condition} cleared for 3 windows", "created_at": time.time()}


def active(am) -> list[dict]:
    """Alertmanager's active (not resolved) alerts."""
    return get_json(f"{am.url}/api/v2/alerts?active=true&silenced=false&inhibited=false")


async def until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout}s")
        await asyncio.sleep(0.2)


def test_config_entry_builds_the_sink():
    router = build_sinks([{"type": "alertmanager", "url": "http://127.0.0.1:9093/", "ttl": 600}])
    sink = router._routes["alertmanager"].sink
    assert isinstance(sink, AlertmanagerSink) and sink.url == "http://127.0.0.1:9093/api/v2/alerts" and sink.ttl == 600
    with pytest.raises(ValueError, match="needs"):
        build_sinks([{"type": "alertmanager"}])


@pytest.mark.asyncio
async def test_alert_appears_with_its_labels_and_resolved_ends_it(tmp_path):
    am = start_alertmanager(tmp_path / "am")
    try:
        async with SinkRouter([(AlertmanagerSink(am.url), None)]) as router:
            router.publish(firing(conditions=("income", "age")))
            found = await until(lambda: len(active(am)) == 2 and active(am), 20, "two alerts in Alertmanager")
            by_condition = {a["labels"]["condition"]: a for a in found}
            assert set(by_condition) == {"income", "age"}
            alert = by_condition["income"]
            assert alert["labels"] == {"alertname": "DriftlineInputDrift", "model": "credit", "model_version": "7",
                                       "kind": "input_drift", "severity": "critical", "condition": "income"}
            assert alert["annotations"]["alert_id"] == "a1"
            assert alert["annotations"]["audit"] == "driftline audit a1 --recompute"
            assert alert["annotations"]["summary"] == "input drift in income, age (window 3, n=500)"
            assert alert["status"]["state"] == "active"

            router.publish(resolved("income"))
            left = await until(lambda: len(active(am)) == 1 and active(am), 20, "income resolved")
            assert left[0]["labels"]["condition"] == "age"
            assert router.stats()["alertmanager"]["failed_attempts"] == 0
    finally:
        am.stop()


@pytest.mark.asyncio
async def test_alertmanager_down_loses_nothing_and_does_not_block(tmp_path):
    port = free_port()
    sink = AlertmanagerSink(f"http://127.0.0.1:{port}", timeout=1.0)
    async with SinkRouter([(sink, None)], backoff_base=0.05, backoff_cap=0.5) as router:
        started = time.perf_counter()
        for i in range(50):
            router.publish(firing(alert_id=f"a{i}", conditions=(f"f{i}",)))
        assert time.perf_counter() - started < 0.05        # publish only queues
        await until(lambda: router.stats()["alertmanager"]["failed_attempts"] >= 2, 10, "failed attempts")
        assert router.stats()["alertmanager"]["pending"] == 50
        am = start_alertmanager(tmp_path / "am", port=port)
        try:
            await until(lambda: len(active(am)) == 50, 30, "every alert delivered after the outage")
            stats = router.stats()["alertmanager"]
            assert stats["delivered"] == 50 and stats["dropped"] == 0 and stats["pending"] == 0
        finally:
            am.stop()


def test_recomputable_kinds_are_the_audits():
    from sinks.alertmanager import _RECOMPUTABLE
    from streams.audit import WINDOW_KINDS

    assert set(_RECOMPUTABLE) == set(WINDOW_KINDS)
