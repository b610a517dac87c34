"""Every benchmark of issue 5, one after the other (``make bench``).

    python -m bench.run_all [--quick]

Results land in ``bench/results/*.json``; BENCHMARKS.md quotes them. The peer
comparison needs its own venv (Evidently and NannyML are not driftline
dependencies): it runs with ``$BENCH_PEERS_PYTHON`` (default
/tmp/benchpeers/bin/python) and is skipped, saying so, when that is missing.
``--quick`` shrinks every size for a smoke run (numbers not comparable).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench import common


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    q = args.quick
    steps = [
        ("throughput", ["--runs", "1", "--single", "5000", "--batched", "50000"] if q
         else ["--runs", "3", "--single", "20000", "--batched", "200000", "--check-defaults", "--profile"]),
        ("peers", ["--windows", "5", "--evidently-windows", "2", "--nannyml-windows", "5"] if q
         else ["--windows", "100", "--evidently-windows", "20", "--nannyml-windows", "100", "--profile"]),
        ("latency", ["--windows", "5"] if q else ["--windows", "25"]),
        ("memory", ["--events", "500000"] if q else ["--events", "2000000"]),
        ("quality", ["--pre", "20000", "--post", "10000"] if q else ["--pre", "100000", "--post", "50000"]),
        ("scaleout", ["--events", "20000"] if q else ["--events", "100000"]),
    ]
    peers_python = os.environ.get("BENCH_PEERS_PYTHON", "/tmp/benchpeers/bin/python")
    failed = []
    for name, extra in steps:
        python = sys.executable
        if name == "peers":
            if not os.path.exists(peers_python):
                print(f"== peers: skipped, no {peers_python} (see bench/peers.py for the venv)")
                continue
            python = peers_python
        print(f"== {name}: {python} -m bench.{name} {' '.join(extra)}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([python, "-m", f"bench.{name}", *extra], cwd=common.ROOT,
                             env={**os.environ, "PYTHONPATH": str(common.ROOT)})
        print(f"== {name}: exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
