"""segment_drift false alarms on stationary audit traffic, against the ERT design (``calibrate_ert_windows``).

    python -m bench.segment_drift_rate [--seeds 100:200] [--windows 6] [--out bench/results/segment_drift_rate.json]

The traffic is ``tests/audit_traffic.py`` (calibrated credit scores, a ``region`` segment
correlated with the features) with no change, fed in process to a ModelMonitor with the
settings of ``tests/integration/test_audit_labels.py``'s worker (reference 1,000, windows of
500, default ERT 100). Each seed is an independent reference (the first 1,000 predictions) and
``--windows`` windows after it, so the rate is averaged over references as the calibration is:
a fixed reference that happens to sit far from the population alarms more often than the design
for as long as it is kept (``--conditional`` measures that per reference on 400 fresh windows).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from detectors.monitor import OUTPUT_COLUMNS, ModelMonitor
from detectors.segment_drift import SegmentGroup, segment_family
from detectors.settings import ModelSettings
from tests.audit_traffic import labelled_traffic

SETTINGS = dict(reference_size=1000, window_size=500, performance_window=300, window_seconds=36000,
                cbpe_reference_labels=1000)


def _feed(monitor: ModelMonitor, events: list, batch: int = 100) -> list:
    out = []
    for i in range(0, len(events), batch):
        out += monitor.add_predictions(events[i:i + batch])
    return out


def marginal(seeds: range, windows: int) -> dict:
    """Alerts per 100 windows over independent references (one per seed)."""
    settings = ModelSettings().merged(SETTINGS)
    n = settings.reference_size + settings.window_size * windows
    fired, thresholds = [], []
    for seed in seeds:
        events, _ = labelled_traffic(n, n, "confidence", seed=seed)   # change_at = n: stationary
        monitor = ModelMonitor("credit", settings)
        out = _feed(monitor, events)
        thresholds.append(monitor.versions["1"].segment_calibration["threshold"])
        fired += [{"seed": seed, "window": a["window"]["index"], "tests": sorted(a["evidence"])}
                  for kind, a in out if kind == "alert" and a["kind"] == "segment_drift"]
    total = len(seeds) * windows
    return {"references": len(seeds), "windows": total, "alerts": len(fired),
            "alerts_per_100_windows": 100 * len(fired) / total, "design_per_100_windows": 100 / settings.calibrate_ert_windows,
            "windows_0_with_alert": sum(f["window"] == 0 for f in fired), "median_threshold": float(np.median(thresholds)),
            "fired": fired}


def conditional(seed: int, n_windows: int = 400) -> dict:
    """Alarm rate of one fixed reference on fresh stationary windows: the first 1,000 rows of the
    integration test's traffic of that seed (6,000 predictions; seed 5 is the test's)."""
    settings = ModelSettings().merged(SETTINGS)
    events, _ = labelled_traffic(6000, 3000, "confidence", seed=seed)
    monitor = ModelMonitor("credit", settings)
    out = _feed(monitor, events[:settings.reference_size + settings.window_size])
    window_0 = sorted(name for kind, a in out if kind == "alert" and a["kind"] == "segment_drift" for name in a["evidence"])
    version = monitor.versions["1"]
    fresh, _ = labelled_traffic(settings.window_size * n_windows, 10**9, "confidence", seed=10_000 + seed)
    alarms = 0
    for w in range(0, len(fresh), settings.window_size):
        rows = fresh[w:w + settings.window_size]
        columns = {name: [e["features"][name] for e in rows] for name in rows[0]["features"]}
        groups = [SegmentGroup(key, np.array([i for i, e in enumerate(rows) if f"region={e['segment']['region']}" == key],
                                             dtype=np.intp), sub) for key, sub in version.reference.segments.items()]
        _, drifted = segment_family(groups, columns, version.segment_window_settings, skip=frozenset(OUTPUT_COLUMNS))
        alarms += bool(drifted)
    return {"seed": seed, "window_0_alert": window_0, "fresh_windows": n_windows,
            "alarms_per_100_windows": 100 * alarms / n_windows,
            "threshold": version.segment_calibration["threshold"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="100:200")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--conditional", default="5,8,51", help="seeds whose fixed reference is measured alone")
    parser.add_argument("--out", default="bench/results/segment_drift_rate.json")
    args = parser.parse_args()
    start, stop = (int(x) for x in args.seeds.split(":"))
    t0 = time.time()
    result = {"command": "python -m bench.segment_drift_rate " + f"--seeds {args.seeds} --windows {args.windows} "
                         f"--conditional {args.conditional}",
              "marginal": marginal(range(start, stop), args.windows),
              "conditional": [conditional(int(s)) for s in args.conditional.split(",") if s],
              "seconds": round(time.time() - t0, 1)}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result["marginal"].items() if k != "fired"}), result["conditional"])


if __name__ == "__main__":
    main()
