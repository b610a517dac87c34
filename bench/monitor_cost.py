"""CPU per prediction with its label inside the monitor alone (issue 13): today's core vs this one.

    python -m bench.monitor_cost [--baseline-ref main] [--n 10000] [--runs 3]

Full default monitoring (``ModelSettings()``), 20 features (10 numeric, correlated; 10
categorical, 8 levels), a score, a segment; every prediction gets its label, the batch's
labels right after its predictions. After a warm-up (reference of 2,000 + calibration, the
CBPE fit on 5,000 labels, two windows) ``--n`` predictions and their labels are timed
(``time.process_time``), at batches of 1,000 and of 1. Each run is its own process
(bench/_monitor_cost_run.py); the baseline core is ``git archive <baseline-ref> detectors``
unpacked in a temporary directory (nothing of it is committed), and the runs of both cores
alternate, so they share the machine's load. Inputs are each core's own: validated dicts for
today's ``add_predictions``/``add_labels``, ``PredictionColumns``/``LabelColumns`` for
``add_columns``/``add_label_columns`` (built before the clock starts: the ingest stage builds them).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile

from bench.common import extract_tree, run_json, short_rev, write_results

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNNER = ROOT / "bench" / "_monitor_cost_run.py"


def run(core: str, batch: int, n: int, seed: int) -> dict:
    return run_json(RUNNER, core, batch, n, seed)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-ref", default="main")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batches", default="1000,1")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "monitor_cost.json"))
    args = ap.parse_args(argv)
    head, base = short_rev("HEAD"), short_rev(args.baseline_ref)
    results = {"command": "python -m bench.monitor_cost " + " ".join(argv or sys.argv[1:]),
               "baseline": f"{args.baseline_ref} ({base})", "this": head, "n": args.n, "runs": args.runs,
               "load_before": os.getloadavg(), "batches": {}}
    with tempfile.TemporaryDirectory(prefix="monitor-cost-") as tmp:
        extract_tree(args.baseline_ref, tmp, "detectors")
        for batch in map(int, args.batches.split(",")):
            runs = {"today": [], "columnar": []}
            for seed in range(args.runs):
                runs["today"].append(run(tmp, batch, args.n, seed))
                runs["columnar"].append(run(str(ROOT), batch, args.n, seed))
            row = {side: {"cpu_us_median": statistics.median(r["cpu_us"] for r in rs),
                          "cpu_us": [round(r["cpu_us"], 2) for r in rs],
                          "windows": rs[0]["windows"], "emitted": [r["emitted"] for r in rs]}
                   for side, rs in runs.items()}
            row["ratio_today_over_columnar"] = row["today"]["cpu_us_median"] / row["columnar"]["cpu_us_median"]
            results["batches"][str(batch)] = row
            print(f"batch {batch:>5}: today {row['today']['cpu_us_median']:6.1f} µs   columnar "
                  f"{row['columnar']['cpu_us_median']:6.1f} µs   ({row['ratio_today_over_columnar']:.2f}x)", flush=True)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
