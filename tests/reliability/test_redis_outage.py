"""Redis goes away mid-stream: monitoring and Kafka alerts carry on; status writes resume when it is back."""
from __future__ import annotations

import time

import pytest

from streams.embedded import free_port, redis_reachable, start_redis
from tests.integration.harness import (
    Reader,
    drift_traffic,
    duplicates,
    isolated_env,
    labels_for,
    model_statuses,
    produce,
    read_alerts,
    topic,
    wait_processed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = 1_767_225_600.0


def test_monitoring_and_kafka_alerts_continue_without_redis(broker_url, unique, start_worker, write_config):
    port = free_port()
    redis = start_redis(port)
    try:
        model, n, shift_at = f"ro-{unique}", 6000, 2000
        events = list(drift_traffic(n, shift_at=shift_at, model=model, shift=1.0))
        labels = labels_for(events)
        env = isolated_env(broker_url, redis.url)
        worker = start_worker(env, config=write_config())

        def publish(lo, hi):
            produce(broker_url, topic(env, "predictions"), [events[i:i + 50] for i in range(lo, hi, 50)])
            produce(broker_url, topic(env, "labels"), [labels[i:i + 50] for i in range(lo, hi, 50)])

        publish(0, shift_at)                              # reference + two windows, Redis up
        wait_processed(redis.url, {model: shift_at}, timeout=60)

        redis.stop()
        down_at = time.monotonic()
        assert not redis_reachable(redis.url)
        publish(shift_at, 4500)                           # the shift: alerts must still reach Kafka
        reader = Reader(broker_url, topic(env, "alerts"))
        try:
            during = reader.poll_until(lambda r: any(
                a["model"] == model and a["kind"] == "input_drift" and a["window"]["start"] >= START + shift_at
                for a in r), timeout=60)
        finally:
            reader.close()
        drift_during = [a for a in during if a["model"] == model and a["kind"] == "input_drift"
                        and a["window"]["start"] >= START + shift_at]
        alert_after = time.monotonic() - down_at
        assert worker.proc.poll() is None, worker.log()[-3000:]
        assert drift_during, "no alert on the alerts topic while Redis was down"
        time.sleep(max(0.0, 5.0 - (time.monotonic() - down_at)))   # several status cycles without Redis
        assert worker.proc.poll() is None and not redis_reachable(redis.url)

        redis = start_redis(port)                         # a new, empty Redis on the same port
        publish(4500, n)
        counts = wait_processed(redis.url, {model: n}, timeout=90, settle=3.0)
        (status,) = model_statuses(redis.url, model)
        alerts = [a for a in read_alerts(broker_url, topic(env, "alerts")) if a["model"] == model]
        log = worker.log()
        print(f"\n[redis outage] first shift alert on Kafka {alert_after:.1f}s into the outage "
              f"({len(drift_during)} drift alerts during it); after Redis came back the status shows "
              f"{counts[model]} of {n} predictions, {status['worker']['status_write_failures']} status writes "
              f"failed meanwhile; {len(alerts)} alerts in all")
        assert worker.proc.poll() is None, log[-3000:]
        assert counts[model] == n
        assert status["counts"]["labelled"] == n
        assert status["worker"]["status_write_failures"] > 0 or "Redis" in log
        assert not duplicates(a["alert_id"] for a in alerts)
        assert "Traceback" not in log, log[-3000:]
    finally:
        redis.stop()
