"""Closed windows' metrics into MLflow: one experiment per model, one run per model version.

Each window the worker tests becomes one step of its version's run (step = window index, timestamp =
the window's event-time end): rolling and estimated performance, the drift count and each tested
feature's effect size and p-value, and, when the window summary has them, latency percentiles and
KPIs. Alerts and retrain requests become run tags (``driftline.alert.<kind>``, ``driftline.retrain``)
and lines of the run's note, so they show beside the curves in MLflow's UI.

The tracking client is synchronous (HTTP with retries), so it runs on one thread of its own; the
router's rules make the rest safe: a bounded buffer, retries with backoff, counted failures, and an
unreachable server costs the worker nothing but that buffer. Needs ``pip install 'driftline[mlflow]'``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import re
from numbers import Real

from sinks.base import DeliveryError, WindowClosed, describe_error, redact_url

_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
NOTE_LINES = 50
BATCH = 1000          # MLflow's log-batch limit on metrics per request


def metric_key(*parts: str) -> str:
    """An MLflow metric or tag key (letters, digits, ``_ - . /`` and spaces; at most 250 characters).

    >>> metric_key("effect_size", "zip code (5)")
    'effect_size.zip code _5_'
    """
    return _KEY.sub("_", ".".join(str(p) for p in parts))[:250]


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _flatten(prefix: str, value, out: dict) -> None:
    """Numeric leaves of nested dicts as ``prefix.key.subkey`` (latency percentiles, KPI summaries)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, list) and len(value) == 2 and prefix.endswith(".ci95"):   # a KPI mean's interval
        _flatten(f"{prefix}_low", value[0], out)
        _flatten(f"{prefix}_high", value[1], out)
    elif (number := _number(value)) is not None:
        out[metric_key(prefix)] = number


def window_metrics(summary: dict) -> dict[str, float]:
    """What one window summary logs: ``{key: value}``, only finite numbers.

    >>> window_metrics({"index": 2, "n": 500, "metrics": {"accuracy": 0.9, "f1": None},
    ...                 "estimate": {"accuracy": 0.88, "window": 2}, "drifted_features": ["x"],
    ...                 "features": {"x": {"effect_size": 0.4, "p_value": 1e-6}}, "alerts": []})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'window.n': 500.0, 'window.alerts': 0.0, 'rolling.accuracy': 0.9, 'estimated.accuracy': 0.88,
     'drift.drifted_features': 1.0, 'drift.features_tested': 1.0, 'effect_size.x': 0.4, 'p_value.x': 1e-06}
    """
    out: dict[str, float] = {}
    for key, value in (("window.n", summary.get("n")), ("window.alerts", len(summary.get("alerts") or []))):
        if (number := _number(value)) is not None:
            out[key] = number
    for name, value in (summary.get("metrics") or {}).items():
        if (number := _number(value)) is not None:
            out[metric_key("rolling", name)] = number
    for name, value in (summary.get("estimate") or {}).items():
        if name != "window" and (number := _number(value)) is not None:
            out[metric_key("estimated", name)] = number
    features = summary.get("features") or {}
    out["drift.drifted_features"] = float(len(summary.get("drifted_features") or []))
    out["drift.features_tested"] = float(len(features))
    for name, result in features.items():
        for field in ("effect_size", "p_value"):
            if (number := _number((result or {}).get(field))) is not None:
                out[metric_key(field, name)] = number
    for section in ("latency", "kpis"):           # present once the window summary carries them
        if summary.get(section):
            _flatten(section, summary[section], out)
    return out


class MlflowSink:
    """Log window summaries and alerts to an MLflow tracking server (``tracking_uri``).

    ``experiment_prefix`` + model name is the experiment; the run of a version is found by its
    ``driftline.model_version`` tag (or created), so a restarted worker continues the same run.
    """

    takes_windows = True

    def __init__(self, tracking_uri: str, experiment_prefix: str = "driftline/", timeout: float = 10.0,
                 retries: int = 0, name: str | None = None):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ValueError("the mlflow sink needs the MLflow client: pip install 'driftline[mlflow]'") from None
        # The client's HTTP timeout and retries come from these variables only; its default retries
        # back off for minutes, holding the sink's thread. The router retries with backoff instead.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(math.ceil(timeout))))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
        self.tracking_uri = tracking_uri
        self.experiment_prefix = experiment_prefix
        self.timeout = timeout
        self.retries = retries
        self.name = name or "mlflow"
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._runs: dict[tuple[str, str], str] = {}
        self._notes: dict[str, list[str]] = {}
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"driftline-{self.name}")

    async def __call__(self, item) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._deliver, item)
        except DeliveryError:
            raise
        except Exception as exc:   # MlflowException, requests' errors: one secret-free line
            raise DeliveryError(f"mlflow at {redact_url(self.tracking_uri)}: {describe_error(exc)}") from None

    # -- on the sink's thread --------------------------------------------------------------
    def _deliver(self, item) -> None:
        from mlflow.entities import Metric, RunTag

        if isinstance(item, WindowClosed):
            summary = item.summary
            run_id = self._run(summary["model"], str(summary["model_version"]))
            stamp = int(round(float(summary.get("end") or 0.0) * 1000))
            step = int(summary["index"])
            metrics = [Metric(key, value, stamp, step) for key, value in window_metrics(summary).items()]
            for i in range(0, len(metrics), BATCH):
                self._client.log_batch(run_id, metrics=metrics[i:i + BATCH])
            return
        record = item
        run_id = self._run(record["model"], str(record["model_version"]))
        if record.get("kind") == "retrain":
            tags = {"driftline.retrain": f"{record.get('event_id')}: {record.get('reason', '')}"}
            line = f"retrain requested ({record.get('event_id')}): {record.get('reason', '')}"
        else:
            tags = {metric_key("driftline.alert", record.get("kind", "alert")):
                    f"{record.get('alert_id')}: {record.get('message', '')}"}
            window = record.get("window") or {}
            line = (f"{record.get('severity', '').upper()} {record.get('kind')} (window {window.get('index')}, "
                    f"alert {record.get('alert_id')}): {record.get('message', '')}")
        lines = self._notes.setdefault(run_id, [])
        lines.append(" ".join(line.split()))
        del lines[:-NOTE_LINES]
        tags["mlflow.note.content"] = "\n".join(lines)
        self._client.log_batch(run_id, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])

    def _run(self, model: str, version: str) -> str:
        key = (model, version)
        if key in self._runs:
            return self._runs[key]
        name = f"{self.experiment_prefix}{model}"
        experiment = self._client.get_experiment_by_name(name)
        experiment_id = (experiment.experiment_id if experiment is not None else
                         self._client.create_experiment(name, tags={"driftline.model": model}))
        found = self._client.search_runs([experiment_id], filter_string=f"tags.`driftline.model_version` = '{version}'",
                                         max_results=1, order_by=["attributes.start_time ASC"])
        if found:
            run = found[0]
            note = run.data.tags.get("mlflow.note.content")
            self._notes[run.info.run_id] = note.splitlines()[-NOTE_LINES:] if note else []
        else:
            run = self._client.create_run(experiment_id, run_name=f"{model} v{version}",
                                          tags={"driftline.model": model, "driftline.model_version": version})
        self._runs[key] = run.info.run_id
        return run.info.run_id

    async def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"MlflowSink(tracking_uri={redact_url(self.tracking_uri)!r}, name={self.name!r})"
