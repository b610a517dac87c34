"""SIGTERM mid-stream: the worker exits 0 (mode's EX_OK), promptly, alone, and the next one loses nothing."""
from __future__ import annotations

import re
import time

import pytest

from tests.integration.harness import (
    SMALL_WINDOWS,
    PacedProducer,
    Reader,
    alive,
    descendants,
    drift_traffic,
    isolated_env,
    model_statuses,
    processed,
    produce,
    produce_raw,
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


def _worker_counts(redis_url: str, model: str) -> dict:
    (status,) = model_statuses(redis_url, model)
    return status["worker"]


def test_a_graceful_stop_commits_what_it_handled_and_dead_letters_are_sent_once(
        broker_url, redis_url, unique, start_worker, write_config):
    """After SIGTERM the next worker starts where the last one stopped: no internal message
    replayed, no event forwarded twice, no dead letter published again. After kill -9 the
    re-read input re-publishes no dead letter either (its deterministic id was sent before)."""
    model = f"gs-{unique}"
    events = list(drift_traffic(900, shift_at=100_000, model=model))
    env = isolated_env(broker_url, redis_url)
    config = write_config()
    first = start_worker(env, config=config, tag="first")
    bad = [b'{"model": "%s", "not": "a prediction"}' % model.encode() for _ in range(25)] + [b"\xff\xfe"] * 25
    produce_raw(broker_url, topic(env, "predictions"), bad)
    produce(broker_url, topic(env, "predictions"), [events[i:i + 50] for i in range(0, 600, 50)])
    wait_processed(redis_url, {model: 600}, timeout=60)
    assert first.terminate(timeout=30) == 0, first.log()[-3000:]

    second = start_worker(env, config=config, tag="second")
    produce(broker_url, topic(env, "predictions"), [events[i:i + 50] for i in range(600, 750, 50)])
    wait_processed(redis_url, {model: 750}, timeout=60)
    counts = _worker_counts(redis_url, model)
    print(f"\n[graceful stop] the next worker skipped {counts['replayed_skipped']} replayed internal messages and "
          f"{counts['redelivered_skipped']} re-forwarded events; dead letters deduplicated: "
          f"{counts['deadletter_deduplicated']}")
    assert (counts["replayed_skipped"], counts["redelivered_skipped"], counts["deadletter_deduplicated"]) == (0, 0, 0)

    assert second.terminate(timeout=30) == 0
    # A worker that commits rarely, killed after dead-lettering: the next one re-reads that input
    lazy = start_worker(env, config=write_config("commit_interval = 600\n" + SMALL_WINDOWS, "lazy.toml"), tag="lazy")
    produce_raw(broker_url, topic(env, "predictions"), [b"[1, 2]"] * 30)
    produce(broker_url, topic(env, "predictions"), [events[i:i + 50] for i in range(750, 900, 50)])
    wait_processed(redis_url, {model: 900}, timeout=60)
    lazy.kill()                                  # SIGKILL: its input was never committed
    third = start_worker(env, config=config, tag="third")
    expected = len(bad) + 2 * 30                 # two bad elements in each of the 30
    wait_until(lambda: _worker_counts(redis_url, model)["deadletter_deduplicated"] >= 60, timeout=60,
               what="the third worker re-read the input the killed one had not committed")
    reader = Reader(broker_url, topic(env, "deadletter"))
    try:
        letters = reader.drain(idle=3.0)
    finally:
        reader.close()
    ids = [letter["deadletter_id"] for letter in letters]
    print(f"[graceful stop] {expected} bad elements -> {len(letters)} dead letters after SIGTERM, restart, kill -9 "
          f"and restart ({len(set(ids))} distinct ids)")
    assert len(letters) == expected and len(set(ids)) == expected
    assert processed(redis_url, model) == 900
    assert third.proc.poll() is None
