"""Configuration, read in one place.

Precedence: built-in defaults < TOML file (``DRIFTLINE_CONFIG`` or ``--config``)
< environment variables. Nothing else in driftline reads ``os.environ``.

Example ``driftline.toml``::

    broker = "kafka://127.0.0.1:9092"
    redis_url = "redis://127.0.0.1:6379/0"

    [topics]
    predictions = "driftline.predictions"

    [defaults]                 # every model
    window_size = 1000
    reference_size = 2000

    [models.fraud]             # one model; any key of [defaults]
    task = "classification"
    window_size = 500
    feature_types = { country = "categorical", amount = "numeric" }
    drift = { alpha = 0.01, correction = "bh", min_effect_size = 0.1 }
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from detectors.settings import ModelSettings
from streams.config_check import ConfigError, check

# The worker's consumer fetches at most this per partition (consumer_max_fetch_size in
# streams/app.py), so any message the broker accepted and the worker can fetch is decoded.
CONSUMER_FETCH_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Topics:
    predictions: str = "driftline.predictions"
    labels: str = "driftline.labels"
    alerts: str = "driftline.alerts"
    retrain: str = "driftline.retrain"
    deadletter: str = "driftline.deadletter"


_PER_WORKER = ("web_host", "web_port", "web_enabled", "data_dir", "gc_thresholds")


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    app_id: str = "driftline"
    topics: Topics = field(default_factory=Topics)
    partitions: int = 4                  # for topics driftline creates (internal + state)
    replication_factor: int = 1
    producer_max_batch_size: int = 1     # bytes; 1 = one record per batch (exact table recovery on Tansu)
    max_message_bytes: int = CONSUMER_FETCH_BYTES   # a larger single event is dead-lettered; micro-batches are split
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_enabled: bool = True
    # /metrics: per-feature gauges (p-value, statistic, effect size, threshold) are opt-in and
    # capped, so a wide model cannot blow up the scrape (README, "Operating driftline")
    metrics_feature_gauges: bool = False
    metrics_max_feature_series: int = 2000
    history_windows: int = 1000          # window summaries kept per model version (`driftline history`)
    checkpoint_seconds: float = 2.0      # the monitor commits (checkpoint, deliver, ack) this often...
    checkpoint_max_seconds: float = 30.0 # ...checkpointing a changed model once it is due, at the latest after this
    max_models: int = 1000               # model keys one worker monitors; events of more are dead-lettered
    commit_interval: float = 2.8         # seconds between offset commits (what a crash re-reads at most)
    tick_seconds: float = 5.0            # idle models get a tick this often (closes stale windows)
    ingest_batch: int = 1000             # most input messages per ingest batch (getmany max_records)
    ingest_linger: float = 0.05          # seconds an ingest getmany waits for a first record
    # predictions and labels cross the internal topic as columns; false: as event dicts, which versions before
    # the columnar hop read (set it while a rolling upgrade still runs such workers)
    internal_columns: bool = True
    fetch_max_wait_ms: int = 100         # longest a consumer fetch waits on idle partitions (latency)
    shutdown_timeout: float = 20.0       # a stop that takes longer (broker unreachable) exits hard
    gc_thresholds: list = field(default_factory=lambda: [50_000, 50, 100])  # the worker's cyclic-GC thresholds ([]: CPython's); streams/gc_policy.py
    broker_credentials: dict = field(default_factory=dict)  # SASL/TLS, passed to the Kafka client
    # driftline.alerts / driftline.retrain are always written; these are the extra deliveries
    sinks: list = field(default_factory=lambda: [{"type": "redis"}])
    defaults: ModelSettings = field(default_factory=ModelSettings)
    models: dict = field(default_factory=dict)           # name -> overrides of defaults
    # name -> monitor shards, for a model too hot for one worker (README, "Scaling")
    shards: dict = field(default_factory=dict)
    # Faust's data folder; "" = a per-user state folder (never the working directory), see load()
    data_dir: str = ""
    source: str = "defaults"

    def for_model(self, model: str) -> ModelSettings:
        return self.defaults.merged(self.models.get(self.model_of(model), {}))

    def monitor_key(self, model: str, prediction_id: str) -> str:
        """The key an event is monitored under: the model, or ``model#shard`` for a sharded model.

        The shard is a stable hash of the prediction id, so a prediction and its label
        meet in the same shard, and each shard sees a random share of the traffic.

        >>> s = Settings(shards={"fraud": 4})
        >>> s.monitor_key("credit", "a81f"), s.monitor_key("fraud", "a81f")
        ('credit', 'fraud#1')
        >>> s.model_of("fraud#1"), s.model_of("credit")
        ('fraud', 'credit')
        """
        shards = int(self.shards.get(model, 1))
        return model if shards <= 1 else f"{model}#{zlib.crc32(prediction_id.encode()) % shards}"

    def model_of(self, key: str) -> str:
        base, sep, shard = key.rpartition("#")
        return base if sep and shard.isdigit() and int(self.shards.get(base, 1)) > 1 else key

    @property
    def version_hash(self) -> str:
        """Short hash of the effective configuration, carried by every alert (audit)."""
        # where this worker runs (its web port, data folder) is no part of how alerts are judged
        judged = {k: v for k, v in dataclasses.asdict(self).items() if k not in _PER_WORKER}
        payload = orjson.dumps(judged, option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.sha256(payload).hexdigest()[:12]

    @property
    def internal_topic(self) -> str:
        return f"{self.app_id}-monitor-events"

    @property
    def redis_prefix(self) -> str:
        """Every Redis key starts with this, so deployments sharing one Redis stay apart."""
        return self.app_id


def broker_credentials(settings: Settings):
    """SASL/TLS for a real cluster, from ``[broker_credentials]``; secrets never logged.

    ``mechanism = "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"`` with ``username`` and
    ``password`` (or ``password_env`` naming an environment variable), and
    optionally ``cafile`` for TLS (``ssl = true`` without SASL uses TLS only).
    """
    creds = dict(settings.broker_credentials)
    if not creds:
        return None
    import ssl

    import faust

    context = ssl.create_default_context(cafile=creds.get("cafile")) if creds.get("ssl", True) else None
    if creds.get("password_env"):
        creds["password"] = os.environ.get(creds["password_env"], "")
    mechanism = creds.get("mechanism")
    if not mechanism:
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=creds["username"], password=creds["password"],
                                 ssl_context=context, mechanism=mechanism)

_ENV = {
    "DRIFTLINE_BROKER": "broker",
    "DRIFTLINE_REDIS_URL": "redis_url",
    "DRIFTLINE_APP_ID": "app_id",
    "DRIFTLINE_WEB_HOST": "web_host",
    "DRIFTLINE_WEB_PORT": "web_port",
    "DRIFTLINE_PARTITIONS": "partitions",
    "DRIFTLINE_DATA_DIR": "data_dir",
}


def load(path: str | os.PathLike | None = None, env: dict | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, a TOML file, the environment and explicit overrides.

    Every key is checked (streams.config_check): a problem raises :class:`ConfigError`
    naming the file, the key path and, for a typo, the key meant.
    """
    env = os.environ if env is None else env
    path = path or env.get("DRIFTLINE_CONFIG")
    data: dict[str, Any] = {}
    if path:
        data = _read_toml(Path(path))
        check(str(path), data)
    from_env: dict[str, Any] = {}
    for var, key in _ENV.items():
        if env.get(var):
            from_env[key] = _from_env(var, key, env[var])
    for var, value in env.items():  # DRIFTLINE_TOPIC_ALERTS=... renames one topic
        if var.startswith("DRIFTLINE_TOPIC_"):
            from_env.setdefault("topics", {})[var[len("DRIFTLINE_TOPIC_"):].lower()] = value
    check("environment (DRIFTLINE_*)", from_env)
    data.update({k: v for k, v in from_env.items() if k != "topics"})
    if "topics" in from_env:
        data["topics"] = {**data.get("topics", {}), **from_env["topics"]}
    given = {k: v for k, v in overrides.items() if v is not None}
    check("command line", given)
    data.update(given)
    if not data.get("data_dir"):
        data["data_dir"] = str(_state_home(env) / "driftline" / data.get("app_id", Settings.app_id))
    return _build(data, source=str(path) if path else "defaults")


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read it ({exc})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def _from_env(var: str, key: str, text: str):
    """An environment variable's text as the type of its setting."""
    kind = type(getattr(Settings, key))
    if kind is str:
        return text
    try:
        return kind(text)
    except ValueError:
        raise ConfigError([f"environment: {var}={text!r}: {key} must be {'an integer' if kind is int else 'a number'}"]) from None


def _state_home(env) -> Path:
    """The per-user state folder (XDG): $XDG_STATE_HOME, else ~/.local/state."""
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"])
    return Path(env.get("HOME") or Path.home()) / ".local" / "state"


def _build(data: dict, source: str) -> Settings:
    data = dict(data)
    topics = Topics(**data.pop("topics", {}))
    defaults = ModelSettings().merged(data.pop("defaults", {}))
    models = data.pop("models", {})
    for name, overrides in models.items():
        defaults.merged(overrides)  # validate early: a typo fails at start-up, not mid-stream
    for key in ("web_port", "partitions", "ingest_batch", "replication_factor", "metrics_max_feature_series",
                "history_windows"):
        if key in data:
            data[key] = int(data[key])
    # the Redis sink writes next to the status keys, under the same prefix, unless told otherwise
    prefix = data.get("app_id", Settings.app_id)
    data["sinks"] = [{"stream": f"{prefix}:alerts", "prefix": prefix, **s} if s.get("type") == "redis" else s
                     for s in data.get("sinks", Settings().sinks)]
    return Settings(topics=topics, defaults=defaults, models=models, source=source, **data)


_current: Settings | None = None


def current() -> Settings:
    """The process-wide settings (loaded on first use)."""
    global _current
    if _current is None:
        _current = load()
    return _current


def use(settings: Settings) -> Settings:
    """Install settings for this process (the CLI and tests call this before importing the app)."""
    global _current
    _current = settings
    return settings
