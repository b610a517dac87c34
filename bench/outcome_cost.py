"""What serving latency and business KPIs (issue 15) cost the monitor, in process, side by side.

The same 20-feature traffic (bench.common.predictions) is validated (streams.records) and folded
into a ModelMonitor twice per run, alternating: once plain, once with ``latency_ms`` on every
prediction, a ``cost`` KPI on every prediction and a ``revenue`` KPI on every label, with
``latency_slo_ms = {p99 = 250}`` and ``kpis = {revenue = "higher", cost = "lower"}``. Reported:
events (predictions + labels) per second of each, the median of ``--runs``, and their ratio.
No broker: this is the monitor's own cost (validation included), the part issue 15 changes.

    python -m bench.outcome_cost --events 30000 --runs 5
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.common import median, predictions, save
from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings
from streams.records import validate_label, validate_prediction

BASE = dict(reference_size=2000, window_size=1000, window_seconds=1e9, performance_window=500)


def traffic(n: int, outcomes: bool):
    preds, labels = predictions(n, seed=3)
    rng = np.random.default_rng(4)
    if outcomes:
        latency = rng.gamma(9.0, 5.0, size=n).round(3).tolist()
        revenue = rng.gamma(4.0, 2.5, size=n).round(4).tolist()
        for i, (p, label) in enumerate(zip(preds, labels)):
            p["latency_ms"] = latency[i]
            p["kpis"] = {"cost": latency[i] / 1000}
            label["kpis"] = {"revenue": revenue[i]}
    return preds, labels


def one_run(preds, labels, settings: ModelSettings, batch: int = 100) -> float:
    monitor = ModelMonitor("bench", settings)
    started = time.perf_counter()
    for i in range(0, len(preds), batch):
        monitor.add_predictions([validate_prediction(p, 0.0) for p in preds[i:i + batch]])
        monitor.add_labels([validate_label(label, 0.0) for label in labels[i:i + batch]])
    elapsed = time.perf_counter() - started
    return 2 * len(preds) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    plain = ModelSettings().merged(BASE)
    with_outcomes = ModelSettings().merged({**BASE, "latency_slo_ms": {"p99": 250.0},
                                            "kpis": {"revenue": "higher", "cost": "lower"}})
    data = {False: traffic(args.events, False), True: traffic(args.events, True)}
    rates = {"plain": [], "latency_and_kpis": []}
    for _ in range(args.runs):
        rates["plain"].append(one_run(*data[False], plain))
        rates["latency_and_kpis"].append(one_run(*data[True], with_outcomes))
    medians = {k: median(v) for k, v in rates.items()}
    ratio = medians["latency_and_kpis"] / medians["plain"]
    # each run's pair ran back to back: the median of their ratios is less moved by the load of the moment
    pair_ratio = median([b / a for a, b in zip(rates["plain"], rates["latency_and_kpis"])])
    print(f"median of the per-run ratios: {pair_ratio:.3f}")
    print(f"events/s, median of {args.runs}: plain {medians['plain']:,.0f}, "
          f"with latency and KPIs {medians['latency_and_kpis']:,.0f} (ratio {ratio:.3f})")
    save("outcome_cost", {"command": f"python -m bench.outcome_cost --events {args.events} --runs {args.runs}",
                          "events_per_second": rates, "medians": medians, "ratio": ratio,
                          "median_pair_ratio": pair_ratio, "load_average_1m": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
