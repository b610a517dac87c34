"""Cost of one /metrics scrape with many models (README, "Operating driftline").

    python -m bench.metrics_scrape [--models 50] [--features 20] [--runs 21] [--feature-gauges]

Builds real monitors (each with a reference, tested windows and labels), then renders the
exposition the worker serves (the per-feature gauges only with --feature-gauges), and
parses it back.
Prints the median milliseconds of ``--runs`` renders, and the exposition's size and series.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from types import SimpleNamespace

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings
from sinks import SinkRouter
from streams.config import Settings


def monitor(name: str, features: int, rng) -> ModelMonitor:
    settings = ModelSettings().merged({"reference_size": 500, "window_size": 250, "calibrate_ert_windows": 0,
                                       "performance_window": 100, "multivariate": {"enabled": False},
                                       "window_seconds": 1e9})
    mon = ModelMonitor(name, settings)
    for start in range(0, 1500, 250):
        x = rng.normal(size=(250, features))
        events = [{"prediction_id": f"{name}-{start + i}", "model": name, "model_version": "1",
                   "timestamp": float(start + i), "features": {f"f{j}": float(x[i, j]) for j in range(features)},
                   "prediction": bool(x[i, 0] > 0), "score": float(1 / (1 + np.exp(-x[i, 0]))), "segment": None,
                   "latency_ms": None} for i in range(250)]
        mon.add_predictions(events)
        mon.add_labels([{"prediction_id": e["prediction_id"], "model": name, "label": e["prediction"],
                         "timestamp": e["timestamp"] + 1} for e in events])
    mon.window_summaries()
    return mon


def main(argv=None) -> None:
    from streams.metrics import Metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--feature-gauges", action="store_true", help="Turn on the opt-in per-feature gauges.")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    monitors = [monitor(f"model-{i}", args.features, rng) for i in range(args.models)]
    worker = SimpleNamespace(monitors={m.model: (0, m) for m in monitors}, counts={}, router=SinkRouter())
    settings = dataclasses.replace(Settings(), metrics_feature_gauges=args.feature_gauges,
                                   metrics_max_feature_series=args.models * (args.features + 2))
    metrics = Metrics(worker, settings)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        text = metrics.exposition()
        times.append(time.perf_counter() - start)
    series = sum(len(f.samples) for f in text_string_to_metric_families(text.decode()))
    print(f"{args.models} models x {args.features} features, per-feature gauges "
          f"{'on' if args.feature_gauges else 'off'}: /metrics rendered in "
          f"{statistics.median(times) * 1000:.1f} ms (median of {args.runs}), {len(text) / 1024:.0f} KiB, "
          f"{series} samples")


if __name__ == "__main__":
    main()
