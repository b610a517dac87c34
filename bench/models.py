"""Issue 16: what each monitored model version costs one worker.

    python -m bench.models [--models 100] [--rate 10] [--seconds 120] [--framing 10]
                           [--window 250] [--reference 500] [--no-single] [--out models]

N model versions (20 features each: 10 numeric, 10 categorical; a score and a label
for every prediction, every event drawn fresh from one stationary distribution, seeded:
no window repeats another) send ``--rate`` predictions per second each, in real time, as
micro-batches of ``--framing`` events per message, for ``--seconds``; every label
follows its prediction in the same second. Event timestamps are the wall-clock send
times, so a window's event-time end is when its last event was sent.

Reported, for the N-model run and (unless ``--no-single``) for one model carrying
the same total rate, one after the other on the same broker:

- warm-up: CPU seconds one new model version costs before its first window (the
  reference built from its first ``--reference`` predictions, with its calibration),
  measured in process as the CPU of folding those predictions minus the CPU of folding
  as many predictions once the reference exists;
- the worker's RSS once idle after start-up and at the end, and the growth per model;
- bytes written to the worker's changelog topic (its checkpoints and, once per version, its
  reference) against the bytes of input (prediction and label messages), and the checkpoints alone;
- worker CPU (user + system, /proc) per prediction while the traffic ran, and from when
  every version's reference is built (1.1 x models x ``--reference`` predictions) to the end:
  the steady state, without the warm-up of N references;
- the load average before and after each case (the machine may be shared);
- the delay from a window's last event to its test: the window history in Redis is
  polled every 0.25 s and a new entry's event-time end is subtracted from when it
  appeared (a bound: up to 0.25 s of it is the polling).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

from bench import common

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK      # utime + stime


def warmup_cpu(reference: int, window: int, runs: int = 3) -> dict:
    """CPU of a new version's first ``reference`` predictions minus that of as many afterwards.

    The runs are versions one after the other in this process: the first calibrates with nothing
    known (``first_version_warmup_cpu_s``), the next ones reuse the KS null values the process has
    computed for the same sizes (``detectors.calibration.KSTWO``), as a worker's later versions do."""
    from detectors.monitor import ModelMonitor
    from detectors.settings import ModelSettings
    from streams.records import validate_prediction

    first, steady = [], []
    for run in range(runs):
        monitor = ModelMonitor("warm", ModelSettings(reference_size=reference, window_size=window))
        preds, _ = common.predictions(2 * reference, model="warm", seed=100 + run)
        preds = [validate_prediction(p, p["timestamp"]) for p in preds]
        t0 = time.process_time()
        monitor.add_predictions(preds[:reference], offset=0, partition=0)
        t1 = time.process_time()
        monitor.add_predictions(preds[reference:], offset=1, partition=0)
        t2 = time.process_time()
        first.append(t1 - t0)
        steady.append(t2 - t1)
    warmups = [a - b for a, b in zip(first, steady)]
    return {"first_reference_cpu_s": round(common.median(first), 3),
            "same_count_after_cpu_s": round(common.median(steady), 3),
            "warmup_cpu_s": round(common.median(warmups), 3),
            "first_version_warmup_cpu_s": round(warmups[0], 3),
            "next_versions_warmup_cpu_s": round(common.median(warmups[1:]), 3) if runs > 1 else None}


def config_file(reference: int, window: int) -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-models-")) / "driftline.toml"
    path.write_text(f"[defaults]\nreference_size = {reference}\nwindow_size = {window}\n")
    return path


class Traffic(threading.Thread):
    """Paced producer: every second, ``rate`` predictions per model and their labels."""

    def __init__(self, broker_url: str, env: dict, models: list[str], rate: int, framing: int, seconds: float):
        super().__init__(daemon=True)
        from confluent_kafka import Producer

        self.producer = Producer({"bootstrap.servers": common.bootstrap(broker_url), "linger.ms": 5,
                                  "message.max.bytes": 8_000_000, "queue.buffering.max.kbytes": 2_000_000})
        self.topics = common.topic_of(env, "predictions"), common.topic_of(env, "labels")
        self.models, self.rate, self.framing, self.seconds = models, rate, framing, seconds
        self.input_bytes = self.predictions = 0
        self.error: BaseException | None = None
        self.events = FreshEvents(seed=3)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:       # reported by the caller
            self.error = exc

    def _send(self, topic: str, events: list) -> None:
        for i in range(0, len(events), self.framing):
            value = orjson.dumps(events[i:i + self.framing]) if self.framing > 1 else orjson.dumps(events[i])
            while True:
                try:
                    self.producer.produce(topic, value=value)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.input_bytes += len(value)
        self.producer.poll(0)

    def _run(self) -> None:
        start, tick = time.time(), 0
        while tick < self.seconds:
            due = start + tick
            if due > time.time():
                time.sleep(due - time.time())
            preds, labels = self.events.second(self.models, self.rate, tick, time.time())
            self._send(self.topics[0], preds)
            self._send(self.topics[1], labels)
            self.predictions += len(preds)
            tick += 1
        left = self.producer.flush(120)
        if left:
            raise RuntimeError(f"{left} messages left undelivered")


class FreshEvents:
    """Every model's predictions and labels for one second, drawn fresh from one stationary
    distribution (the 20 features of ``common.feature_matrix``, the score and label of
    ``common.predictions``), seeded: no window repeats another, so a false alarm is one.

    One numpy draw per second for all models; the per-event work is building the dicts."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.probabilities = np.array([0.4, 0.25, 0.15, 0.12, 0.08])

    def second(self, models: list[str], rate: int, tick: int, now: float) -> tuple[list, list]:
        n = len(models) * rate
        numeric = self.rng.normal(size=(n, common.N_NUMERIC))
        cats = common.LEVELS[self.rng.choice(len(common.LEVELS), size=(n, common.N_CATEGORICAL),
                                             p=self.probabilities)].tolist()
        score = (1 / (1 + np.exp(-(numeric[:, 0] + 0.5 * numeric[:, 1])))).round(6)
        label = (self.rng.random(n) < score).tolist()
        num_rows, scores = numeric.round(6).tolist(), score.tolist()
        preds, labels = [], []
        numeric_names, categorical_names = common.NUMERIC, common.CATEGORICAL
        for i in range(n):
            model = models[i // rate]
            pid = f"{model}-{tick}-{i % rate}"
            features = dict(zip(numeric_names, num_rows[i]))
            features.update(zip(categorical_names, cats[i]))
            s = scores[i]
            preds.append({"prediction_id": pid, "model": model, "model_version": "1", "timestamp": now,
                          "prediction": int(s >= 0.5), "score": s, "features": features})
            labels.append({"prediction_id": pid, "model": model, "label": int(label[i]), "timestamp": now})
        return preds, labels


class HistoryWatch(threading.Thread):
    """Polls every model's window history; records when each window appeared and its event-time end."""

    def __init__(self, redis_url: str, prefix: str, models: list[str], version: str = "1"):
        super().__init__(daemon=True)
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.keys = [f"{prefix}:history:{m}:{version}" for m in models]
        self.seen = [0] * len(self.keys)
        self.delays: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.poll()
            self.stop.wait(0.25)
        self.poll()

    def poll(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys:
            pipe.xlen(key)
        lengths = pipe.execute()
        now = time.time()
        grown = [(i, n) for i, n in enumerate(lengths) if n > self.seen[i]]
        if not grown:
            return
        pipe = self.client.pipeline(transaction=False)
        for i, n in grown:
            pipe.xrevrange(self.keys[i], count=n - self.seen[i])
        for (i, n), entries in zip(grown, pipe.execute()):
            for _id, fields in entries:
                summary = orjson.loads(fields[b"json"])
                self.delays.append(now - float(summary["end"]))
            self.seen[i] = n

    @property
    def windows(self) -> int:
        return sum(self.seen)


class CpuSampler(threading.Thread):
    """The worker's CPU seconds against its count of predictions, every 0.5 s: the CPU per
    prediction once every version's reference is built (the warm-up is reported apart)."""

    def __init__(self, worker):
        super().__init__(daemon=True)
        self.worker, self.samples, self.stop = worker, [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            count = self.worker.read_probe().get("counts", {}).get("predictions")
            if count is not None:
                self.samples.append((cpu_seconds(self.worker.pid), count))

    def per_prediction(self, after: float) -> float | None:
        steady = [(cpu, n) for cpu, n in self.samples if n >= after]
        if len(steady) < 2 or steady[-1][1] == steady[0][1]:
            return None
        (cpu0, n0), (cpu1, n1) = steady[0], steady[-1]
        return round(1e6 * (cpu1 - cpu0) / (n1 - n0), 1)


def changelog_bytes(broker_url: str, app_id: str) -> tuple[int, int, int, str]:
    """(records, bytes, bytes of references) on the worker's state changelog topic, read from the
    start until idle. A version's reference is written once (streams.state.REFERENCE_PREFIX): the
    rest is checkpoints."""
    from streams.state import REFERENCE_PREFIX
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": common.bootstrap(broker_url)}).list_topics(timeout=10).topics
    topics = [t for t in metadata if t.startswith(app_id) and "changelog" in t]
    if not topics:
        raise RuntimeError(f"no changelog topic of {app_id}")
    consumer = Consumer({"bootstrap.servers": common.bootstrap(broker_url), "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})
    # assigned, not subscribed: no group join (the embedded broker holds joins back)
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata[t].partitions])
    records = size = references = 0
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < 5.0:
            batch = consumer.consume(10_000, timeout=0.5)
            for message in batch:
                if message.error():
                    raise KafkaException(message.error())
                records += 1
                nbytes = len(message.value() or b"") + len(message.key() or b"")
                size += nbytes
                if (message.key() or b"").startswith(REFERENCE_PREFIX):
                    references += nbytes
            if batch:
                idle_since = time.monotonic()
    finally:
        consumer.close()
    return records, size, references, ",".join(topics)


def run_case(broker, redis, models: int, rate: int, framing: int, seconds: float,
             reference: int, window: int) -> dict:
    name = f"models-{uuid.uuid4().hex[:4]}"
    env = common.worker_env(broker.url, redis.url, name=name)
    env["DRIFTLINE_CONFIG"] = str(config_file(reference, window))
    common.create_topics(broker.url, [common.topic_of(env, w) for w in
                                      ("predictions", "labels", "alerts", "retrain", "deadletter")])
    names = [f"m{i:04d}" for i in range(models)]
    load_before = _load_average()
    worker = common.Child("bench._worker", env, tag="models-worker")
    try:
        worker.wait_probe(lambda p: p.get("written") is not None, timeout=120)
        rss_idle = worker.rss_kib()
        cpu0 = cpu_seconds(worker.pid)
        watch = HistoryWatch(redis.url, env["DRIFTLINE_APP_ID"], names)
        watch.start()
        traffic = Traffic(broker.url, env, names, rate, framing, seconds)
        sampler = CpuSampler(worker)
        t0 = time.monotonic()
        sampler.start()
        traffic.start()
        traffic.join()
        if traffic.error:
            raise traffic.error
        sent = traffic.predictions
        # every prediction and every label counted (labels alone can be counted before their
        # predictions: early labels wait for them)
        probe = worker.wait_probe(lambda p: min(p.get("counts", {}).get("predictions", 0),
                                                p.get("counts", {}).get("labels", 0)) >= sent, timeout=600)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(worker.pid) - cpu0
        rss_end = worker.rss_kib()
        sampler.stop.set()
        sampler.join()
        watch.stop.set()
        watch.join()
    finally:
        worker.stop()
    records, size, references, topics = changelog_bytes(broker.url, env["DRIFTLINE_APP_ID"])
    delays = sorted(watch.delays)
    return {
        "models": models, "rate_per_model": rate, "framing": framing, "seconds": seconds,
        "predictions": sent, "processed": probe["counts"].get("predictions"),
        "elapsed_s": round(elapsed, 2),
        "worker_cpu_s": round(cpu, 2), "cpu_us_per_prediction": round(1e6 * cpu / sent, 1),
        "cpu_us_per_prediction_after_warmup": sampler.per_prediction(after=1.1 * models * reference),
        "rss_idle_mib": round(rss_idle / 1024, 1), "rss_end_mib": round(rss_end / 1024, 1),
        "rss_per_model_mib": round((rss_end - rss_idle) / 1024 / models, 3),
        "input_bytes": traffic.input_bytes, "changelog_records": records, "changelog_bytes": size,
        "changelog_topics": topics, "changelog_over_input": round(size / traffic.input_bytes, 3),
        "reference_bytes": references, "checkpoints_over_input": round((size - references) / traffic.input_bytes, 3),
        "windows_tested": watch.windows,
        "load_average": {"before": load_before, "after": _load_average()},
        "window_delay_s": {"p50": _pct(delays, 50), "p99": _pct(delays, 99), "max": delays[-1] if delays else None},
    }


def _load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages (the machine is shared: figures need them)."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _pct(values: list, q: float):
    return round(float(np.percentile(values, q)), 3) if values else None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--rate", type=int, default=10, help="predictions per second per model")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--framing", type=int, default=10, help="events per message")
    ap.add_argument("--window", type=int, default=250)
    ap.add_argument("--reference", type=int, default=500)
    ap.add_argument("--no-single", action="store_true", help="skip the one-model comparison run")
    ap.add_argument("--out", default="models", help="results file name in bench/results (no .json)")
    args = ap.parse_args(argv)

    result = {"command": "python -m bench.models " + " ".join(sys.argv[1:] if argv is None else argv),
              "warmup": warmup_cpu(args.reference, args.window)}
    print("warm-up per model version:", result["warmup"])
    with common.services() as (broker, redis):
        result["many"] = run_case(broker, redis, args.models, args.rate, args.framing, args.seconds,
                                  args.reference, args.window)
        print("many:", result["many"])
        if not args.no_single:
            result["single"] = run_case(broker, redis, 1, args.rate * args.models,
                                        args.framing * args.models, args.seconds, args.reference, args.window)
            print("single:", result["single"])
            result["cpu_ratio_many_over_single"] = round(
                result["many"]["cpu_us_per_prediction"] / result["single"]["cpu_us_per_prediction"], 2)
            many, single = (result[k]["cpu_us_per_prediction_after_warmup"] for k in ("many", "single"))
            if many and single:
                result["cpu_ratio_after_warmup"] = round(many / single, 2)
    common.save(args.out, result)
    return result


if __name__ == "__main__":
    main()
