"""Changelog bytes of a model's checkpoints against its input, at the cadence a worker checkpoints it.

    python -m bench.checkpoint_changelog [--baseline-ref main] [--out bench/results/checkpoint_changelog.json]

Issue 16, item 1. A worker checkpoints a changed model at the latest every
``checkpoint_max_seconds`` (30 s): a model at 2 predictions/s is checkpointed every 60 predictions,
at 10/s every 300. For each scenario one model version folds its predictions and labels in process
(bench/_checkpoint_changelog_run.py) and is checkpointed at that cadence; the bytes its checkpoints
write to the state table (what the changelog receives, references apart: they are written once) are
set against the bytes of its input messages. This checkout and ``--baseline-ref`` (``git archive``
of its ``detectors`` and ``streams``) run the same scenarios one after the other. Load-independent
but for the CPU column. ``bench.models`` measures the same end to end, through the worker and the broker.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

from bench.common import extract_tree, run_json, short_rev, write_results

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNNER = ROOT / "bench" / "_checkpoint_changelog_run.py"
# name: (reference, window, predictions, predictions between checkpoints)
SCENARIOS = {"ref400_win100_2_per_s": (400, 100, 3000, 60),
             "defaults_2_per_s": (2000, 1000, 4000, 60),
             "defaults_10_per_s": (2000, 1000, 6000, 300)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-ref", default="main")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "checkpoint_changelog.json"))
    args = ap.parse_args(argv)
    results = {"command": "python -m bench.checkpoint_changelog " + " ".join(argv or sys.argv[1:]),
               "baseline": f"{args.baseline_ref} ({short_rev(args.baseline_ref)})", "this": short_rev("HEAD"),
               "load_before": os.getloadavg(), "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="checkpoint-changelog-") as tmp:
        extract_tree(args.baseline_ref, tmp, "detectors", "streams")
        for name, sizes in SCENARIOS.items():
            row = {side: run_json(RUNNER, core, *sizes) for side, core in (("baseline", tmp), ("this", str(ROOT)))}
            for side in row.values():
                side["written_over_input"] = round(side["written_bytes"] / side["input_bytes"], 3)
            row["written_ratio"] = round(row["this"]["written_bytes"] / row["baseline"]["written_bytes"], 3)
            results["scenarios"][name] = row
            b, t = row["baseline"], row["this"]
            print(f"{name:>22}: changelog/input {b['written_over_input']:.3f} -> {t['written_over_input']:.3f}"
                  f"   held {b['held_bytes'] / 1024:6.1f} -> {t['held_bytes'] / 1024:6.1f} KiB"
                  f"   CPU/checkpoint {b['cpu_ms_per_checkpoint']:5.2f} -> {t['cpu_ms_per_checkpoint']:5.2f} ms"
                  f"   restores {b['restores_same']}/{t['restores_same']}")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
