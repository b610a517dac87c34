"""One side of bench.checkpoint_cost, run in its own process so the code under test is whichever
``detectors``/``streams`` packages come first on sys.path (this checkout's, or a copy of main's).

    python bench/_checkpoint_cost_run.py CORE_DIR SCENARIO REPEATS   -> one JSON line

Scenarios (the monitor is built before the clock starts):
* ``default``: bench.model_memory's version: default settings, 20 features (10 numeric, 10
  categorical), reference 2,000, a window of 1,000 half open, a label right after each prediction;
* ``delayed``: the same, labels only for the first 1,500 predictions (1,000 wait for theirs);
* ``outcomes``: tests/detectors/fixtures/make_checkpoint_v1.py's monitor: two versions, latency and
  KPIs, 490 predictions waiting for labels, 280 labels that came first, 18 active conditions.
"""
from __future__ import annotations

import gc
import statistics
import sys
import time

import orjson

CORE, SCENARIO, REPEATS = sys.argv[1], sys.argv[2], int(sys.argv[3])
ROOT = __file__.rsplit("/bench/", 1)[0]
sys.path[:0] = [CORE, ROOT]

from bench import common  # noqa: E402
from detectors.monitor import ModelMonitor  # noqa: E402
from detectors.settings import ModelSettings  # noqa: E402
from streams.records import validate_label, validate_prediction  # noqa: E402
from streams.state import REFERENCE_PREFIX, StateStore  # noqa: E402


class Table(dict):
    write_partition = None


def built(scenario: str) -> ModelMonitor:
    if scenario == "outcomes":
        from tests.detectors.checkpoint_stream import OUTCOME_SETTINGS, feed, outcome_stream
        monitor = ModelMonitor("m", ModelSettings(**OUTCOME_SETTINGS), "cfg-1")
        feed(monitor, *outcome_stream(0, 2450, seed=11, shift_from=1800, slow_from=2000))
        return monitor
    n = 2000 + 500
    monitor = ModelMonitor("m", ModelSettings(reference_size=2000, window_size=1000))
    preds, labels = common.predictions(n, model="m", seed=100)
    preds = [validate_prediction(p, p["timestamp"]) for p in preds]
    labels = [validate_label(x, x["timestamp"]) for x in labels]
    labelled = n if scenario == "default" else 1500
    for start in range(0, n, 10):
        monitor.add_predictions(preds[start:start + 10], offset=start, partition=0)
        if start < labelled:
            monitor.add_labels(labels[start:start + 10])
    return monitor


def main() -> None:
    monitor = built(SCENARIO)
    table = Table()
    store = StateStore(table)
    checkpoint = {"monitor": monitor, "outbox": []}
    store.save_checkpoint(b"m", checkpoint, 0)     # the references are stored by the first one
    gc.collect()
    dumps, loads = [], []
    for _ in range(REPEATS):
        start = time.process_time()
        saved = store.save_checkpoint(b"m", checkpoint, 0)
        size = saved if isinstance(saved, int) else saved.size     # an int before checkpoints were blocks
        dumps.append(time.process_time() - start)
        start = time.process_time()
        restored = store.load_checkpoint(b"m")
        loads.append(time.process_time() - start)
    assert restored["monitor"].status()["versions"].keys() == monitor.status()["versions"].keys()
    references = sum(len(v) for k, v in table.items() if k.startswith(REFERENCE_PREFIX))
    print(orjson.dumps({"checkpoint_bytes": size, "reference_bytes": references,
                        "dump_ms": statistics.median(dumps) * 1e3, "load_ms": statistics.median(loads) * 1e3}).decode())


if __name__ == "__main__":
    main()
