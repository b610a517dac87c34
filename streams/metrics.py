"""Prometheus metrics of a worker, read from its state when ``/metrics`` is scraped.

Almost everything a worker knows is already counted in its monitors (the checkpointed
``ModelMonitor`` of every model it owns) and in ``Worker.counts``. :class:`WorkerCollector`
turns those into metric families at scrape time, so a prediction costs no metrics call,
and a model that moves to another worker in a rebalance leaves this worker's ``/metrics``
with its monitor: its series disappear here and carry on, with the same values, there.

The few things no state holds (alerts at the moment they are sent, dead-letters by
reason) are ordinary prometheus-client instruments in :class:`Instruments`.

Conventions: the ``driftline_`` prefix, base units (seconds, ratios), ``_total`` counters,
histograms for durations; one :class:`CollectorRegistry` of driftline's own.
"""
from __future__ import annotations

import importlib.metadata
import platform
import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from detectors.alerts import ALERT_KINDS

# `_created` samples become series of their own in the text format: noise for every counter.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Kinds that are conditions (announced, re-announced, then resolved): one 0/1 gauge each.
CONDITION_KINDS = tuple(k for k in ALERT_KINDS if k not in ("performance", "comparison", "resolved"))

# Event time to send: live traffic takes seconds to a window; a backfill replays days.
LATENCY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0)

# Dead-letter reasons carry the offending field or value: grouped into a bounded set of labels.
_REASONS = (("empty", "empty"), ("message of", "too_large"), ("invalid JSON", "invalid_json"),
            ("processing error", "processing_error"), ("model limit", "model_limit"))

# Worker.counts keys -> (metric, help, label value or None)
_WORKER_COUNTERS = {
    "predictions": ("driftline_worker_events", "Events folded into state by this worker, by kind.", "prediction"),
    "labels": ("driftline_worker_events", "Events folded into state by this worker, by kind.", "label"),
    "alerts_sent": ("driftline_outputs_sent", "Alerts and retrain requests written to their topic.", "alert"),
    "retrain_sent": ("driftline_outputs_sent", "Alerts and retrain requests written to their topic.", "retrain"),
    "alerts_deduplicated": ("driftline_outputs_deduplicated",
                            "Outputs not sent again because an earlier worker had sent them.", None),
    "replayed_skipped": ("driftline_skipped_messages", "Messages already in the state, skipped, by reason.",
                         "replayed"),
    "redelivered_skipped": ("driftline_skipped_messages", "Messages already in the state, skipped, by reason.",
                            "redelivered"),
    "checkpoints": ("driftline_checkpoints", "State checkpoints written to the changelog.", None),
    "status_write_failures": ("driftline_redis_write_failures", "Background writes to Redis that failed.", None),
    "processing_errors": ("driftline_processing_errors", "Internal messages that raised and were dead-lettered.",
                          None),
    "log_restarts": ("driftline_log_restarts", "Internal partitions found recreated (their state restarted).",
                     None),
    "deadletter_deduplicated": ("driftline_deadletter_deduplicated",
                                "Dead letters not sent again because an earlier worker had sent them.", None),
    "models_rejected": ("driftline_models_rejected",
                        "Messages dead-lettered because the worker holds max_models models already.", None),
}
_LABEL_OF = {"driftline_worker_events": "kind", "driftline_outputs_sent": "kind",
             "driftline_skipped_messages": "reason"}


def deadletter_reason(reason: str) -> str:
    """The bounded label for a dead-letter reason.

    >>> deadletter_reason("invalid JSON: unexpected character"), deadletter_reason("timestamp must be finite")
    ('invalid_json', 'invalid_event')
    """
    for prefix, label in _REASONS:
        if reason.startswith(prefix):
            return label
    return "invalid_event"


def _version() -> str:
    try:
        return importlib.metadata.version("driftline")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Instruments:
    """What happens outside any monitor's state: counted as it happens (rare events only)."""

    def __init__(self, registry: CollectorRegistry):
        self.alerts = Counter("driftline_alerts", "Alerts sent, by kind and severity.", ["kind", "severity"],
                              registry=registry)
        self.alert_latency = Histogram(
            "driftline_alert_latency_seconds", "Event time of the evidence's end to the alert being sent.",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.deadletter = Counter("driftline_deadletter", "Messages sent to the dead-letter topic, by reason.",
                                  ["reason"], registry=registry)
        for label in {label for _, label in _REASONS} | {"invalid_event"}:
            self.deadletter.labels(label)   # every reason present from the start (rate() needs a 0)

    def sent(self, kind: str, record: dict, now: float | None = None) -> None:
        """An alert or retrain request was written to its topic."""
        if kind != "alert":
            return
        self.alerts.labels(record.get("kind", "unknown"), record.get("severity", "unknown")).inc()
        end = (record.get("window") or {}).get("end")
        if isinstance(end, (int, float)):
            self.alert_latency.observe(max(0.0, (time.time() if now is None else now) - end))

    def deadlettered(self, reason: str) -> None:
        self.deadletter.labels(deadletter_reason(reason)).inc()


class WorkerCollector:
    """Metric families from a worker's monitors and counters, built at each scrape.

    ``worker`` needs ``monitors`` (model -> (partition, ModelMonitor)), ``counts`` and
    ``router.stats()``; ``extra_counts`` returns more counters (the gap filler's).
    """

    def __init__(self, worker, settings, extra_counts: Callable[[], dict] = dict):
        self.worker = worker
        self.settings = settings
        self.extra_counts = extra_counts

    def describe(self):
        return []   # built per scrape: nothing to check at registration

    def collect(self):
        now = time.time()
        yield from self._info()
        yield from self._worker_families()
        yield from self._sink_families()
        yield from self._model_families(now)

    def _info(self):
        info = GaugeMetricFamily("driftline_build_info", "driftline build and configuration (always 1).",
                                 labels=["version", "python", "app_id", "config_version"])
        info.add_metric([_version(), platform.python_version(), self.settings.app_id,
                         self.settings.version_hash], 1)
        yield info

    def _worker_families(self):
        families: dict[str, CounterMetricFamily] = {}
        counts = self.worker.counts
        for key, (name, doc, label) in _WORKER_COUNTERS.items():
            family = families.get(name)
            if family is None:
                family = families[name] = CounterMetricFamily(
                    name, doc, labels=[_LABEL_OF[name]] if name in _LABEL_OF else None)
            value = counts.get(key, 0)
            family.add_metric([label] if label else [], value)
        gaps = CounterMetricFamily("driftline_input_gaps", "Input offsets missing from a fetch, re-read directly.")
        gaps.add_metric([], self.extra_counts().get("input_gaps", 0))
        families["driftline_input_gaps"] = gaps
        owned = GaugeMetricFamily("driftline_models_owned", "Models (or model shards) whose state this worker holds.")
        owned.add_metric([], len(self.worker.monitors))
        yield from families.values()
        yield owned

    def _sink_families(self):
        deliveries = CounterMetricFamily("driftline_sink_deliveries", "Sink delivery attempts, by sink and outcome.",
                                         labels=["sink", "outcome"])
        pending = GaugeMetricFamily("driftline_sink_pending", "Records waiting in a sink's buffer.", labels=["sink"])
        for sink, stats in self.worker.router.stats().items():
            deliveries.add_metric([sink, "delivered"], stats["delivered"])
            deliveries.add_metric([sink, "failed"], stats["failed_attempts"])
            deliveries.add_metric([sink, "dropped"], stats["dropped"])
            pending.add_metric([sink], stats["pending"])
        yield deliveries
        yield pending

    def _model_families(self, now: float):
        mv = ["model", "model_version"]
        events = CounterMetricFamily("driftline_events", "Predictions and joined labels in a model version's state.",
                                     labels=[*mv, "kind"])
        windows = CounterMetricFamily("driftline_windows_closed", "Windows tested.", labels=mv)
        alerts = CounterMetricFamily("driftline_model_alerts", "Alerts raised (all kinds).", labels=mv)
        active = GaugeMetricFamily("driftline_active_condition",
                                   "1 while a condition of this kind is active, 0 once resolved.", labels=[*mv, "kind"])
        rolling = GaugeMetricFamily("driftline_rolling_metric", "Rolling performance metric on labelled events.",
                                    labels=[*mv, "metric"])
        estimated = GaugeMetricFamily("driftline_estimated_metric",
                                      "Performance estimated without labels (CBPE) on the last window.",
                                      labels=[*mv, "metric"])
        join = GaugeMetricFamily("driftline_label_join_ratio", "Share of predictions joined with a label.", labels=mv)
        test_time = HistogramMetricFamily("driftline_window_test_duration_seconds",
                                          "Time to test one window (all checks).", labels=mv)
        expired = CounterMetricFamily("driftline_expired_predictions",
                                      "Predictions whose label never came: past the label TTL, or evicted by the cap.",
                                      labels=["model", "reason"])
        expired_labels = CounterMetricFamily("driftline_expired_labels",
                                             "Labels whose prediction never came.", labels=["model"])
        pending = GaugeMetricFamily("driftline_pending_labels", "Predictions waiting for their label.",
                                    labels=["model"])
        delay = HistogramMetricFamily("driftline_label_delay_seconds",
                                      "Label time minus prediction time, of joined labels.", labels=["model"])
        last_event = GaugeMetricFamily("driftline_last_event_timestamp_seconds",
                                       "Event time of the newest prediction.", labels=["model"])
        freshness = GaugeMetricFamily("driftline_event_freshness_seconds",
                                      "Now minus the event time of the newest prediction.", labels=["model"])
        latency = GaugeMetricFamily("driftline_latency_ms", "Serving latency percentiles (latency_ms) of the last "
                                    "closed window and over the rolling sample.",
                                    labels=[*mv, "quantile", "scope"])
        kpi = GaugeMetricFamily("driftline_kpi", "A business KPI's rolling mean and its baseline mean.",
                                labels=[*mv, "kpi", "stat"])
        invalid = CounterMetricFamily("driftline_invalid_values", "Latencies and KPI values left out as invalid "
                                      "(negative/non-finite, not a number, or a KPI not configured).",
                                      labels=[*mv, "field"])
        features = _FeatureGauges(self.settings) if self.settings.metrics_feature_gauges else None
        for model, (_partition, monitor) in list(self.worker.monitors.items()):
            for version, vm in monitor.versions.items():
                labels = [model, version]
                counts = vm.counts
                events.add_metric([*labels, "prediction"], counts["predictions"])
                events.add_metric([*labels, "label"], counts["labelled"])
                windows.add_metric(labels, counts["windows"])
                alerts.add_metric(labels, counts["alerts"])
                firing = {kind for kind, _key in vm.lifecycle.active()}
                for kind in CONDITION_KINDS:
                    active.add_metric([*labels, kind], 1 if kind in firing else 0)
                for name, value in vm.rolling_metrics().items():
                    if value is not None:
                        rolling.add_metric([*labels, name], value)
                if vm.estimate.get("accuracy") is not None:
                    estimated.add_metric([*labels, "accuracy"], vm.estimate["accuracy"])
                if counts["predictions"]:
                    join.add_metric(labels, counts["labelled"] / counts["predictions"])
                _add_histogram(test_time, labels, vm.window_test_seconds)
                _add_outcomes(latency, kpi, invalid, labels, vm)
                if features is not None:
                    features.add(labels, vm.last_window.get("drift") or {})
            join_counts = monitor.counts
            expired.add_metric([model, "ttl"], join_counts["expired_unlabelled"])
            expired.add_metric([model, "evicted"], join_counts["evicted_unlabelled"])
            expired_labels.add_metric([model], join_counts["expired_labels"])
            pending.add_metric([model], len(monitor._pending))
            _add_histogram(delay, [model], monitor.label_delay)
            if monitor.clock:
                last_event.add_metric([model], monitor.clock)
                freshness.add_metric([model], now - monitor.clock)
        yield from (events, windows, alerts, active, rolling, estimated, join, test_time, expired, expired_labels,
                    pending, delay, last_event, freshness, latency, kpi, invalid)
        if features is not None:
            yield from features.families()


def _add_outcomes(latency, kpi, invalid, labels: list, vm) -> None:
    """Latency percentiles and KPI means of one version (issue 15)."""
    last = vm.latency.last
    for scope, values in (("window", last.percentiles if last is not None else {}),
                          ("rolling", vm.latency.rolling_percentiles())):
        for quantile, value in values.items():
            if value is not None:
                latency.add_metric([*labels, quantile, scope], value)
    for name, entry in vm.kpis.summary().items():
        for stat, value in (("mean", entry.get("mean")), ("baseline", (entry.get("baseline") or {}).get("mean"))):
            if value is not None:
                kpi.add_metric([*labels, name, stat], value)
    invalid.add_metric([*labels, "latency_ms"], vm.latency.counts["invalid"])
    invalid.add_metric([*labels, "kpis"], vm.kpis.counts["invalid"])
    invalid.add_metric([*labels, "kpis_unknown"], vm.kpis.counts["unknown"])


def _add_histogram(family: HistogramMetricFamily, labels: list, counts) -> None:
    cumulative = counts.cumulative()
    buckets = [(repr(float(bound)), n) for bound, n in zip(counts.bounds, cumulative)]
    family.add_metric(labels, buckets + [("+Inf", cumulative[-1])], sum_value=counts.total)


class _FeatureGauges:
    """Per-feature test results of the last window, at most ``metrics_max_feature_series`` features."""

    FIELDS = (("p_value", "driftline_feature_p_value", "p-value of the feature's drift test, last window."),
              ("statistic", "driftline_feature_statistic", "Statistic of the feature's drift test, last window."),
              ("effect_size", "driftline_feature_effect_size", "Effect size of the feature's drift, last window."),
              ("threshold", "driftline_feature_threshold", "Threshold the feature's test is held to."))

    def __init__(self, settings):
        self.left = settings.metrics_max_feature_series
        self.dropped = 0
        labels = ["model", "model_version", "feature", "detector"]
        self._families = [(field, GaugeMetricFamily(name, doc, labels=labels)) for field, name, doc in self.FIELDS]

    def add(self, labels: list, drift: dict) -> None:
        for feature, result in drift.items():
            if self.left <= 0:
                self.dropped += 1
                continue
            self.left -= 1
            for field, family in self._families:
                value = result.get(field)
                if value is not None:
                    family.add_metric([*labels, feature, result.get("detector", "")], value)

    def families(self):
        for _, family in self._families:
            yield family
        dropped = GaugeMetricFamily("driftline_feature_series_dropped",
                                    "Features left out of the per-feature gauges by metrics_max_feature_series.")
        dropped.add_metric([], self.dropped)
        yield dropped


class Metrics:
    """driftline's own registry: the worker collector plus the instruments."""

    def __init__(self, worker, settings, extra_counts: Callable[[], dict] = dict):
        self.registry = CollectorRegistry(auto_describe=False)
        self.instruments = Instruments(self.registry)
        self.registry.register(WorkerCollector(worker, settings, extra_counts))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
