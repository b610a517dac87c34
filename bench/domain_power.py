"""The domain classifier alone: false alarms, power and the features it names, two cores side by side.

    python -m bench.domain_power [--windows 200] [--main-core DIR]

Each core (this checkout's ``detectors`` and, if given, a saved copy of main's, e.g.
``git archive main | tar -x -C DIR``) runs in its own process (``bench/_domain_power_run.py``)
on the same seeded windows: a reference of 2,000 rows with 20 features (10 numeric, correlated
through a shared factor; 10 categorical with 8 levels, two of them tied to that factor; 2 % missing
values) and windows of 1,000 rows, the monitor's default classifier settings
(``ModelSettings().multivariate``: ``max_rows`` 500, ``alpha`` 0.001, seed 42, as every window
uses). Scenarios: stationary (false alarms), and shifts of one numeric feature (``f3``) by
0.2/0.3/0.5 (its std is 1), of one categorical feature's mix (``c1``, tied to the factor;
``c5``, independent), and of ``f3`` and ``c1`` together. Power is the
share of windows that fire; the rate at alpha 0.001 and, to compare at the same false-alarm rate,
at the 5 % quantile of each core's own stationary p-values. "named" is the share of firing windows
whose two top features are the shifted ones (both-shift scenario) or whose top feature is.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench import common

HERE = os.path.dirname(os.path.abspath(__file__))


def run_core(core: str, windows: int) -> dict:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.join(HERE, "_domain_power_run.py"), core, str(windows)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - started
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--main-core", default=None)
    args = parser.parse_args(argv)
    cores = {"this": os.path.dirname(HERE)}
    if args.main_core:
        cores = {"main": args.main_core, **cores}
    load_before = os.getloadavg()[0]
    results = {name: run_core(core, args.windows) for name, core in cores.items()}
    report = {"command": "python -m bench.domain_power " + " ".join(argv if argv is not None else sys.argv[1:]),
              "windows": args.windows, "load_before": load_before, "load_after": os.getloadavg()[0],
              "cores": results}
    print(json.dumps(results, indent=2))
    common.save("domain_power", report)
    return report


if __name__ == "__main__":
    main()
