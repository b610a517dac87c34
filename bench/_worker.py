"""``driftline worker`` exactly as ``streams.cli worker`` runs it, plus a read-only probe.

The probe is one extra Faust task that samples the worker's own counters
(``DriftlineApp.worker.counts``, streams.app) every 5 ms and writes them, with wall-clock
times, to ``$BENCH_PROBE``: first/last time a prediction was processed, and the
counts. With ``BENCH_PROFILE=path`` it also runs cProfile from the first
processed prediction (or from ``BENCH_PROFILE_FROM`` predictions: after the references are
built, the steady state) until ``BENCH_PROFILE_UNTIL`` predictions were processed.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time


def main() -> None:
    from streams import config

    settings = config.use(config.load())
    from streams import preflight

    preflight.data_dir(settings.data_dir)      # as `driftline worker` does: Faust does not create parents
    from streams.topics import ensure_topics

    t = settings.topics
    ensure_topics(settings.broker, [t.predictions, t.labels, t.alerts, t.retrain, t.deadletter],
                  settings.partitions, settings.replication_factor)
    from faust import Worker

    from streams.app import build_app

    driftline = build_app(settings)
    app, worker = driftline.app, driftline.worker

    probe_path = os.environ["BENCH_PROBE"]
    profile_path = os.environ.get("BENCH_PROFILE")
    profile_from = int(os.environ.get("BENCH_PROFILE_FROM", "1"))
    profile_until = int(os.environ.get("BENCH_PROFILE_UNTIL", "0"))

    def write(state: dict) -> None:
        tmp = probe_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, probe_path)

    @app.task
    async def bench_probe() -> None:
        state = {"pid": os.getpid(), "first": None, "last_change": None, "counts": {}}
        profiler = None
        profiling_started = False
        seen = (0, 0)
        last_write = 0.0
        while True:
            counts = worker.counts
            now = time.time()
            current = (counts["predictions"], counts["labels"])
            if current != seen:
                if state["first"] is None and counts["predictions"]:
                    state["first"] = now
                if profile_path and not profiling_started and counts["predictions"] >= profile_from:
                    import cProfile

                    profiling_started = True
                    profiler = cProfile.Profile()
                    profiler.enable()
                state["last_change"] = now
                seen = current
            if profiler is not None and counts["predictions"] >= profile_until:
                profiler.disable()
                profiler.dump_stats(profile_path)
                state["profiled"] = True
                profiler = None
            if now - last_write >= 0.1:
                state["counts"] = dict(counts)
                state["written"] = now
                write(state)
                last_write = now
            await asyncio.sleep(0.005)

    from streams import gc_policy

    gc_policy.apply(settings.gc_thresholds)   # as `driftline worker` does
    sys.argv = [sys.argv[0], "worker", "-l", "info"]
    Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
