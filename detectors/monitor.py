"""The per-model monitor: join, online metrics, drift windows and alerts. Pure: no I/O.

One :class:`ModelMonitor` per model holds every version of it and the label join
(a label carries ``model``, so a prediction and its label meet in the same
monitor whichever arrives first). Everything here is plain Python, numpy and
river, and picklable: the stream layer checkpoints a monitor as bytes and gets
exactly this state back after a crash or a rebalance.

Per-event work is an append to column buffers and a dict look-up; the
statistical tests run once per window on numpy arrays.
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque

from river import metrics, utils

from detectors.alerts import AlertLifecycle, make_alert, make_retrain_request
from detectors.concept import make_concept_detector
from detectors.profile import ReferenceProfile
from detectors.settings import ModelSettings
from detectors.suite import WindowSettings, evaluate_window

PREDICTION = "__prediction__"
SCORE = "__score__"
OUTPUT_COLUMNS = (PREDICTION, SCORE)


class ColumnBuffer:
    """Rows appended as columns (one list per name), so a window becomes arrays in one step.

    >>> buf = ColumnBuffer()
    >>> buf.append({"a": 1, "b": "x"}); buf.append({"a": 2, "c": True})
    >>> buf.columns()
    {'a': [1, 2], 'b': ['x', None], 'c': [None, True]}
    """

    def __init__(self, names=()):
        self._columns: dict[str, list] = {name: [] for name in names}
        self.n = 0

    def append(self, row: dict) -> None:
        columns = self._columns
        for name, column in columns.items():
            column.append(row.get(name))
        if len(row) > len(columns) or any(name not in columns for name in row):
            for name, value in row.items():
                if name not in columns:
                    columns[name] = [None] * self.n + [value]
        self.n += 1

    def columns(self) -> dict[str, list]:
        return self._columns

    def clear(self) -> None:
        for column in self._columns.values():
            column.clear()
        self.n = 0


def _infer_task(prediction, score) -> str:
    if score is not None or isinstance(prediction, (str, bool)):
        return "classification"
    if float(prediction) in (0.0, 1.0):
        return "classification"
    return "regression"


def _as_class(value):
    """Labels and predictions compared as classes: 1/1.0/True are one class."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value in (0, 1) and not isinstance(value, str):
        return bool(value)
    return value


def _metric_suite(task: str, window: int) -> tuple[dict, dict, str]:
    """Overall metrics, rolling metrics and the name of the primary metric."""
    if task == "classification":
        overall = {"accuracy": metrics.Accuracy(), "f1": metrics.F1(), "roc_auc": metrics.ROCAUC(),
                   "log_loss": metrics.LogLoss()}
        rolling = {"accuracy": utils.Rolling(metrics.Accuracy, window_size=window),
                   "f1": utils.Rolling(metrics.F1, window_size=window),
                   "log_loss": utils.Rolling(metrics.LogLoss, window_size=window)}
        return overall, rolling, "accuracy"
    overall = {"mae": metrics.MAE(), "rmse": metrics.RMSE(), "r2": metrics.R2()}
    rolling = {"mae": utils.Rolling(metrics.MAE, window_size=window),
               "rmse": utils.Rolling(metrics.RMSE, window_size=window)}
    return overall, rolling, "mae"


def _metric_value(metric) -> float | None:
    try:
        value = float(metric.get())
    except (ZeroDivisionError, ValueError, TypeError):
        return None
    return value if math.isfinite(value) else None


class VersionMonitor:
    """Reference, windows, metrics and alert lifecycle of one model version."""

    def __init__(self, model: str, version: str, settings: ModelSettings, config_version: str = ""):
        self.model = model
        self.version = version
        self.settings = settings
        self.config_version = config_version
        self.window_settings = WindowSettings.from_dict(settings.drift)
        self.task = None if settings.task == "auto" else settings.task
        self.reference: ReferenceProfile | None = None
        self.reference_info: dict = {}
        self._reference_rows = ColumnBuffer()
        self.window = ColumnBuffer()
        self.window_index = 0
        self._window_start = self._window_end = None
        self._window_offsets = [None, None]
        self._first_tick = self._first_tick_window = None
        self._score_out_of_range = 0
        self.lifecycle = AlertLifecycle(settings.realert_windows, settings.resolve_windows)
        self.concept = make_concept_detector(settings.concept_detector, **settings.concept_params)
        self._metrics = self._rolling = None
        self._primary = None
        self._baseline_metric = None
        self.baseline: float | None = None
        self.counts = {"predictions": 0, "labelled": 0, "windows": 0, "alerts": 0,
                       "score_out_of_range": 0, "retrain_requests": 0, "retrain_suppressed": 0}
        self.last_window: dict = {}
        self.last_alerts: deque = deque(maxlen=10)
        self.last_retrain_at: float | None = None
        self.suppressed_retrains: deque = deque(maxlen=20)
        self.deployed_at: float | None = None

    # -- reference ---------------------------------------------------------------
    def set_reference(self, profile: ReferenceProfile, source: str) -> None:
        self.reference = profile
        self.reference_info = {"reference_id": profile.reference_id, "source": source, "n": profile.n}
        self.window = ColumnBuffer(profile.features)

    def _build_reference(self) -> None:
        n = self._reference_rows.n
        profile = ReferenceProfile.from_columns(
            self._reference_rows.columns(), kinds=self.settings.feature_types,
            reference_id=f"{self.model}:{self.version}:first-{n}")
        self._reference_rows = ColumnBuffer()
        self.set_reference(profile, source="first_predictions")

    # -- predictions -------------------------------------------------------------
    def add_prediction(self, event: dict, offset, out: list) -> bool:
        """Append one validated prediction; returns True when it belongs to the reference period."""
        if self.task is None:
            self.task = _infer_task(event["prediction"], event["score"])
        if self._metrics is None:
            self._metrics, self._rolling, self._primary = _metric_suite(self.task, self.settings.performance_window)
            self._baseline_metric = _metric_suite(self.task, 1)[0][self._primary]
        ts = event["timestamp"]
        if self.deployed_at is None:
            self.deployed_at = ts
        self.counts["predictions"] += 1
        row = dict(event["features"])
        row[PREDICTION] = event["prediction"]
        row[SCORE] = event["score"]
        score = event["score"]
        if score is not None and not 0.0 <= score <= 1.0:
            self._score_out_of_range += 1
            self.counts["score_out_of_range"] += 1
        if self.reference is None:
            self._reference_rows.append(row)
            if self._reference_rows.n >= self.settings.reference_size:
                self._build_reference()
            return True
        if self.window.n == 0:
            self._window_start = self._window_end = ts
            self._window_offsets[0] = offset
        self.window.append(row)
        if ts > self._window_end:
            self._window_end = ts
        elif ts < self._window_start:
            self._window_start = ts
        self._window_offsets[1] = offset
        if self.window.n >= self.settings.window_size:
            self.close_window(out)
        else:
            self.maybe_close_by_time(ts, out)
        return False

    def on_tick(self, now: float, out: list) -> None:
        if self.reference is None or not self.window.n:
            self._first_tick = None
            return
        if self._first_tick is None or self._first_tick_window != self.window_index:
            self._first_tick, self._first_tick_window = now, self.window_index
        elif (now - self._first_tick >= self.settings.window_seconds
              and self.window.n >= self.settings.min_window_size):
            self.close_window(out)

    def maybe_close_by_time(self, now: float, out: list) -> None:
        if (self.window.n >= self.settings.min_window_size and self._window_start is not None
                and now - self._window_start >= self.settings.window_seconds):
            self.close_window(out)

    # -- windows -----------------------------------------------------------------
    def _window_bounds(self) -> dict:
        return {"index": self.window_index, "start": self._window_start, "end": self._window_end,
                "n": self.window.n, "offsets": {"first": self._window_offsets[0], "last": self._window_offsets[1]}}

    def close_window(self, out: list) -> None:
        report = evaluate_window(self.reference, self.window.columns(), self.window_settings)
        bounds = self._window_bounds()
        drifted = {"input_drift": {}, "prediction_drift": {}}
        for result in report.drifted:
            kind = "prediction_drift" if result.feature in OUTPUT_COLUMNS else "input_drift"
            best = drifted[kind].get(result.feature)
            if best is None or (result.p_value or 0.0) < (best.p_value or 0.0):
                drifted[kind][result.feature] = result
        quality = {}
        if self._score_out_of_range:
            quality[SCORE] = self._score_out_of_range
        for kind, results in drifted.items():
            announce, resolved = self.lifecycle.observe(self.window_index, kind, set(results))
            if announce:
                self._drift_alert(kind, sorted(results.values(), key=lambda r: (r.p_value or 0.0, -(r.effect_size or 0))),
                                  report, bounds, out)
            for feature in resolved:
                self._resolved_alert(kind, feature, bounds, out)
        announce, resolved = self.lifecycle.observe(self.window_index, "data_quality", set(quality))
        if announce:
            n = self.window.n
            self._emit(out, make_alert(
                model=self.model, model_version=self.version, kind="data_quality", severity="warning",
                detector="guardrail.score_range", feature=SCORE, statistic=quality[SCORE] / n, p_value=None,
                threshold=0.0, window=bounds, reference=self.reference_info,
                evidence={"score_out_of_range": quality[SCORE], "n": n, "expected_range": [0.0, 1.0]},
                id_parts=(self.window_index, "score_range"), config_version=self.config_version,
                message=f"{quality[SCORE]} of {n} scores outside [0, 1]"))
        for feature in resolved:
            self._resolved_alert("data_quality", feature, bounds, out)
        self.last_window = {
            **bounds,
            "drift": {r.feature: {"detector": r.detector, "statistic": r.statistic, "p_value": r.p_value,
                                  "effect_size": r.effect_size, "drifted": r.drifted}
                      for r in report.results if r.detector in ("ks", "chi_squared")},
            "drifted_features": sorted({r.feature for r in report.drifted}),
        }
        self.counts["windows"] += 1
        self.window_index += 1
        self.window.clear()
        self._window_start = self._window_end = None
        self._window_offsets = [None, None]
        self._score_out_of_range = 0

    def _drift_alert(self, kind: str, results: list, report, bounds: dict, out: list) -> None:
        top = results[0]
        effect = max((r.effect_size or 0.0) for r in results)
        severity = "critical" if effect >= 2 * self.window_settings.min_effect_size or len(results) >= 3 else "warning"
        evidence = {
            r.feature: {
                "detector": r.detector, "statistic": r.statistic, "p_value": r.p_value,
                "threshold": r.threshold, "effect_size": r.effect_size, "effect_name": r.effect_name,
                "reference": self.reference.features[r.feature].summary if r.feature in self.reference.features else None,
                "current": report.summaries.get(r.feature), **{k: v for k, v in r.evidence.items() if k not in ("reference", "current")},
            } for r in results
        }
        names = [r.feature for r in results]
        self._emit(out, make_alert(
            model=self.model, model_version=self.version, kind=kind, severity=severity, detector=top.detector,
            feature=top.feature, features=names, statistic=top.statistic, p_value=top.p_value,
            threshold=top.threshold, window=bounds, reference=self.reference_info, evidence=evidence,
            id_parts=(self.window_index, ",".join(sorted(names))), config_version=self.config_version,
            message=f"{kind.replace('_', ' ')} in {', '.join(names)} (window {self.window_index}, n={bounds['n']})"))

    def _resolved_alert(self, kind: str, feature: str, bounds: dict, out: list) -> None:
        self._emit(out, make_alert(
            model=self.model, model_version=self.version, kind="resolved", severity="info", detector="lifecycle",
            feature=feature, statistic=None, p_value=None, threshold=None, window=bounds,
            reference=self.reference_info, evidence={"resolves": kind, "clear_windows": self.settings.resolve_windows},
            id_parts=(self.window_index, kind, feature), config_version=self.config_version,
            message=f"{kind.replace('_', ' ')} in {feature} cleared for {self.settings.resolve_windows} windows"))

    # -- labels ------------------------------------------------------------------
    def add_label(self, prediction, score, label, ts: float, out: list) -> None:
        self.counts["labelled"] += 1
        if self.task == "classification":
            y_true, y_pred = _as_class(label), _as_class(prediction)
            error = float(y_true != y_pred)
            for name, metric in self._metrics.items():
                if name in ("roc_auc", "log_loss"):
                    if score is None or not isinstance(y_true, bool) or not 0.0 <= score <= 1.0:
                        continue
                    metric.update(y_true, score)
                else:
                    metric.update(y_true, y_pred)
            for name, metric in self._rolling.items():
                if name == "log_loss":
                    if score is not None and isinstance(y_true, bool) and 0.0 <= score <= 1.0:
                        metric.update(y_true, score)
                else:
                    metric.update(y_true, y_pred)
            baseline_pair = (y_true, y_pred)
        else:
            try:
                y_true, y_pred = float(label), float(prediction)
            except (TypeError, ValueError):
                return
            error = abs(y_true - y_pred)
            for metric in (*self._metrics.values(), *self._rolling.values()):
                metric.update(y_true, y_pred)
            baseline_pair = (y_true, y_pred)
        if self.baseline is None:
            self._baseline_metric.update(*baseline_pair)
            if self.counts["labelled"] >= self.settings.performance_window:
                self.baseline = _metric_value(self._baseline_metric)
        self.concept.update(error)
        if self.concept.drift_detected and self.baseline is not None:
            self._check_performance(ts, out)

    def _check_performance(self, ts: float, out: list) -> None:
        rolling = _metric_value(self._rolling[self._primary])
        if rolling is None:
            return
        tol = self.settings.performance_tolerance
        bigger_is_better = self._rolling[self._primary].bigger_is_better
        gap = (self.baseline - rolling) if bigger_is_better else (rolling - self.baseline) / max(abs(self.baseline), 1e-12)
        if gap <= tol:
            return
        severity = "critical" if gap > 2 * tol else "warning"
        n = self.counts["labelled"]
        alert = make_alert(
            model=self.model, model_version=self.version, kind="performance", severity=severity,
            detector=f"concept.{self.concept.name}+{self._primary}", feature=None, statistic=rolling,
            p_value=None, threshold=(self.baseline - tol) if bigger_is_better else self.baseline * (1 + tol),
            window={"index": self.window_index, "labelled": n, "size": self.settings.performance_window,
                    "end": ts, "start": None, "n": self.settings.performance_window},
            reference=self.reference_info,
            evidence={"metric": self._primary, "baseline": self.baseline, "rolling": rolling, "gap": gap,
                      "tolerance": tol, "rolling_metrics": self.rolling_metrics()},
            id_parts=("labelled", n), config_version=self.config_version,
            message=f"{self._primary} {rolling:.3f} vs baseline {self.baseline:.3f} ({self.concept.name} fired)")
        self._emit(out, alert)
        self._request_retrain([alert["alert_id"]], f"performance {severity}: {alert['message']}", ts, out)

    def _request_retrain(self, alert_ids: list, reason: str, ts: float, out: list) -> None:
        data_range = {"since": self.deployed_at, "until": ts, "model_version": self.version}
        n = self.counts["labelled"]
        if self.last_retrain_at is not None and ts - self.last_retrain_at < self.settings.retrain_min_interval:
            self.counts["retrain_suppressed"] += 1
            self.suppressed_retrains.append({"at": ts, "reason": reason, "alert_ids": alert_ids})
            return
        self.last_retrain_at = ts
        self.counts["retrain_requests"] += 1
        out.append(("retrain", make_retrain_request(
            model=self.model, model_version=self.version, reason=reason, alert_ids=alert_ids,
            data_range=data_range, id_parts=("labelled", n))))

    # -- output ------------------------------------------------------------------
    def _emit(self, out: list, alert: dict) -> None:
        self.counts["alerts"] += 1
        self.last_alerts.append({k: alert[k] for k in ("alert_id", "kind", "severity", "feature", "message", "created_at")})
        out.append(("alert", alert))

    def rolling_metrics(self) -> dict:
        return {name: _metric_value(m) for name, m in (self._rolling or {}).items()}

    def status(self) -> dict:
        return {
            "model": self.model,
            "model_version": self.version,
            "task": self.task,
            "counts": dict(self.counts),
            "reference": self.reference_info or {"source": "building", "n": self._reference_rows.n},
            "baseline": {self._primary: self.baseline} if self._primary else {},
            "metrics": {name: _metric_value(m) for name, m in (self._metrics or {}).items()},
            "rolling_metrics": self.rolling_metrics(),
            "open_window": {"index": self.window_index, "n": self.window.n},
            "last_window": self.last_window,
            "active_conditions": [list(k) for k in self.lifecycle.active()],
            "last_alerts": list(self.last_alerts),
            "last_retrain_at": self.last_retrain_at,
            "suppressed_retrains": list(self.suppressed_retrains),
        }


class ModelMonitor:
    """Every version of one model, plus the prediction/label join."""

    def __init__(self, model: str, settings: ModelSettings, config_version: str = ""):
        self.model = model
        self.settings = settings
        self.config_version = config_version
        self.versions: dict[str, VersionMonitor] = {}
        self._pending: OrderedDict = OrderedDict()   # prediction_id -> (version, prediction, score, ts)
        self._early_labels: OrderedDict = OrderedDict()  # prediction_id -> (label, ts): label came first
        self.clock = 0.0                            # max event time seen (drives TTLs)
        self.counts = {"expired_unlabelled": 0, "evicted_unlabelled": 0, "expired_labels": 0,
                       "duplicate_predictions": 0, "unknown_version_labels": 0}
        self.applied_offsets: dict = {}             # partition -> last offset folded into this state

    def version(self, name: str) -> VersionMonitor:
        monitor = self.versions.get(name)
        if monitor is None:
            monitor = self.versions[name] = VersionMonitor(self.model, name, self.settings, self.config_version)
        return monitor

    def knows(self, version: str) -> bool:
        return version in self.versions

    def set_reference(self, version: str, profile: ReferenceProfile, source: str = "explicit") -> None:
        self.version(version).set_reference(profile, source)

    def add_predictions(self, events: list, offset=None) -> list:
        out: list = []
        pending, early = self._pending, self._early_labels
        for event in events:
            pid = event["prediction_id"]
            if pid in pending:
                self.counts["duplicate_predictions"] += 1
                continue
            version = self.version(event["model_version"])
            ts = event["timestamp"]
            if ts > self.clock:
                self.clock = ts
            version.add_prediction(event, offset, out)
            label = early.pop(pid, None)
            if label is not None:
                version.add_label(event["prediction"], event["score"], label[0], label[1], out)
            else:
                pending[pid] = (event["model_version"], event["prediction"], event["score"], ts)
        self._expire()
        return out

    def add_labels(self, events: list) -> list:
        out: list = []
        for event in events:
            ts = event["timestamp"]
            if ts > self.clock:
                self.clock = ts
            entry = self._pending.pop(event["prediction_id"], None)
            if entry is None:
                self._early_labels[event["prediction_id"]] = (event["label"], ts)
                continue
            version, prediction, score, _ = entry
            self.versions[version].add_label(prediction, score, event["label"], ts, out)
        self._expire()
        return out

    def tick(self, now: float) -> list:
        """A wall-clock tick, delivered through the stream so a replay sees the same ticks.

        A window that stays open across ticks spanning ``window_seconds`` is closed
        if it holds ``min_window_size`` predictions, so slow traffic still gets
        tested. Ticks never move the event clock (historical replays keep their TTLs).
        """
        out: list = []
        for version in self.versions.values():
            version.on_tick(now, out)
        return out

    def _expire(self) -> None:
        horizon = self.clock - self.settings.label_ttl_seconds
        for store, counter in ((self._pending, "expired_unlabelled"), (self._early_labels, "expired_labels")):
            while store:
                first = next(iter(store.values()))
                if first[-1] >= horizon:
                    break
                store.popitem(last=False)
                self.counts[counter] += 1
        cap = self.settings.max_pending_labels
        for store in (self._pending, self._early_labels):
            while len(store) > cap:
                store.popitem(last=False)
                self.counts["evicted_unlabelled"] += 1

    def status(self) -> dict:
        return {
            "model": self.model,
            "pending_labels": len(self._pending),
            "early_labels": len(self._early_labels),
            "join": dict(self.counts),
            "versions": {name: v.status() for name, v in self.versions.items()},
        }
