"""Issue 5, item 4: worker RSS over 2,000,000 unlabelled predictions.

    python -m bench.memory [--events 2000000] [--framing 100]

The real worker (``bench._worker``) consumes predictions that never get a label
(every one waits in the join until the 50,000 cap or the 1 h TTL evicts it),
published as micro-batches of ``--framing`` by a producer running ahead of it in
chunks of 100,000. VmRSS of the worker process (/proc/PID/status) is read when
its own prediction counter passes each checkpoint. ``ingest_batch`` is set to
1000 // framing (see ``bench.throughput``: the shipped value crashes the ingest
agent on a backlog of micro-batches).
"""
from __future__ import annotations

import argparse
import time
import uuid

from bench import common
from bench.throughput import ingest_config

CHUNK = 100_000


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--framing", type=int, default=100)
    args = ap.parse_args(argv)
    marks = sorted({m for m in (100_000, 250_000, 500_000, 1_000_000, 1_500_000, 2_000_000) if m <= args.events}
                   | {args.events})

    samples, rss_at = [], {}
    with common.services() as (broker, redis):
        env = common.worker_env(broker.url, redis.url, name=f"mem-{uuid.uuid4().hex[:4]}")
        config = ingest_config(args.framing)
        if config:
            env["DRIFTLINE_CONFIG"] = config
        topic = common.topic_of(env, "predictions")
        common.create_topics(broker.url, [common.topic_of(env, w) for w in
                                          ("predictions", "labels", "alerts", "retrain", "deadletter")])
        worker = common.Child("bench._worker", env, tag="memory-worker")
        try:
            produced = 0
            start = time.monotonic()
            pending = list(marks)
            while pending:
                processed = worker.read_probe().get("counts", {}).get("predictions", 0)
                # keep the producer at most two chunks ahead of the worker
                if produced < args.events and produced - processed < 2 * CHUNK:
                    preds, _ = common.predictions(CHUNK, model="mem", seed=produced // CHUNK, offset=produced)
                    common.produce(broker.url, topic, common.encode(preds, args.framing))
                    produced += CHUNK
                    continue
                if worker.proc.poll() is not None:
                    raise RuntimeError(f"worker exited:\n{worker.tail()}")
                rss = worker.rss_kib()
                samples.append((time.monotonic() - start, processed, rss))
                while pending and processed >= pending[0]:
                    rss_at[pending.pop(0)] = rss
                    print(f"{processed:>9,} predictions: RSS {rss / 1024:,.0f} MiB "
                          f"({time.monotonic() - start:.0f} s)", flush=True)
                if time.monotonic() - start > 1800:
                    raise TimeoutError("memory benchmark exceeded 30 min")
                time.sleep(0.5)
            probe = worker.read_probe()
        finally:
            worker.stop()
    out = {"events": args.events, "framing": args.framing, "rss_kib_at": rss_at,
           "samples": samples[::10], "counts": probe.get("counts")}
    if 500_000 in rss_at and args.events in rss_at:
        growth = rss_at[args.events] / rss_at[500_000] - 1
        out["growth_from_500k_%"] = 100 * growth
        print(f"RSS {rss_at[500_000] / 1024:.0f} MiB at 0.5M -> {rss_at[args.events] / 1024:.0f} MiB at "
              f"{args.events / 1e6:g}M: {100 * growth:+.1f}% ->", "flat within 10 %: met" if abs(growth) <= 0.10
              else "flat within 10 %: missed")
    common.save("memory", out)
    return out


if __name__ == "__main__":
    main()
