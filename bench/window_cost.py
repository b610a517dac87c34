"""Cost per window of each detector (README's detectors table).

    python -m bench.window_cost [--runs 9] [--window 1000] [--reference 2000]

20 features (10 numeric, 10 categorical with 8 levels) plus a score column;
medians of ``--runs`` calls, in milliseconds, all measured in one process.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from detectors.calibration import calibrate
from detectors.cbpe import CBPE
from detectors.domain_classifier import DomainClassifier
from detectors.profile import ReferenceProfile
from detectors.quality import DataQuality
from detectors.suite import evaluate_window


def columns(rng, n: int) -> dict:
    data = {f"n{i}": rng.normal(size=n).tolist() for i in range(10)}
    data.update({f"c{i}": rng.choice(list("abcdefgh"), size=n).tolist() for i in range(10)})
    data["__score__"] = rng.uniform(size=n).tolist()
    return data


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--reference", type=int, default=2000)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    reference_columns = columns(rng, args.reference)
    reference = ReferenceProfile.from_columns(reference_columns)
    window = columns(rng, args.window)
    cbpe = CBPE().fit(rng.uniform(size=500), rng.uniform(size=500) > 0.5)
    evaluate_window(reference, window)  # warm caches (memoised exact KS p-values), as a running worker has
    rows = [
        ("evaluate_window: KS / chi-squared / missing rate + PSI, Wasserstein, JS",
         median_ms(lambda: evaluate_window(reference, window), args.runs)),
        ("DataQuality.check", median_ms(lambda: DataQuality().check(reference, window), args.runs)),
        ("DomainClassifier(max_rows=500).test", median_ms(lambda: DomainClassifier(max_rows=500).test(reference, window), args.runs)),
        ("CBPE.test", median_ms(lambda: cbpe.test(window["__score__"]), args.runs)),
        ("calibrate(ert=100 windows, 200 bootstraps), once per reference",
         median_ms(lambda: calibrate(reference_columns, args.window, 100), max(3, args.runs // 3))),
    ]
    print(f"window {args.window} vs reference {args.reference}, 20 features + score; median of {args.runs} runs")
    for name, ms in rows:
        print(f"{ms:9.1f} ms  {name}")


if __name__ == "__main__":
    main()
