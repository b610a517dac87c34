"""Valid but heavy input: big micro-batches and a wide model must not crash the worker or lose events.

Every message here is under the 1 MB input limit, yet one model's share of an ingest
batch (up to ``ingest_batch`` messages) or one model's state record (a 600-feature
reference is ~15 MB) can pass the producer's 8 MiB request size. Either used to crash
an agent (losing its batch) or the whole worker, again after every restart.
"""
from __future__ import annotations

import re

import orjson
import pytest

from tests.integration.harness import isolated_env, produce_raw, topic, wait_processed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = 1_767_225_600.0
NOTE = "n" * 4000        # one long category: 4 kB per event at little cost to the statistics


def events(model: str, n: int, features: int, start: int = 0, note: bool = False) -> list[dict]:
    out = []
    for i in range(start, start + n):
        values = {f"f{k}": ((i * 7919 + k * 104729) % 1000) / 10 for k in range(features)}
        if note:
            values["note"] = NOTE
        out.append({"prediction_id": f"{model}-{i}", "model": model, "timestamp": START + i,
                    "prediction": i % 2, "score": (i % 100) / 100, "features": values})
    return out


def test_big_micro_batches_and_a_wide_model_survive_a_crash(broker_url, redis_url, unique, start_worker):
    batched, wide = f"hv-{unique}-batched", f"hv-{unique}-wide"
    env = isolated_env(broker_url, redis_url)
    first = start_worker(env, tag="first")    # default settings: reference of 2000, windows of 1000
    # 20 messages of ~950 kB: one ingest batch holds ~19 MB for one model
    big = [orjson.dumps(events(batched, 230, 3, start=230 * m, note=True)) for m in range(20)]
    assert all(900_000 < len(b) < 1_000_000 for b in big), [len(b) for b in big]
    # 600 features: the reference buffer pickles to ~10 MB, the reference profile to ~15 MB
    wide_events = events(wide, 2200, 600)
    wide_messages = [orjson.dumps(wide_events[i:i + 100]) for i in range(0, 2100, 100)]
    produce_raw(broker_url, topic(env, "predictions"), big + wide_messages)
    counts = wait_processed(redis_url, {batched: 4600, wide: 2100}, timeout=120, settle=3.0)
    log = first.log()
    assert first.proc.poll() is None, log[-3000:]
    assert counts == {batched: 4600, wide: 2100}
    assert not re.search(r"Crashed|MessageSizeTooLarge|Traceback", log), log[-3000:]

    # the wide model's state, written in parts, must come back after a crash
    first.kill()
    second = start_worker(env, tag="second")
    produce_raw(broker_url, topic(env, "predictions"), [orjson.dumps(wide_events[2100:])])
    after = wait_processed(redis_url, {wide: 2200}, timeout=90, settle=2.0)
    print(f"\n[heavy] 20 x ~{len(big[0]) // 1000} kB micro-batches and a 600-feature model: processed {counts}; "
          f"after kill -9 and a restart the wide model holds {after[wide]} of 2200")
    assert second.proc.poll() is None, second.log()[-3000:]
    assert "restored " + wide in second.log()
    assert after == {wide: 2200}
