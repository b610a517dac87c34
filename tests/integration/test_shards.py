"""A hot model split into monitor shards: each shard a random share of its traffic, labels joined in it."""
from __future__ import annotations

import pytest

from tests.integration.harness import (
    SMALL_WINDOWS,
    all_statuses,
    WorkerProcess,
    drift_traffic,
    isolated_env,
    produce,
    topic,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_a_sharded_model_is_monitored_as_shards_that_share_its_traffic(broker_url, redis_url, tmp_path, unique):
    model, n = f"hot-{unique}", 4000
    config = tmp_path / "driftline.toml"
    config.write_text(f'[shards]\n"{model}" = 4\n' + SMALL_WINDOWS.replace("reference_size = 1000", "reference_size = 400")
                      .replace("window_size = 500", "window_size = 200"))
    env = isolated_env(broker_url, redis_url)
    worker = WorkerProcess(env, tmp_path, config=config)
    try:
        worker.wait_ready()
        events = list(drift_traffic(n, shift_at=10 * n, model=model))
        produce(broker_url, topic(env, "predictions"), [events[i:i + 100] for i in range(0, n, 100)])
        produce(broker_url, topic(env, "labels"), [[{"prediction_id": e["prediction_id"], "model": model,
                                                     "label": e["prediction"]} for e in events[i:i + 100]]
                                                   for i in range(0, n, 100)])

        def shards():
            found = {s["model"]: s["counts"] for s in all_statuses(redis_url) if s["model"].startswith(model)}
            return found if sum(c.get("labelled", 0) for c in found.values()) >= n else None

        counts = wait_until(shards, timeout=60, what=f"{n} labelled predictions over the shards")
    finally:
        worker.terminate()
    assert sorted(counts) == [f"{model}#{i}" for i in range(4)]
    assert sum(c["predictions"] for c in counts.values()) == n
    assert all(c["predictions"] == c["labelled"] for c in counts.values()), counts   # labels met their shard
    assert all(0.15 * n < c["predictions"] < 0.35 * n for c in counts.values()), counts   # a random share each
