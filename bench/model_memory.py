"""Issue 16: one model version's memory in process, load-independent, part by part.

    python -m bench.model_memory [--models 10] [--reference 2000] [--window 1000] [--labels]
    python bench/model_memory.py ...      # with PYTHONPATH=<another checkout>: its code, side by side

``--models`` versions (20 features: 10 numeric, 10 categorical, a score) are each fed their
reference and half a window (an open window) in 10-event messages, with a label for every
prediction (``--no-labels``: none). Reported per version: the Python heap the live monitors
hold (tracemalloc, after a warm-up version and ``gc.collect()``), and the bytes the state table
keeps for it (its checkpoint and its reference, as the worker writes them); the top allocation
sites of the live heap. ``bench.models`` measures the worker's RSS, which also holds the
consumer's prefetched messages and the allocator's high-water mark, and moves with the load.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):     # run as a file: the checkout on PYTHONPATH provides the code
    sys.path[0] = str(Path.cwd())

from bench import common  # noqa: E402
from detectors.monitor import ModelMonitor  # noqa: E402
from detectors.settings import ModelSettings  # noqa: E402
from streams.records import validate_label, validate_prediction  # noqa: E402
from streams.state import REFERENCE_PREFIX, StateStore  # noqa: E402


class _Table(dict):
    write_partition = None


def feed(index: int, reference: int, window: int, labels: bool) -> ModelMonitor:
    monitor = ModelMonitor(f"m{index}", ModelSettings(reference_size=reference, window_size=window))
    n = reference + window // 2
    preds, labs = common.predictions(n, model=f"m{index}", seed=100 + index)
    preds = [validate_prediction(p, p["timestamp"]) for p in preds]
    labs = [validate_label(x, x["timestamp"]) for x in labs]
    for start in range(0, n, 10):
        monitor.add_predictions(preds[start:start + 10], offset=start, partition=0)
        if labels:
            monitor.add_labels(labs[start:start + 10])
    return monitor


def measure(models: int, reference: int, window: int, labels: bool) -> dict:
    feed(models + 1, reference, window, labels)      # imports, caches
    gc.collect()
    tracemalloc.start(12)
    before = tracemalloc.take_snapshot()
    monitors = [feed(i, reference, window, labels) for i in range(models)]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    diff = after.compare_to(before, "traceback")
    live = sum(s.size_diff for s in diff)
    sites: dict[str, int] = {}
    for stat in diff:
        frames = [f for f in stat.traceback if "/detectors/" in f.filename]
        frame = frames[-1] if frames else stat.traceback[-1]
        key = f"{Path(frame.filename).name}:{frame.lineno}"
        sites[key] = sites.get(key, 0) + stat.size_diff
    table = _Table()
    store = StateStore(table)
    for i, monitor in enumerate(monitors):
        store.save_checkpoint(f"m{i}".encode(), {"monitor": monitor, "outbox": []}, 0)
    references = sum(len(v) for k, v in table.items() if k.startswith(REFERENCE_PREFIX))
    checkpoints = sum(len(v) for k, v in table.items() if not k.startswith(REFERENCE_PREFIX))
    kib = 1024
    return {
        "models": models, "reference": reference, "window": window, "labels": labels,
        "open_window_rows": window // 2,
        "live_heap_kib_per_model": round(live / models / kib, 1),
        "checkpoint_kib_per_model": round(checkpoints / models / kib, 1),
        "reference_kib_per_model": round(references / models / kib, 1),
        "total_kib_per_model": round((live + checkpoints + references) / models / kib, 1),
        "top_sites_kib_per_model": {k: round(v / models / kib, 1)
                                    for k, v in sorted(sites.items(), key=lambda kv: -kv[1])[:12]},
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--reference", type=int, default=2000)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--no-labels", action="store_true")
    ap.add_argument("--name", default="model_memory", help="results file name (bench/results/<name>.json)")
    args = ap.parse_args(argv)
    result = measure(args.models, args.reference, args.window, not args.no_labels)
    print(result)
    common.save(args.name, {"command": "python -m bench.model_memory " + " ".join(argv or sys.argv[1:]),
                            "result": result})
    return result


if __name__ == "__main__":
    main()
