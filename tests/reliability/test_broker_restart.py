"""The broker restarts. Tansu keeps everything in memory, so topics, data and group offsets are gone:
what must hold is that the worker reconnects by itself and monitors what is published afterwards.

One restart (a module fixture) serves both tests.
"""
from __future__ import annotations

import time
import uuid

import pytest

from streams.embedded import free_port, start_broker
from tests.integration.harness import (
    WorkerProcess,
    drift_traffic,
    isolated_env,
    processed,
    produce,
    topic,
    wait_processed,
    wait_until,
)
from tests.integration.harness import SMALL_WINDOWS

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              # kafka-python's protocol schemas use importlib.resources' legacy API
              pytest.mark.filterwarnings("ignore:read_text is deprecated", "ignore:open_text is deprecated")]


@pytest.fixture(scope="module")
def restart(redis_url, tmp_path_factory):
    from streams.topics import ensure_topics   # imported here, where the filter above applies

    tmp = tmp_path_factory.mktemp("broker-restart")
    (tmp / "driftline.toml").write_text(SMALL_WINDOWS)
    unique = uuid.uuid4().hex[:8]
    known, new = f"br-{unique}-known", f"br-{unique}-new"
    known_events = list(drift_traffic(600, 10_000, model=known))
    port = free_port()
    broker = start_broker(port, log_path=tmp / "tansu-1.log")
    worker = None
    try:
        env = isolated_env(broker.url, redis_url)
        app_id = env["DRIFTLINE_APP_ID"]
        worker = WorkerProcess(env, tmp, config=tmp / "driftline.toml")
        worker.wait_ready()
        produce(broker.url, topic(env, "predictions"), [known_events[:300]])
        wait_processed(redis_url, {known: 300}, timeout=60)

        broker.stop()
        broker = start_broker(port, log_path=tmp / "tansu-2.log")
        restarted = time.monotonic()
        # memory-only: recreate what the worker created at start-up (public, internal, changelog, assignor)
        ensure_topics(broker.url, [topic(env, t) for t in ("predictions", "labels", "alerts", "retrain", "deadletter")]
                      + [f"{app_id}-monitor-events", f"{app_id}-monitor-state-changelog"], partitions=4)
        ensure_topics(broker.url, [f"{app_id}-__assignor-__leader"], partitions=1)
        produce(broker.url, topic(env, "predictions"), [list(drift_traffic(300, 10_000, model=new))])
        produce(broker.url, topic(env, "predictions"), [known_events[300:]])
        result = {"new": wait_processed(redis_url, {new: 300}, timeout=90)[new],
                  "took": time.monotonic() - restarted}
        try:
            wait_until(lambda: processed(redis_url, known) >= 600, timeout=8)
        except TimeoutError:
            pass
        result["known"] = processed(redis_url, known)
        result["alive"] = worker.proc.poll() is None
        stopping = time.monotonic()
        result["exit"] = worker.terminate()
        result["stop_seconds"] = time.monotonic() - stopping
        print(f"\n[broker restart] worker alive: {result['alive']}; a new model's 300 events processed "
              f"{result['took']:.1f}s after the restart; a model known before it: {result['known']} of 600; "
              f"SIGTERM afterwards: exit {result['exit']} in {result['stop_seconds']:.1f}s")
        result["log"] = worker.log()
        yield result
    finally:
        if worker is not None and worker.proc.poll() is None:
            worker.terminate()
        broker.stop()


def test_worker_reconnects_and_monitors_new_traffic(restart):
    assert restart["alive"], restart["log"][-3000:]
    assert restart["new"] == 300
    assert restart["exit"] == 0 and restart["stop_seconds"] < 15


# Not strict: whether new offsets overtake the stale ones before the check depends on timing (it passed once).
@pytest.mark.xfail(strict=False, reason=(
    "a memory-only broker restarts every offset at 0: the checkpoint's applied offsets (internal topic) and "
    "source positions are from the lost broker, so a model monitored before the restart skips new events as "
    "replays until the new offsets pass the old ones"))
def test_models_known_before_the_restart_keep_counting(restart):
    assert restart["known"] == 600
