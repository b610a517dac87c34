"""One side of bench.monitor_cost, run in its own process so the core under test is whichever
``detectors`` package comes first on sys.path (this checkout's, or a saved copy of main's).

    python bench/_monitor_cost_run.py CORE_DIR BATCH N_MEASURED SEED   -> one JSON line

CORE_DIR is put first on sys.path before ``detectors`` is imported.
"""
from __future__ import annotations

import gc
import sys
import time

import numpy as np
import orjson

N_NUMERIC, N_CATEGORICAL = 10, 10


def traffic(rng, start: int, n: int):
    """Predictions with 20 features (10 numeric, correlated; 10 categorical, 8 levels), a score,
    a segment; a label for each."""
    base = rng.normal(size=n)
    numeric = base[:, None] * 0.5 + rng.normal(size=(n, N_NUMERIC))
    levels = np.array(list("abcdefgh"))
    categorical = levels[rng.integers(0, 8, size=(n, N_CATEGORICAL))]
    scores = 1 / (1 + np.exp(-base))
    regions = np.array(["eu", "us", "apac"])[rng.integers(0, 3, size=n)]
    truth = rng.random(n) < scores
    predictions, labels = [], []
    for i in range(n):
        features = {f"n{j}": float(numeric[i, j]) for j in range(N_NUMERIC)}
        features.update({f"c{j}": str(categorical[i, j]) for j in range(N_CATEGORICAL)})
        pid = f"p{start + i}"
        ts = 1_000_000.0 + (start + i) * 0.01
        predictions.append({"prediction_id": pid, "model": "m", "model_version": "1", "timestamp": ts,
                            "features": features, "prediction": bool(scores[i] >= 0.5),
                            "score": float(scores[i]), "segment": {"region": str(regions[i])}, "latency_ms": None})
        labels.append({"prediction_id": pid, "model": "m", "label": bool(truth[i]), "timestamp": ts + 1})
    return predictions, labels


def batches(predictions, labels, size: int, columnar: bool):
    out = []
    for k in range(0, len(predictions), size):
        p, l = predictions[k:k + size], labels[k:k + size]
        if columnar:
            from detectors.columns import LabelColumns, PredictionColumns
            p, l = PredictionColumns.from_events(p, sources=[(0, len(p))]), LabelColumns.from_events(l)
        out.append((k // size, p, l))
    return out


def main() -> None:
    core, size, measured, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sys.path.insert(0, core)
    from detectors.monitor import ModelMonitor
    from detectors.settings import ModelSettings

    assert ModelMonitor.__module__ and sys.modules["detectors"].__path__[0].startswith(core), "wrong core imported"
    rng = np.random.default_rng(seed)
    monitor = ModelMonitor("m", ModelSettings())   # full default monitoring
    columnar = hasattr(monitor, "add_columns")
    warm = 2000 + 5000 + 2000   # reference (+ calibration), CBPE fit on 5,000 labels, then windows
    feed = (lambda p, o: monitor.add_columns(p, offset=o, partition=0)) if columnar else \
        (lambda p, o: monitor.add_predictions(p, offset=o, partition=0, sources=[(0, len(p))]))
    label = monitor.add_label_columns if columnar else monitor.add_labels
    for offset, p, l in batches(*traffic(rng, 0, warm), 1000, columnar):
        feed(p, offset)
        label(l)
    work = batches(*traffic(rng, warm, measured), size, columnar)
    emitted = 0
    gc.collect()
    profile = None
    if len(sys.argv) > 5:   # a profile of the measured part, to that file (pstats)
        import cProfile
        profile = cProfile.Profile()
        profile.enable()
    cpu, wall = time.process_time(), time.perf_counter()
    for offset, p, l in work:
        emitted += len(feed(p, offset))
        emitted += len(label(l))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profile is not None:
        profile.disable()
        profile.dump_stats(sys.argv[5])
    version = monitor.versions["1"]
    print(orjson.dumps({"columnar": columnar, "batch": size, "n": measured, "cpu_us": cpu / measured * 1e6,
                        "wall_us": wall / measured * 1e6, "emitted": emitted,
                        "windows": version.counts["windows"], "labelled": version.counts["labelled"]}).decode())


if __name__ == "__main__":
    main()
