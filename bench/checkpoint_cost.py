"""Checkpoint bytes and the CPU to write and read one (issue 13's format 2 against a baseline ref).

    python -m bench.checkpoint_cost [--baseline-ref main] [--runs 3] [--repeats 20]

For each scenario of bench/_checkpoint_cost_run.py one model's checkpoint is written to a dict
state table as the worker writes it (``StateStore.save_checkpoint``; references stored once,
apart) and read back (``load_checkpoint``), ``--repeats`` times each, timed with
``time.process_time`` (median per call). Each run is its own process; the baseline is ``git
archive <baseline-ref> detectors streams`` unpacked in a temporary directory, and the runs of both
sides alternate, so they share the machine's load.
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
RUNNER = ROOT / "bench" / "_checkpoint_cost_run.py"
SCENARIOS = ("default", "delayed", "outcomes")


def run(core: str, scenario: str, repeats: int) -> dict:
    return run_json(RUNNER, core, scenario, repeats)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-ref", default="main")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "checkpoint_cost.json"))
    args = ap.parse_args(argv)
    head, base = short_rev("HEAD"), short_rev(args.baseline_ref)
    results = {"command": "python -m bench.checkpoint_cost " + " ".join(argv or sys.argv[1:]),
               "baseline": f"{args.baseline_ref} ({base})", "this": head, "runs": args.runs,
               "repeats": args.repeats, "load_before": os.getloadavg(), "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="checkpoint-cost-") as tmp:
        extract_tree(args.baseline_ref, tmp, "detectors", "streams")
        for scenario in SCENARIOS:
            runs = {"baseline": [], "this": []}
            for _ in range(args.runs):
                runs["baseline"].append(run(tmp, scenario, args.repeats))
                runs["this"].append(run(str(ROOT), scenario, args.repeats))
            row = {side: {"checkpoint_kib": rs[0]["checkpoint_bytes"] / 1024,
                          "reference_kib": rs[0]["reference_bytes"] / 1024,
                          "dump_ms_median": statistics.median(r["dump_ms"] for r in rs),
                          "load_ms_median": statistics.median(r["load_ms"] for r in rs),
                          "dump_ms": [round(r["dump_ms"], 3) for r in rs], "load_ms": [round(r["load_ms"], 3) for r in rs]}
                   for side, rs in runs.items()}
            for what in ("checkpoint_kib", "dump_ms_median", "load_ms_median"):
                row[f"{what}_ratio"] = row["this"][what] / row["baseline"][what]
            results["scenarios"][scenario] = row
            print(f"{scenario:>8}: checkpoint {row['baseline']['checkpoint_kib']:7.1f} -> {row['this']['checkpoint_kib']:7.1f} KiB"
                  f"   dump {row['baseline']['dump_ms_median']:6.2f} -> {row['this']['dump_ms_median']:6.2f} ms"
                  f"   load {row['baseline']['load_ms_median']:6.2f} -> {row['this']['load_ms_median']:6.2f} ms", flush=True)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
