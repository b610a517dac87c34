"""SIGTERM mid-stream: the worker exits 0 (mode's EX_OK), promptly, alone, and the next one loses nothing."""
from __future__ import annotations

import re
import time

import pytest

from tests.integration.harness import (
    SMALL_WINDOWS,
    PacedProducer,
    alive,
    descendants,
    drift_traffic,
    isolated_env,
    processed,
    produce,
    topic,
    wait_processed,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sigterm_exits_zero_quickly_and_leaves_no_process(broker_url, redis_url, unique, start_worker, write_config):
    model, n = f"sd-{unique}", 8000
    events = list(drift_traffic(n, shift_at=100_000, model=model))
    env = isolated_env(broker_url, redis_url)
    config = write_config()
    worker = start_worker(env, config=config)
    batches = ((topic(env, "predictions"), events[i:i + 50], True) for i in range(0, len(events), 50))
    producer = PacedProducer(broker_url, batches, pause=0.02).start()
    try:
        wait_until(lambda: processed(redis_url, model) >= 1000, timeout=60, what="traffic flowing")
        pid = worker.proc.pid
        children = descendants(pid)
        started = time.monotonic()
        code = worker.terminate(timeout=30)
        took = time.monotonic() - started
        at_stop = processed(redis_url, model)
        successor = start_worker(env, config=config, tag="successor")
        producer.join(timeout=60)
    finally:
        producer.stop()
    left = {c for c in children | descendants(pid) if alive(c)}
    log = worker.log()
    counts = wait_processed(redis_url, {model: n}, timeout=90, settle=3.0)
    print(f"\n[shutdown] SIGTERM mid-stream (at {at_stop} of {n} processed): exit code {code} after {took:.1f}s; "
          f"{len(children)} child processes before, {len(left)} left after; the next worker brought the "
          f"state to {counts[model]} of {n}")
    assert code == 0, log[-3000:]
    assert took < 15, f"took {took:.1f}s to stop"
    assert not alive(pid)
    assert not left, f"processes left behind: {left}"
    shutdown = log[log.index("Signal received"):]
    assert "Closing event loop" in shutdown
    assert not re.search(r"Traceback|\[ERROR\]|\[CRITICAL\]", shutdown), shutdown[-3000:]
    assert successor.proc.poll() is None
    assert counts[model] == n, f"sent {n}, state holds {counts[model]} after a clean stop and a restart"


def test_sigterm_with_the_broker_down_still_ends_the_worker(redis_url, unique, tmp_path, start_worker, write_config):
    """Its own broker, stopped before the SIGTERM: Faust's consumer thread can die while stopping and
    leave the worker waiting for it; driftline's shutdown timeout ends the process instead."""
    from streams.embedded import start_broker

    model = f"sd-down-{unique}"
    broker = start_broker(log_path=tmp_path / "tansu.log")
    try:
        env = isolated_env(broker.url, redis_url)
        worker = start_worker(env, config=write_config("shutdown_timeout = 10\n" + SMALL_WINDOWS))
        produce(broker.url, topic(env, "predictions"), [list(drift_traffic(300, 100_000, model=model))])
        wait_processed(redis_url, {model: 300}, timeout=60)
        children = descendants(worker.proc.pid)
    finally:
        broker.stop()
    started = time.monotonic()
    code = worker.terminate(timeout=40)
    took = time.monotonic() - started
    print(f"\n[shutdown, broker down] exit {code} in {took:.1f}s")
    assert code in (0, 1) and took < 15, f"exit {code} after {took:.1f}s"
    if code == 1:
        assert "shutdown did not finish in 10 s" in worker.log()
    assert not [p for p in children if alive(p)], "child processes left behind"
