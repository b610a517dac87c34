"""Where the monitor's time goes, without a profiler's per-call overhead (issue 13).

    python -m bench.monitor_sections [--core DIR] [--batch 1000] [--n 20000] [--seed 1]

Runs bench/_monitor_cost_run.py's workload in this process (the core is ``DIR``'s ``detectors``,
default this checkout) with a CPU-time clock (``time.process_time``) around a few coarse
sections: the window close and, inside it, each check; the label join. cProfile charges every
Python call its own overhead and so overstates call-heavy code several times over (a
per-label loop looked like a quarter of the monitor under it and was a tenth); these wrappers
run a few times per window. Prints ms of CPU per closed window (all windows of the run, warm-up included; labels: all of
the run's labels over the same windows) and
what one prediction with its label cost in all.
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--core", default=str(ROOT))
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    sys.path.insert(0, args.core)
    sys.path.insert(0, str(ROOT / "bench"))
    import detectors.cbpe as cbpe
    import detectors.domain_classifier as domain
    import detectors.monitor as monitor
    import detectors.quality as quality
    import detectors.window_tests as window_tests

    spent: collections.Counter = collections.Counter()
    order: list[str] = []

    def clocked(owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        order.append(label)

        def timed(*a, **k):
            started = time.process_time()
            try:
                return original(*a, **k)
            finally:
                spent[label] += time.process_time() - started
        setattr(owner, name, timed)

    for owner, name, label in (
            (monitor.VersionMonitor, "close_window", "window close (all of it)"),
            (window_tests, "evaluate_window", "- evaluate_window (20 features + 2 outputs)"),
            (window_tests.WindowTests, "segment_drift", "- segment drift"),
            (domain.DomainClassifier, "test", "- domain classifier"),
            (quality.DataQuality, "check", "- data quality"),
            (monitor.VersionMonitor, "_converted", "- window columns converted"),
            (cbpe.CBPE, "test", "- CBPE"),
            (monitor.VersionMonitor, "_window_summary", "- window summary"),
            (monitor.ModelMonitor, "add_label_columns", "labels (join, metrics, concept detector)")):
        clocked(owner, name, label)
    import _monitor_cost_run as run
    sys.argv = ["_monitor_cost_run.py", args.core, str(args.batch), str(args.n), str(args.seed)]
    run.main()   # prints its own JSON line (cpu_us: the timed part, per prediction with its label)
    closed = 7 + args.n // 1000   # windows of 1,000 closed: 9,000 warm-up events less the 2,000-row reference, then n
    for label in order:
        print(f"{label:45s} {spent[label] / closed * 1e3:6.2f} ms per window")


if __name__ == "__main__":
    main()
