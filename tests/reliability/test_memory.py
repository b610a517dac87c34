"""Bounded memory on a long run: the worker's RSS stays flat once it is warm.

The CI run sends 300k predictions (5 models, micro-batches of 500, 1 in 10 labelled,
label TTL 60 s of event time, so unlabelled predictions must expire); ``--long``
(or DRIFTLINE_LONG=1) sends 2M and reports the RSS at 0.5M, 1M and 2M. Traffic goes
in steps of 25k predictions, each processed before the next, so every sample sees the
same backlog: the RSS also holds the consumer's read-ahead buffers, which grow with it.
"""
from __future__ import annotations

import random

import orjson
import pytest

from tests.integration.harness import isolated_env, produce_raw, rss_kib, topic, wait_processed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
[defaults]
reference_size = 1000
window_size = 1000
label_ttl_seconds = 60
"""
MODELS = 5
BATCH = 500
STEP = 5000          # predictions per model per step (25k in all)
START = 1_767_225_600.0


def traffic(models: list[str], lo: int, hi: int):
    """Messages for events lo..hi of every model: a prediction batch, then labels for 1 in 10 of them."""
    for start in range(lo, hi, BATCH):
        for m, model in enumerate(models):
            rnd = random.Random(start * MODELS + m)
            batch = []
            for i in range(start, min(start + BATCH, hi)):
                score = rnd.random()
                batch.append({"prediction_id": f"{model}-{i}", "model": model, "timestamp": START + i,
                              "prediction": int(score > 0.5), "score": score,
                              "features": {"amount": rnd.lognormvariate(3, 1), "age": rnd.gauss(40, 12),
                                           "tenure": rnd.random() * 10,
                                           "region": rnd.choice(("north", "south", "east", "west"))}})
            yield orjson.dumps(batch), None
            yield None, orjson.dumps([{"prediction_id": e["prediction_id"], "model": model,
                                       "label": e["prediction"], "timestamp": e["timestamp"]}
                                      for e in batch[::10]])


@pytest.mark.timeout(1800)   # the --long run (2M predictions) takes ~6 minutes here
def test_worker_memory_is_flat_after_warm_up(broker_url, redis_url, unique, start_worker, write_config, long_run):
    total = 2_000_000 if long_run else 300_000
    marks = [500_000, 1_000_000, 2_000_000] if long_run else [75_000, 150_000, 225_000, 300_000]
    per_model = [mark // MODELS for mark in marks]
    models = [f"mem-{unique}-{m}" for m in range(MODELS)]
    env = isolated_env(broker_url, redis_url)
    worker = start_worker(env, config=write_config(CONFIG))
    rss: dict[int, int] = {}
    for lo in range(0, total // MODELS, STEP):
        hi = min(lo + STEP, total // MODELS)
        messages = list(traffic(models, lo, hi))
        produce_raw(broker_url, topic(env, "predictions"), (p for p, _ in messages if p is not None))
        produce_raw(broker_url, topic(env, "labels"), (l for _, l in messages if l is not None))
        wait_processed(redis_url, {m: hi for m in models}, timeout=60)
        if hi in per_model:
            mark = marks[per_model.index(hi)]
            rss[mark] = rss_kib(worker.proc.pid)
            print(f"\n[memory] {mark:>9,} predictions processed: worker RSS {rss[mark] / 1024:.0f} MiB", end="")
    print()
    assert worker.proc.poll() is None, worker.log()[-3000:]
    half, end = rss[marks[-2] if long_run else marks[1]], rss[marks[-1]]
    assert end <= 1.25 * half, f"RSS grew from {half} KiB to {end} KiB (samples {rss}) over {total:,} predictions"
