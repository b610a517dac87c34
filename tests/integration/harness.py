"""Real processes for integration tests: driftline workers, and a foreign Kafka client.

Producers and consumers here use confluent-kafka (librdkafka), not driftline's
code, so the tests also prove the wire contract works for other clients.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer

from streams.embedded import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]

# Small windows so a test's traffic spans several (reference 1,000, windows of 500). The tests
# replay hours of event time (one event a second) in a burst and send the labels behind it:
# a label TTL of one day covers that, as it would for a backfill (README, "driftline.labels").
SMALL_WINDOWS = """
max_message_bytes = 1000000   # the bad-input tests' oversize single events (the default is 8 MiB)

[defaults]
reference_size = 1000
window_size = 500
performance_window = 300
window_seconds = 36000
label_ttl_seconds = 86400
"""


def bootstrap(broker_url: str) -> str:
    return broker_url.split("://", 1)[-1]


def isolated_env(broker_url: str, redis_url: str, name: str | None = None, **extra) -> dict:
    """Environment for a worker with its own app id and topic names (tests share one broker)."""
    name = name or uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env.update({
        "DRIFTLINE_BROKER": broker_url, "DRIFTLINE_REDIS_URL": redis_url,
        "DRIFTLINE_APP_ID": f"dl-{name}",
        **{f"DRIFTLINE_TOPIC_{t.upper()}": f"{name}.{t}"
           for t in ("predictions", "labels", "alerts", "retrain", "deadletter")},
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def topic(env: dict, what: str) -> str:
    return env[f"DRIFTLINE_TOPIC_{what.upper()}"]


class WorkerProcess:
    """``driftline worker`` as a child process; stopped or killed by its own PID only."""

    def __init__(self, env: dict, log_dir: Path, config: Path | None = None, tag: str = "worker",
                 web_port: int | None = None, cwd: Path = ROOT):
        # the data folder in the test's own tmp folder: a test leaves nothing in the repository
        self.env = {"DRIFTLINE_DATA_DIR": str(log_dir / "data"), **env,
                    "DRIFTLINE_WEB_PORT": str(web_port or free_port())}
        self.log_path = log_dir / f"{tag}-{uuid.uuid4().hex[:6]}.log"
        args = [sys.executable, "-m", "streams.cli"]
        if config:
            args += ["--config", str(config)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args + ["worker", "-l", "info"], cwd=cwd, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            if "Ready" in self.log():
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()[-3000:]}")

    def terminate(self, timeout: float = 30.0) -> int:
        code = stop_process(self.proc, timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def produce(broker_url: str, topic_name: str, values, key: bytes | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap(broker_url), "linger.ms": 5,
                         "message.max.bytes": 8_000_000})
    for value in values:
        if not isinstance(value, (bytes, bytearray)):
            value = orjson.dumps(value)
        producer.produce(topic_name, value=value, key=key)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages left undelivered"


class Reader:
    """A group-less consumer of one topic from the beginning."""

    def __init__(self, broker_url: str, topic_name: str):
        self.consumer = Consumer({"bootstrap.servers": bootstrap(broker_url), "group.id": f"t-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        # assign(), not subscribe(): no group join (Tansu holds joins up to half the session timeout)
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        deadline = time.monotonic() + 30
        while True:
            meta = self.consumer.list_topics(topic_name, timeout=5).topics.get(topic_name)
            if meta is not None and meta.partitions and meta.error is None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic_name} does not exist")
            time.sleep(0.2)
        self.consumer.assign([TopicPartition(topic_name, p, OFFSET_BEGINNING) for p in meta.partitions])
        self.records: list = []

    def poll_until(self, done, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(self.records):
            message = self.consumer.poll(0.2)
            if message is None or message.error():
                continue
            self.records.append(orjson.loads(message.value()))
        return self.records

    def drain(self, idle: float = 2.0, timeout: float = 30.0) -> list:
        """Read until nothing new arrived for ``idle`` seconds."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle:
            message = self.consumer.poll(0.2)
            if message is None or message.error():
                continue
            self.records.append(orjson.loads(message.value()))
            last = time.monotonic()
        return self.records

    def close(self) -> None:
        self.consumer.close()


def drift_traffic(n: int, shift_at: int, model: str = "credit", version: str = "1", seed: int = 3,
                  shifted: str = "income", shift: float = 1.0, start: float = 1_767_225_600.0):
    """Seeded predictions with 6 features; ``shifted`` moves by ``shift`` std from ``shift_at`` on."""
    import numpy as np

    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(n, 4))
    numeric[shift_at:, 0 if shifted == "income" else 1] += shift
    regions = rng.choice(["north", "south", "east", "west"], size=n)
    plans = rng.choice(["basic", "plus"], size=n, p=[0.7, 0.3])
    for i in range(n):
        score = float(1 / (1 + np.exp(-(numeric[i, 2] + 0.5 * numeric[i, 3]))))
        yield {
            "prediction_id": f"{model}-{seed}-{i}", "model": model, "model_version": version,
            "timestamp": start + i, "prediction": int(score >= 0.5), "score": round(score, 6),
            "features": {"income": float(numeric[i, 0]), "age": float(numeric[i, 1]),
                         "debt": float(numeric[i, 2]), "tenure": float(numeric[i, 3]),
                         "region": str(regions[i]), "plan": str(plans[i])},
        }


# -- helpers for the reliability tests (tests/reliability) --------------------------------
def produce_raw(broker_url: str, topic_name: str, values, key: bytes | None = None) -> None:
    """Send bytes exactly as given; ``None`` is a tombstone (a message with no value)."""
    producer = Producer({"bootstrap.servers": bootstrap(broker_url), "linger.ms": 5,
                         "message.max.bytes": 8_000_000})
    for value in values:
        producer.produce(topic_name, value=value, key=key)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages left undelivered"


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout}s")
        time.sleep(interval)


def all_statuses(redis_url: str) -> list[dict]:
    """Every model's status under every app id (Redis keys are prefixed by app id; tests share one Redis)."""
    import redis

    from sinks import read_status_sync

    client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        prefixes = sorted(k.decode()[:-len(":models")] for k in client.scan_iter(match="*:models", count=1000))
    finally:
        client.close()
    return [s for prefix in prefixes for s in read_status_sync(redis_url, prefix=prefix)]


def model_statuses(redis_url: str, model: str) -> list[dict]:
    """Every version's status of ``model`` ([] when Redis is unreachable)."""
    import redis

    from sinks import StoreUnavailable

    try:
        return [s for s in all_statuses(redis_url) if s.get("model") == model]
    except (StoreUnavailable, redis.exceptions.RedisError):
        return []


def processed(redis_url: str, model: str) -> int:
    """Predictions of ``model`` folded into its state (all versions), as the worker last reported."""
    return sum(s.get("counts", {}).get("predictions", 0) for s in model_statuses(redis_url, model))


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as Faust/aiokafka use it) gives ``key``."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def models_on_every_partition(prefix: str, partitions: int = 4, per_partition: int = 1) -> dict[int, list[str]]:
    """Model names whose keys land on each partition of the internal (re-keyed) topic."""
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    i = 0
    while any(len(v) < per_partition for v in found.values()):
        name = f"{prefix}-{i}"
        bucket = found[partition_of(name.encode(), partitions)]
        if len(bucket) < per_partition:
            bucket.append(name)
        i += 1
    return found


def labels_for(events, every: int = 1) -> list[dict]:
    """Labels equal to the prediction (no performance change) for every ``every``-th event."""
    return [{"prediction_id": e["prediction_id"], "model": e["model"], "label": e["prediction"],
             "timestamp": e["timestamp"]} for e in list(events)[::every]]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def descendants(pid: int) -> set[int]:
    """PIDs of every live process below ``pid`` (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


class PacedProducer:
    """Publish batches from a background thread at a steady pace; stop() waits for it.

    ``batches`` yields (topic, list of events); ``sent`` counts predictions per model.
    """

    def __init__(self, broker_url: str, batches, pause: float = 0.01):
        import threading

        self.broker_url = broker_url
        self.batches = batches
        self.pause = pause
        self.sent: dict[str, int] = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)

    def start(self) -> "PacedProducer":
        self._thread.start()
        return self

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": bootstrap(self.broker_url), "linger.ms": 2,
                             "message.max.bytes": 8_000_000})
        try:
            for topic_name, events, is_prediction in self.batches:
                if self._stop.is_set():
                    break
                producer.produce(topic_name, value=orjson.dumps(events))
                producer.poll(0)
                if is_prediction:
                    for e in events:
                        self.sent[e["model"]] = self.sent.get(e["model"], 0) + 1
                time.sleep(self.pause)
            assert producer.flush(30) == 0, "messages left undelivered"
        except BaseException as exc:  # reported by join()
            self.error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float = 60.0) -> dict[str, int]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("producer thread still running")
        if self.error is not None:
            raise self.error
        return self.sent

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def wait_processed(redis_url: str, expected: dict[str, int], timeout: float = 90.0, settle: float = 0.0) -> dict:
    """Wait until every model's state holds at least its expected predictions; then, if
    ``settle`` > 0, keep reading that long (status is written about once a second per model,
    and idle models get a tick every few seconds) so late double counts would show."""
    def counts():
        return {m: processed(redis_url, m) for m in expected}

    try:
        wait_until(lambda: all(c >= expected[m] for m, c in counts().items()), timeout, 0.3)
    except TimeoutError:
        raise AssertionError(f"after {timeout}s processed {counts()} of {expected}") from None
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        time.sleep(0.5)
    return counts()


def predictions_held(broker_url: str, topic_name: str, idle: float = 3.0) -> dict[str, int]:
    """Predictions per model that the topic holds: what was sent, plus any copies the producer's
    own retries wrote (a producer without idempotence is at-least-once too)."""
    reader = Reader(broker_url, topic_name)
    try:
        held: dict[str, int] = {}
        for value in reader.drain(idle=idle, timeout=60):
            for event in value if isinstance(value, list) else [value]:
                held[event["model"]] = held.get(event["model"], 0) + 1
        return held
    finally:
        reader.close()


def read_alerts(broker_url: str, topic_name: str, idle: float = 3.0) -> list[dict]:
    """Everything on an alerts/retrain topic so far (until nothing new for ``idle`` seconds)."""
    reader = Reader(broker_url, topic_name)
    try:
        return reader.drain(idle=idle, timeout=60)
    finally:
        reader.close()


def duplicates(ids) -> dict:
    """ids that occur more than once, with their counts."""
    seen: dict = {}
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
    return {i: n for i, n in seen.items() if n > 1}


def assigned_partitions(log: str, topic_name: str) -> set[int] | None:
    """The partitions of ``topic_name`` in the worker's latest Faust assignment table (None: none yet)."""
    import re

    found = None
    for block in log.split("Setting newly assigned partitions")[1:]:
        table, _, group = block.partition("for group")
        if group.split()[:1] and group.split()[0].endswith("-ingest"):
            continue    # the ingest loop's own consumer group (streams.ingest), not Faust's
        match = re.search(re.escape(topic_name) + r"\s*\|\s*\{([^}]*)\}", table)
        parts: set[int] = set()
        if match:
            for item in match.group(1).split(","):
                lo, _, hi = item.strip().partition("-")
                parts.update(range(int(lo), int(hi or lo) + 1))
        found = parts
    return found
