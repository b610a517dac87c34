"""Issue 5, item 6: one worker vs two (same app id) on 4 partitions with 4 models.

    python -m bench.scaleout [--events 100000] [--runs 1]

Workers (``bench._worker``) are started first and given time to join and settle
the group; then ``--events`` predictions (+ one label each) spread over 4
models are published as micro-batches of 100 (``ingest_batch`` = 10, see
``bench.throughput``). The rate is events from the first one processed by any
worker to the last one processed by any worker. On a 2-core machine, two worker
processes and the broker share the same two cores.
"""
from __future__ import annotations

import argparse
import time
import uuid

from bench import common
from bench.throughput import ingest_config



def _one_model_per_partition(partitions: int = 4) -> tuple[str, ...]:
    """Model names whose keys land on distinct internal partitions (murmur2, Kafka's default
    partitioner), so two workers can split the monitor stage. Names picked blindly can share
    partitions: "alpha", "beta", "gamma", "delta" hash to only 2 of 4, and both can go to one worker."""
    from aiokafka.partitioner import murmur2

    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        name = f"model-{i}"
        found.setdefault((murmur2(name.encode()) & 0x7FFFFFFF) % partitions, name)
        i += 1
    return tuple(found[p] for p in range(partitions))


MODELS = _one_model_per_partition()


def run_workers(broker, redis, n_workers: int, events: int) -> dict:
    env = common.worker_env(broker.url, redis.url, name=f"so{n_workers}-{uuid.uuid4().hex[:4]}")
    env["DRIFTLINE_CONFIG"] = ingest_config(100)
    names = {w: common.topic_of(env, w) for w in ("predictions", "labels", "alerts", "retrain", "deadletter")}
    common.create_topics(broker.url, list(names.values()))
    per_model = events // len(MODELS)
    workers = []
    try:
        for i in range(n_workers):
            workers.append(common.Child("bench._worker", env, tag=f"scaleout{n_workers}-{i}"))
        deadline = time.monotonic() + 90
        while not all("Ready" in w.tail(10**7) for w in workers):
            if time.monotonic() > deadline:
                raise TimeoutError("workers not ready")
            time.sleep(0.5)
        time.sleep(12)  # let the group settle (Tansu holds joins up to half the 6 s session timeout)
        for j, model in enumerate(MODELS):
            preds, labels = common.predictions(per_model, model=model, seed=20 + j)
            common.produce(broker.url, names["predictions"], common.encode(preds, 100))
            common.produce(broker.url, names["labels"], common.encode(labels, 100))
        total = per_model * len(MODELS)
        deadline = time.monotonic() + 900
        while True:
            probes = [w.read_probe() for w in workers]
            done = sum(p.get("counts", {}).get("predictions", 0) + p.get("counts", {}).get("labels", 0)
                       for p in probes)
            if done >= 2 * total:
                break
            if any(w.proc.poll() is not None for w in workers) or time.monotonic() > deadline:
                raise RuntimeError(f"scale-out run failed at {done} events:\n{workers[0].tail()}")
            time.sleep(0.2)
        time.sleep(0.3)
        probes = [w.read_probe() for w in workers]
    finally:
        for w in workers:
            w.stop()
    firsts = [p["first"] for p in probes if p.get("first")]
    lasts = [p["last_change"] for p in probes if p.get("last_change")]
    span = max(lasts) - min(firsts)
    return {"workers": n_workers, "events": 2 * total, "seconds": span, "rate": 2 * total / span,
            "per_worker_events": [p["counts"]["predictions"] + p["counts"]["labels"] for p in probes]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args(argv)
    rows = []
    with common.services() as (broker, redis):
        for run in range(args.runs):
            one = run_workers(broker, redis, 1, args.events)
            two = run_workers(broker, redis, 2, args.events)
            rows.append({"one": one, "two": two, "speedup": two["rate"] / one["rate"]})
            print(f"run {run + 1}: one worker {one['rate']:,.0f} events/s, two workers {two['rate']:,.0f} events/s "
                  f"(split {two['per_worker_events']}), speed-up {rows[-1]['speedup']:.2f}x", flush=True)
    out = {"runs": rows, "speedup_median": common.median(r["speedup"] for r in rows)}
    common.save("scaleout", out)
    return out


if __name__ == "__main__":
    main()
