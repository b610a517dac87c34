"""Soak: one long stream through real workers while the harness keeps breaking things.

    python -m bench.soak                         # 200,000 predictions + labels, 20 fault cycles
    python -m bench.soak --predictions 20000 --cycles 5 --no-save   # the CI size (tests/reliability/test_soak.py)

Predictions (in 50-event messages, for several models) and their labels go to the embedded
broker at a steady pace, with a few bad payloads among them, while at seeded random moments
the harness sends SIGTERM to the worker, kills it with SIGKILL, starts a second worker and
stops the first (a rebalance), restarts Redis, or freezes the broker for a few seconds
(SIGSTOP/SIGCONT: Tansu is memory-only, so a real stop would erase what the check compares
against). At the end everything is judged against what Kafka holds:

* every prediction counted exactly once per model, every label joined once;
* alert ids and retrain-request ids unique on their topics, dead letters unique (by id) and
  one per bad element;
* the KS statistic of each model's last input-drift alert equal to scipy's ``ks_2samp`` on the
  window's events (read back from the internal topic) against the archived reference.

Every process is ours, bound to 127.0.0.1, and stopped by its PID.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.common import save, source
from streams.embedded import LOOPBACK, free_port, redis_executable, start_broker, wait_for_port

FAULTS = ("sigterm", "kill9", "rebalance", "redis_restart", "broker_pause")
CONFIG = """
[defaults]
reference_size = 1000
window_size = 1000
performance_window = 300
window_seconds = 36000
label_ttl_seconds = 86400
"""
BAD = b"[1, 2]"          # a valid JSON batch of two elements that are not predictions


class PersistentRedis:
    """A redis-server whose data survives a restart (append-only file in its own folder)."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, free_port(), None
        folder.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_executable(), "--bind", LOOPBACK, "--port", str(self.port), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.folder), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def restart(self) -> None:
        self.stop()
        self.start()


class Traffic(threading.Thread):
    """Predictions of every model in turn, each message followed by the previous one's labels."""

    def __init__(self, broker_url: str, env: dict, events: dict, pause: float, bad_every: int, batch: int = 50):
        super().__init__(name="soak-traffic", daemon=True)
        from tests.integration.harness import labels_for, topic

        self.broker_url, self.pause = broker_url, pause
        self.messages: list[tuple[str, bytes]] = []
        labels = {m: labels_for(e) for m, e in events.items()}
        n = max(len(e) for e in events.values())
        sent = 0
        for i in range(0, n + batch, batch):
            for model, evs in events.items():
                if i < n:
                    self.messages.append((topic(env, "predictions"), orjson.dumps(evs[i:i + batch])))
                    sent += 1
                    if sent % bad_every == 0:
                        self.messages.append((topic(env, "predictions"), BAD))
                if i:
                    self.messages.append((topic(env, "labels"), orjson.dumps(labels[model][i - batch:i])))
        self.bad_elements = 2 * sum(1 for _, value in self.messages if value == BAD)
        self.progress = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import Producer

        from tests.integration.harness import bootstrap

        producer = Producer({"bootstrap.servers": bootstrap(self.broker_url), "linger.ms": 2,
                             "message.max.bytes": 8_000_000})
        try:
            for self.progress, (topic_name, value) in enumerate(self.messages, 1):
                while True:
                    try:
                        producer.produce(topic_name, value=value)
                        break
                    except BufferError:          # the broker is frozen: wait for the queue to drain
                        producer.poll(0.5)
                producer.poll(0)
                time.sleep(self.pause)
            if producer.flush(120) != 0:
                raise RuntimeError("messages left undelivered")
        except BaseException as exc:
            self.error = exc


@dataclass
class Soak:
    broker_url: str
    redis: PersistentRedis
    env: dict
    config: Path
    folder: Path
    workers: list = field(default_factory=list)
    faults: list = field(default_factory=list)

    def start_worker(self, tag: str):
        from tests.integration.harness import WorkerProcess

        worker = WorkerProcess(self.env, self.folder, config=self.config, tag=tag)
        worker.wait_ready(90)
        self.workers.append(worker)
        return worker

    def live(self):
        return [w for w in self.workers if w.proc.poll() is None]

    def inject(self, kind: str, broker, index: int) -> dict:
        started, (worker, *_) = time.monotonic(), self.live()
        detail = {"fault": kind, "at": round(started, 1)}
        if kind == "sigterm":
            detail["exit"] = worker.terminate(timeout=40)
            self.start_worker(f"w{index}")
        elif kind == "kill9":
            worker.kill()
            self.start_worker(f"w{index}")
        elif kind == "rebalance":
            self.start_worker(f"w{index}")
            time.sleep(8.0)                 # let both share the partitions before one leaves
            detail["exit"] = worker.terminate(timeout=40)
        elif kind == "redis_restart":
            self.redis.restart()
        elif kind == "broker_pause":
            os.kill(broker.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(4.0)
            finally:
                os.kill(broker.proc.pid, signal.SIGCONT)
        detail["seconds"] = round(time.monotonic() - started, 1)
        self.faults.append(detail)
        return detail


def _read_all(broker_url: str, topic_name: str, idle: float = 4.0) -> list:
    """Every record of a topic, decoded where it is JSON (None where it is not)."""
    from tests.integration.harness import Reader

    reader = Reader(broker_url, topic_name)
    values = []
    try:
        deadline, last = time.monotonic() + 120, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle:
            message = reader.consumer.poll(0.2)
            if message is None or message.error():
                continue
            last = time.monotonic()
            try:
                values.append(orjson.loads(message.value()))
            except orjson.JSONDecodeError:
                values.append(None)
    finally:
        reader.close()
    return values


def _held(values: list) -> dict:
    counts: dict = {}
    for value in values:
        for event in value if isinstance(value, list) else [value]:
            if isinstance(event, dict) and "model" in event:
                counts[event["model"]] = counts.get(event["model"], 0) + 1
    return counts


def _ks_checks(settings, redis_url: str, alerts: list) -> list[dict]:
    """For each model's last input-drift alert: its KS statistic against scipy's on the same events."""
    from scipy.stats import ks_2samp

    from detectors.profile import ReferenceProfile
    from sinks.status import get_archived_reference_sync
    from streams.audit import window_events

    last: dict = {}
    for alert in alerts:
        if alert.get("kind") == "input_drift" and alert.get("evidence", {}).get("income", {}).get("detector") == "ks":
            last[alert["model"]] = alert
    checks = []
    for model, alert in sorted(last.items()):
        archived = get_archived_reference_sync(redis_url, alert["reference"]["reference_id"],
                                               prefix=settings.redis_prefix)   # Redis keys are per app id
        reference = ReferenceProfile.from_dict(archived["profile"]).features["income"].sample
        events = window_events(settings, alert)
        window = [e["features"]["income"] for e in events]
        expected = ks_2samp(reference, window)
        stored = alert["evidence"]["income"]
        checks.append({"model": model, "window": alert["window"]["index"], "n": len(window),
                       "alert_n": alert["window"]["n"], "statistic": stored["statistic"],
                       "scipy_statistic": float(expected.statistic),
                       "equal": len(window) == alert["window"]["n"]
                       and abs(stored["statistic"] - float(expected.statistic)) <= 1e-12})
    return checks


def run(predictions: int = 200_000, models: int = 4, cycles: int = 20, seed: int = 7, log=print) -> dict:
    from streams import config as config_module
    from tests.integration.harness import drift_traffic, duplicates, isolated_env, model_statuses, topic

    rng = random.Random(seed)
    keep = True
    folder = Path(tempfile.mkdtemp(prefix="driftline-soak-"))
    broker = start_broker(log_path=folder / "tansu.log")
    redis = PersistentRedis(folder / "redis")
    soak = None
    try:
        env = isolated_env(broker.url, redis.url, DRIFTLINE_PARTITIONS=4)
        config = folder / "driftline.toml"
        config.write_text(CONFIG)
        names = [f"soak-{i}" for i in range(models)]
        per_model = predictions // models
        events = {m: list(drift_traffic(per_model, shift_at=per_model // 2, model=m, seed=i, shift=1.0))
                  for i, m in enumerate(names)}
        soak = Soak(broker.url, redis, env, config, folder)
        soak.start_worker("w0")
        plan = list(FAULTS) + [rng.choice(FAULTS) for _ in range(max(0, cycles - len(FAULTS)))]
        rng.shuffle(plan)
        plan = plan[:cycles]
        gaps = [rng.uniform(3.0, 8.0) for _ in plan]
        traffic = Traffic(broker.url, env, events, pause=0.0, bad_every=40)
        # spread the traffic over the fault cycles (each also takes ~10 s to recover from)
        traffic.pause = (sum(gaps) + 10.0 * len(plan)) / len(traffic.messages)
        started = time.monotonic()
        traffic.start()
        log(f"soak: {predictions:,} predictions + labels for {models} models in {len(traffic.messages):,} messages "
            f"({traffic.bad_elements} bad elements), {len(plan)} fault cycles (seed {seed}) in {folder}")
        for index, (kind, wait) in enumerate(zip(plan, gaps), 1):
            time.sleep(wait)
            detail = soak.inject(kind, broker, index)
            log(f"  cycle {index:2d}/{len(plan)} {kind:<13} took {detail['seconds']:5.1f}s; "
                f"{traffic.progress:,}/{len(traffic.messages):,} messages sent")
        traffic.join(timeout=900)
        if traffic.is_alive() or traffic.error:
            raise RuntimeError(f"traffic did not finish: {traffic.error!r}")

        held = _held(_read_all(broker.url, topic(env, "predictions")))
        labels_held = _held(_read_all(broker.url, topic(env, "labels")))

        def state():
            found = {}
            for m in names:
                rows = model_statuses(redis.url, m)
                found[m] = (sum(r["counts"]["predictions"] for r in rows), sum(r["counts"]["labelled"] for r in rows))
            return found

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and any(state()[m] != (held.get(m), labels_held.get(m)) for m in names):
            time.sleep(1.0)
        time.sleep(6.0)                     # a late double count would show in the next status writes
        counted = state()
        alerts = [a for a in _read_all(broker.url, topic(env, "alerts")) if a]
        retrains = [r for r in _read_all(broker.url, topic(env, "retrain")) if r]
        letters = [d for d in _read_all(broker.url, topic(env, "deadletter")) if d]
        settings = config_module.load(config, env=env)
        ks = _ks_checks(settings, redis.url, alerts)
        result = {
            "predictions": predictions, "models": models, "cycles": len(plan), "seed": seed,
            "faults": soak.faults, "fault_counts": {k: plan.count(k) for k in FAULTS},
            "seconds": round(time.monotonic() - started, 1),
            "held": held, "labels_held": labels_held,
            "counted": {m: c[0] for m, c in counted.items()}, "labelled": {m: c[1] for m, c in counted.items()},
            "lost": {m: held.get(m, 0) - c[0] for m, c in counted.items() if c[0] < held.get(m, 0)},
            "double_counted": {m: c[0] - held.get(m, 0) for m, c in counted.items() if c[0] > held.get(m, 0)},
            "labels_not_joined_once": {m: c[1] - labels_held.get(m, 0) for m, c in counted.items()
                                       if c[1] != labels_held.get(m, 0)},
            "alerts": len(alerts), "duplicate_alert_ids": duplicates(a["alert_id"] for a in alerts),
            "retrain_requests": len(retrains), "duplicate_retrain_ids": duplicates(r["event_id"] for r in retrains),
            "dead_letters": len(letters), "bad_elements_sent": traffic.bad_elements,
            "duplicate_dead_letter_ids": duplicates(d["deadletter_id"] for d in letters),
            "ks_checks": ks,
            "workers_started": len(soak.workers),
            "exit_codes": [f["exit"] for f in soak.faults if "exit" in f],
        }
        result["folder"] = str(folder)
        result["ok"] = bool(not result["lost"] and not result["double_counted"]
                            and not result["labels_not_joined_once"] and not result["duplicate_alert_ids"]
                            and not result["duplicate_retrain_ids"] and not result["duplicate_dead_letter_ids"]
                            and result["dead_letters"] == traffic.bad_elements
                            and ks and all(c["equal"] for c in ks))
        keep = not result["ok"]
        return result
    finally:
        if soak is not None:
            for worker in soak.live():
                worker.terminate(timeout=30)
        redis.stop()
        broker.stop()
        if keep:        # the workers' and the broker's logs, to find what went wrong
            log(f"soak: logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=int, default=200_000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.predictions, args.models, args.cycles, args.seed)
    summary = {k: result[k] for k in ("lost", "double_counted", "labels_not_joined_once", "duplicate_alert_ids",
                                      "duplicate_retrain_ids", "duplicate_dead_letter_ids")}
    print(f"soak {'PASSED' if result['ok'] else 'FAILED'} in {result['seconds']} s: {result['fault_counts']}; "
          f"held {result['held']}, counted {result['counted']}, labelled {result['labelled']}; "
          f"{result['alerts']} alerts, {result['retrain_requests']} retrain requests, {result['dead_letters']} dead "
          f"letters for {result['bad_elements_sent']} bad elements; KS equal to scipy: "
          f"{[c['equal'] for c in result['ks_checks']]}; {summary}")
    if not args.no_save:
        save('soak', {'source': source(), **result})
    return result


if __name__ == "__main__":
    raise SystemExit(0 if main()["ok"] else 1)
