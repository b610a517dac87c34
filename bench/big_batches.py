"""Issue 12, item 6: worker RSS while it processes micro-batches of about 10 MB each.

    python -m bench.big_batches [--messages 20] [--mb 10]

The real worker (``bench._worker``, default settings: max_message_bytes = the consumer's
8 MiB fetch limit) consumes predictions published as JSON arrays of about ``--mb`` MB each
(~16,000 predictions with 20 features), one message at a time ahead of it, never labelled.
Each message is decoded whole and forwarded in internal messages of at most 1 MB. VmRSS
(/proc/PID/status) is sampled every 0.2 s; the run reports the peak, the RSS after the first
and the last message, and how many dead letters the worker counted (must be 0).
"""
from __future__ import annotations

import argparse
import time
import uuid

import orjson

from bench import common


def _messages(n: int, megabytes: float) -> tuple[list[bytes], int]:
    probe, _ = common.predictions(1000, model="big", seed=0)
    per_event = len(orjson.dumps(probe)) / len(probe)
    size = int(megabytes * 1e6 / per_event)
    out, total = [], 0
    for i in range(n):
        preds, _ = common.predictions(size, model="big", seed=i, offset=i * size)
        out.append(orjson.dumps(preds))
        total += size
    return out, size


def _produce(broker_url: str, topic: str, value: bytes) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": common.bootstrap(broker_url), "message.max.bytes": 64_000_000,
                         "linger.ms": 0})
    producer.produce(topic, value=value)
    if producer.flush(120):
        raise RuntimeError("message left undelivered")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--mb", type=float, default=10.0)
    args = ap.parse_args(argv)
    values, per_message = _messages(args.messages, args.mb)
    sizes = [len(v) for v in values]
    print(f"{args.messages} messages of {min(sizes) / 1e6:.1f}-{max(sizes) / 1e6:.1f} MB, "
          f"{per_message:,} predictions each", flush=True)

    samples, after = [], []
    with common.services() as (broker, redis):
        env = common.worker_env(broker.url, redis.url, name=f"big-{uuid.uuid4().hex[:4]}")
        topic = common.topic_of(env, "predictions")
        common.create_topics(broker.url, [common.topic_of(env, w) for w in
                                          ("predictions", "labels", "alerts", "retrain", "deadletter")])
        worker = common.Child("bench._worker", env, tag="big-batches-worker")
        try:
            start = time.monotonic()
            for i, value in enumerate(values):
                _produce(broker.url, topic, value)
                target = (i + 1) * per_message
                while True:       # one message in flight: wait until the worker has folded it in
                    probe = worker.read_probe()
                    counts = probe.get("counts", {})
                    samples.append((time.monotonic() - start, counts.get("predictions", 0), worker.rss_kib()))
                    if counts.get("predictions", 0) >= target:
                        break
                    if counts.get("deadletter"):
                        raise RuntimeError(f"dead-lettered: {counts}")
                    if worker.proc.poll() is not None:
                        raise RuntimeError(f"worker exited:\n{worker.tail()}")
                    if time.monotonic() - start > 1800:
                        raise TimeoutError("big-batch benchmark exceeded 30 min")
                    time.sleep(0.2)
                after.append(worker.rss_kib())
                print(f"message {i + 1:>3}: {target:>9,} predictions, RSS {after[-1] / 1024:,.0f} MiB "
                      f"({time.monotonic() - start:.0f} s)", flush=True)
            elapsed = time.monotonic() - start
            counts = worker.read_probe().get("counts", {})
        finally:
            worker.stop()
    peak = max(s[2] for s in samples if s[2])
    out = {"messages": args.messages, "message_bytes": sizes, "predictions_per_message": per_message,
           "seconds": elapsed, "rss_kib_after_message": after, "peak_rss_kib": peak,
           "deadletter": counts.get("deadletter", 0), "predictions": counts.get("predictions"),
           "samples": samples[::10]}
    print(f"{counts.get('predictions'):,} predictions in {elapsed:.0f} s, dead letters {counts.get('deadletter', 0)}; "
          f"RSS after the first message {after[0] / 1024:.0f} MiB, after the last {after[-1] / 1024:.0f} MiB, "
          f"peak {peak / 1024:.0f} MiB", flush=True)
    common.save("big_batches", out)
    return out


if __name__ == "__main__":
    main()
