"""Shared pieces of the benchmarks: machine facts, services, seeded traffic, worker processes.

Everything binds to 127.0.0.1 (the embedded Tansu broker and a throw-away
redis-server); every process started here is stopped by its own PID.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson

# Not resolve(): run from a source snapshot whose bench/ is a symlink, ROOT is the snapshot.
ROOT = Path(os.path.abspath(__file__)).parents[1]
RESULTS = ROOT / "bench" / "results"
N_NUMERIC = 10
N_CATEGORICAL = 10
NUMERIC = [f"num_{i}" for i in range(N_NUMERIC)]
CATEGORICAL = [f"cat_{i}" for i in range(N_CATEGORICAL)]
FEATURES = NUMERIC + CATEGORICAL
LEVELS = np.array(["a", "b", "c", "d", "e"])
START_TS = 1_767_225_600.0


def source() -> str:
    """Which driftline code ran: a snapshot's commit, or the repository's HEAD (+ dirty flag)."""
    marker = ROOT / ".bench-commit"
    if marker.exists():
        return f"snapshot of commit {marker.read_text().strip()[:10]} at {ROOT}"
    with contextlib.suppress(Exception):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "detectors", "streams", "sinks"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return f"{head}{' + uncommitted changes' if dirty else ''} at {ROOT}"
    return str(ROOT)


def short_rev(ref: str) -> str:
    """``ref``'s short commit hash in this repository."""
    return subprocess.run(["git", "rev-parse", "--short", ref], capture_output=True, text=True,
                          cwd=ROOT).stdout.strip()


def extract_tree(ref: str, into: str, *paths: str) -> None:
    """The ``paths`` of commit ``ref`` written under ``into`` (a baseline to run side by side)."""
    archive = subprocess.run(["git", "archive", ref, *paths], capture_output=True, check=True, cwd=ROOT).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)


def write_results(out: str | Path, results: dict) -> None:
    """A side-by-side benchmark's results, with the load average at its end, written to ``out``."""
    results["load_after"] = os.getloadavg()
    Path(out).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"results -> {out}")


def run_json(runner: Path, *args) -> dict:
    """Run a bench runner script in a child process; its last stdout line is its JSON result."""
    done = subprocess.run([sys.executable, str(runner), *map(str, args)], check=True,
                          capture_output=True, text=True, cwd=str(ROOT))
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram": ram, "python": platform.python_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "source": source()}


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    print(f"results -> {path}")
    return path


# -- data ------------------------------------------------------------------------------------
def feature_matrix(n: int, seed: int, shift: dict | None = None):
    """10 normal numeric columns and 10 five-level categorical columns; shift: {column: std}."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(n, N_NUMERIC))
    cats = LEVELS[rng.choice(len(LEVELS), size=(n, N_CATEGORICAL), p=[0.4, 0.25, 0.15, 0.12, 0.08])]
    for name, amount in (shift or {}).items():
        numeric[:, NUMERIC.index(name)] += amount
    return numeric, cats


def predictions(n: int, model: str = "bench", seed: int = 1, offset: int = 0, shift: dict | None = None,
                version: str = "1", dt: float = 0.01):
    """(predictions, labels) as lists of dicts: 20 features, a score and a label for each."""
    numeric, cats = feature_matrix(n, seed, shift)
    rng = np.random.default_rng(seed + 1000)
    score = 1 / (1 + np.exp(-(numeric[:, 0] + 0.5 * numeric[:, 1])))
    label = (rng.random(n) < score).astype(int)
    num_rows = numeric.round(6).tolist()
    cat_rows = cats.tolist()
    preds, labels = [], []
    for i in range(n):
        pid = f"{model}-{seed}-{offset + i}"
        ts = START_TS + (offset + i) * dt
        features = dict(zip(NUMERIC, num_rows[i]))
        features.update(zip(CATEGORICAL, cat_rows[i]))
        s = float(round(score[i], 6))
        preds.append({"prediction_id": pid, "model": model, "model_version": version, "timestamp": ts,
                      "prediction": int(s >= 0.5), "score": s, "features": features})
        labels.append({"prediction_id": pid, "model": model, "label": int(label[i]), "timestamp": ts})
    return preds, labels


def encode(events: list, batch: int) -> list[bytes]:
    """One JSON object per message (batch=1) or JSON arrays of ``batch`` events."""
    if batch == 1:
        return [orjson.dumps(e) for e in events]
    return [orjson.dumps(events[i:i + batch]) for i in range(0, len(events), batch)]


# -- services --------------------------------------------------------------------------------
@contextlib.contextmanager
def services():
    """A Tansu broker and a redis-server on 127.0.0.1, stopped by PID on exit."""
    import signal

    from streams.embedded import start_broker, start_redis

    # SIGTERM (e.g. from `timeout`) must unwind through the finally blocks that stop our children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    broker = start_broker()
    try:
        redis = start_redis()
        try:
            yield broker, redis
        finally:
            redis.stop()
    finally:
        broker.stop()


def bootstrap(broker_url: str) -> str:
    return broker_url.split("://", 1)[-1]


def create_topics(broker_url: str, names, partitions: int = 4) -> None:
    from streams.topics import ensure_topics

    ensure_topics(broker_url, names, partitions)


def produce(broker_url: str, topic: str, values: list[bytes], key: bytes | None = None) -> float:
    """Publish pre-encoded values with librdkafka; returns seconds taken."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap(broker_url), "linger.ms": 5,
                         "message.max.bytes": 8_000_000, "batch.size": 4_000_000,
                         "queue.buffering.max.kbytes": 2_000_000})
    t0 = time.perf_counter()
    for value in values:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} messages left undelivered to {topic}")
    return time.perf_counter() - t0


# -- worker processes ------------------------------------------------------------------------
def worker_env(broker_url: str, redis_url: str, name: str | None = None, **extra) -> dict:
    from tests.integration.harness import isolated_env

    env = isolated_env(broker_url, redis_url, name=name or uuid.uuid4().hex[:8], **extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


def topic_of(env: dict, what: str) -> str:
    return env[f"DRIFTLINE_TOPIC_{what.upper()}"]


class Child:
    """A Python module as a child process with a probe file; stopped by its PID only."""

    def __init__(self, module: str, env: dict, args=(), tag: str = "child", log_dir: Path | None = None):
        from streams.embedded import free_port

        log_dir = log_dir or RESULTS / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.probe = log_dir / f"{tag}-{uuid.uuid4().hex[:6]}.probe.json"
        self.env = {**env, "DRIFTLINE_WEB_PORT": str(free_port()), "BENCH_PROBE": str(self.probe)}
        self.log_path = self.probe.with_suffix("").with_suffix(".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_probe(self) -> dict:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self.probe.read_text())
        return {}

    def wait_probe(self, done, timeout: float, interval: float = 0.1) -> dict:
        """Poll the probe file until ``done(probe)``; raises if the child dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args} exited {self.proc.returncode}:\n{self.tail()}")
            probe = self.read_probe()
            if probe and done(probe):
                return probe
            time.sleep(interval)
        raise TimeoutError(f"probe not done after {timeout}s: {self.read_probe()}\n{self.tail()}")

    def rss_kib(self) -> int | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def stop(self, timeout: float = 20.0) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
