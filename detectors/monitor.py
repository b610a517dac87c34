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

import dataclasses
import math
import time
from collections import OrderedDict, deque
from operator import itemgetter

import numpy as np
from river import metrics, utils

from detectors.alerts import AlertLifecycle, make_alert, make_retrain_request
from detectors.base import json_safe, json_safe_tree
from detectors.buckets import DELAY_BUCKETS, DURATION_BUCKETS, BucketCounts
from detectors.calibration import calibrate, calibrate_family
from detectors.cbpe import CBPE, FitSample
from detectors.columns import LabelColumns, PredictionColumns, kpis_of
from detectors.comparison import compare_versions
from detectors.concept import make_concept_detector
from detectors import label_batch
from detectors.domain_classifier import DomainClassifier
from detectors.fairness import SegmentStats
from detectors.histogram import histograms
from detectors.kpi import KpiTracker, compare_kpis, kpi_alert, recommend_on_kpi
from detectors.label_metrics import from_river, metric_suite
from detectors.latency import LatencyTracker, latency_alert, latency_difference
from detectors.performance import drop_test
from detectors.profile import ReferenceProfile, WindowColumn
from detectors.quality import DataQuality
from detectors.settings import ModelSettings
from detectors.segment_drift import SegmentGroup, segment_family
from detectors.suite import WindowSettings, decide_family, evaluate_window
from detectors.alerts import SEVERITIES

PREDICTION = "__prediction__"
SCORE = "__score__"
OUTPUT_COLUMNS = (PREDICTION, SCORE)
SMALL_BATCH = 8            # fewer rows go row by row: numpy's per-call cost outweighs the columns
SEGMENT_BOOTSTRAP = 1000   # null windows drawn to calibrate the segment x feature family


class ColumnBuffer:
    """Rows kept as appended and moved into columns (one list per name) in chunks, so
    appending is one list append and a window becomes arrays in one step. Rows are kept,
    not copied, until their chunk is moved: don't change one after appending it.

    >>> buf = ColumnBuffer()
    >>> buf.append({"a": 1, "b": "x"}); buf.append({"a": 2, "c": True})
    >>> buf.columns()
    {'a': [1, 2], 'b': ['x', None], 'c': [None, True]}
    >>> buf.append({"a": 3, "b": "y", "c": False}); buf.columns()["c"]
    [None, True, False]
    """

    CHUNK = 256  # rows held as dicts at most (a dict per row costs ~20x its column entries)

    def __init__(self, names=()):
        self._columns: dict[str, list] = {name: [] for name in names}
        self._rows: list[dict] = []     # appended since the columns were last built
        self.n = 0

    def append(self, row: dict) -> None:
        self._rows.append(row)
        self.n += 1
        if len(self._rows) >= self.CHUNK:
            self._fold()

    def columns(self) -> dict[str, list]:
        if self._rows:
            self._fold()
        return self._columns

    def _fold(self) -> None:
        """Move the pending rows into the columns, one pass per column (in C when every row
        has every name); a name first seen now gets None for the rows before it."""
        rows, columns = self._rows, self._columns
        before = self.n - len(rows)
        names = columns.keys()
        complete = True
        for row in rows:
            if row.keys() != names:
                complete = False
                for name in row:
                    if name not in columns:
                        columns[name] = [None] * before
        for name, column in columns.items():
            if complete:
                column.extend(map(itemgetter(name), rows))
            else:
                column.extend([row.get(name) for row in rows])
        self._rows = []

    def extend(self, columns: dict, n: int) -> None:
        """Append ``n`` rows given as columns (name -> list of ``n`` values): one list extend per
        name, no dict per row. A name the buffer has not seen gets None for the rows before."""
        if self._rows:
            self._fold()
        before = self.n
        for name, values in columns.items():
            column = self._columns.get(name)
            if column is None:
                column = self._columns[name] = [None] * before
            column.extend(values)
        for name, column in self._columns.items():
            if name not in columns:
                column.extend([None] * n)
        self.n += n

    def clear(self) -> None:
        for column in self._columns.values():
            column.clear()
        self._rows = []
        self.n = 0

    def __getstate__(self) -> dict:
        """Checkpoints hold columns, as they always did."""
        self.columns()
        return {"_columns": self._columns, "n": self.n}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._rows = []


def _label_kpis(early: list) -> tuple:
    """An early label's KPIs and refused KPI names (``[4:6]``; None in older checkpoints)."""
    return (early[4] if len(early) > 4 else None), (early[5] if len(early) > 5 else None)


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
    """river's overall metrics, rolling metrics and the name of the primary metric.

    Only the baseline metric (over the first ``performance_window`` labels) is river's
    now; the running metrics are :mod:`detectors.label_metrics`, checked against these.
    """
    if task == "classification":
        accuracy = metrics.Accuracy()
        rolling_accuracy = utils.Rolling(metrics.Accuracy, window_size=window)
        overall = {"accuracy": accuracy, "f1": metrics.F1(cm=accuracy.cm), "roc_auc": metrics.ROCAUC(),
                   "log_loss": metrics.LogLoss()}
        rolling = {"accuracy": rolling_accuracy, "f1": metrics.F1(cm=rolling_accuracy.obj.cm),
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
        self._reference_segments: list = []    # each reference row's segment, for per-segment references
        self.segment_window_settings = self.window_settings   # how segment x feature families are judged
        self.segment_calibration: dict | None = None
        self._segment_report: dict = {}
        self.window = ColumnBuffer()
        self.window_index = 0
        self._window_start = self._window_end = None
        self._window_offsets = [None, None]
        self.partition = None
        self._first_tick = self._first_tick_window = None
        self._score_out_of_range = 0
        self.lifecycle = AlertLifecycle(settings.realert_windows, settings.resolve_windows)
        self.concept = make_concept_detector(settings.concept_detector, **settings.concept_params)
        self._metrics_suite = None          # detectors.label_metrics, once the task is known
        self._primary = None
        self._baseline_metric = None
        self.baseline: float | None = None
        self.counts = {"predictions": 0, "labelled": 0, "windows": 0, "alerts": 0, "check_errors": 0,
                       "score_out_of_range": 0, "retrain_requests": 0, "retrain_suppressed": 0,
                       "features_dropped": 0}
        self._feature_names: set = set()    # admitted names, at most settings.max_features
        self.last_window: dict = {}
        self.last_alerts: deque = deque(maxlen=10)
        self.last_retrain_at: float | None = None
        self.suppressed_retrains: deque = deque(maxlen=20)
        self.deployed_at: float | None = None
        self._window_segments: list = []
        self.calibration: dict | None = None
        self.unpublished_reference = False
        self.quality = DataQuality(**settings.quality)
        self.domain = DomainClassifier(**{k: v for k, v in settings.multivariate.items() if k not in ("enabled", "every")})
        self.cbpe: CBPE | None = None
        self._cbpe_fit = FitSample()        # (score, label, prediction) of the first labelled events
        self.segments = SegmentStats()
        self.recent_errors: deque = deque(maxlen=settings.performance_window)
        self._drift_streak = 0
        self._scheduled_retrains = 0
        self._performance_announced: int | None = None
        self._performance_active = False    # announced and not resolved (hysteresis)
        self._performance_clear = 0         # consecutive window closes with the gap below the hold level
        self._baseline_errors: list | None = []   # errors of the labels the baseline is computed on
        self._suspect_left = 0
        self.window_test_seconds = BucketCounts(DURATION_BUCKETS)   # exposed as a Prometheus histogram
        self.estimate: dict = {}            # CBPE's estimate of the last window (before labels come)
        self.closed_windows: list = []      # summaries for the window history, taken by the stream layer
        self.alerts_since_window: list = []  # what the next window summary lists as raised
        self._outcome_trackers()

    def _outcome_trackers(self) -> None:
        """Serving latency and business KPIs (issue 15): their own trackers, fed per event."""
        s = self.settings
        self.latency = LatencyTracker(s.reference_size, s.window_size, s.latency_rolling_size, s.latency_slo_ms,
                                      s.calibrate_ert_windows, self.window_settings)
        self.kpis = KpiTracker(s.kpis, s.performance_window, s.kpi_tolerance, s.kpi_alpha)

    def __setstate__(self, state: dict) -> None:
        """Checkpoints from before the shared confusion matrices get them on restore; those from
        before per-segment references get no segment references (their segments stay untested)."""
        state.setdefault("window_test_seconds", BucketCounts(DURATION_BUCKETS))
        state.setdefault("estimate", {})
        state.setdefault("closed_windows", [])
        state.setdefault("alerts_since_window", [])
        if "_feature_names" not in state:     # checkpoints from before max_features
            state["_feature_names"] = {name for name in state["reference"].features if name not in OUTPUT_COLUMNS} \
                if state.get("reference") else set()
            state["counts"].setdefault("features_dropped", 0)
        state.setdefault("_reference_segments", None)
        state.setdefault("segment_window_settings", state.get("window_settings"))
        state.setdefault("segment_calibration", None)
        state.setdefault("_segment_report", {})
        state.setdefault("_performance_active", False)
        state.setdefault("_performance_clear", 0)
        state.setdefault("_baseline_errors", None)   # the drop test then uses the baseline value
        cbpe = state.get("cbpe")
        if cbpe is not None and "_calibration_x" not in cbpe.__dict__:
            # fitted on raw scores at a 0.5 threshold: refit, calibrated, from the next labelled events
            state["cbpe"], state["_cbpe_fit"] = None, []
        state["_cbpe_fit"] = FitSample.restored(state.get("_cbpe_fit"))
        if "_metrics" in state:   # river's metrics (checkpoints before the numpy metrics): their values move over
            overall, rolling = state.pop("_metrics"), state.pop("_rolling")
            state["_metrics_suite"] = None if overall is None else from_river(
                state["task"], state["settings"].performance_window, overall, rolling)
        self.__dict__.update(state)
        if "latency" not in state:   # checkpoints from before latency and KPIs
            self._outcome_trackers()

    # -- reference ---------------------------------------------------------------
    def set_reference(self, profile: ReferenceProfile, source: str) -> None:
        self.reference = profile
        self.segment_window_settings = self.window_settings
        self.reference_info = {"reference_id": profile.reference_id, "source": source, "n": profile.n,
                               "calibration": self.calibration,
                               "alpha": self.window_settings.alpha, "correction": self.window_settings.correction}
        self.window = ColumnBuffer(profile.features)
        self._feature_names.update(name for name in profile.features if name not in OUTPUT_COLUMNS)

    def _build_reference(self) -> None:
        n = self._reference_rows.n
        columns = self._reference_rows.columns()
        segments = self._reference_segments
        if segments is not None and (len(segments) != n or not any(segments)):
            segments = None   # restored from a checkpoint that did not record them, or no segments at all
        profile = ReferenceProfile.from_columns(
            columns, kinds=self.settings.feature_types, reference_id=f"{self.model}:{self.version}:first-{n}",
            segments=segments, segment_min_size=self.settings.segment_reference_min_size)
        if self.settings.calibrate_ert_windows:
            # Bootstrap windows from the reference: the threshold that gives ~1 false alarm per ERT windows.
            calibration = calibrate(columns, self.settings.window_size, self.settings.calibrate_ert_windows,
                                    settings=self.window_settings, kinds=profile.kinds, profile=profile)
            self.window_settings = calibration.settings(self.window_settings)
            self.calibration = calibration.to_dict()
        self._reference_rows = ColumnBuffer()
        self._reference_segments = []
        self.set_reference(profile, source="first_predictions")
        if self.settings.calibrate_ert_windows and profile.segments and self.settings.segment_drift:
            self._calibrate_segments(columns, segments, profile)
        self.unpublished_reference = True   # the stream layer archives it (audits recompute from it)

    def _calibrate_segments(self, columns: dict, segments: list, profile: ReferenceProfile) -> None:
        """ERT calibration of the segment x feature family: null windows drawn per segment value
        from its own reference rows, sized by its share of the reference, corrected together."""
        groups = []
        for key, sub in profile.segments.items():
            attr, _, value = key.partition("=")
            rows = [i for i, segment in enumerate(segments) if segment and segment.get(attr) == value]
            window_rows = round(self.settings.window_size * len(rows) / profile.n)
            if window_rows < self.settings.segment_min_size:
                continue   # a window would rarely hold enough of them to be tested
            groups.append(({name: [values[i] for i in rows] for name, values in columns.items()
                            if name not in OUTPUT_COLUMNS}, window_rows))
        if not groups:
            return
        # 1,000 null windows, not 200: the 1/ERT quantile of 200 sits between their 2nd and 3rd
        # smallest values and came out about twice too high (segment windows are small: this is cheap)
        calibration = calibrate_family(groups, self.settings.calibrate_ert_windows, settings=self.segment_window_settings,
                                       n_bootstrap=SEGMENT_BOOTSTRAP,
                                       kinds={k: v for k, v in profile.types.items() if k not in OUTPUT_COLUMNS})
        self.segment_window_settings = calibration.settings(self.segment_window_settings)
        self.segment_calibration = calibration.to_dict()

    # -- predictions -------------------------------------------------------------
    def add_prediction(self, event: dict, offset, out: list) -> bool:
        """Append one validated prediction; returns True when it belongs to the reference period."""
        if self.task is None:
            self.task = _infer_task(event["prediction"], event["score"])
        if self._metrics_suite is None:
            self._metrics_suite, self._primary = metric_suite(self.task, self.settings.performance_window)
            self._baseline_metric = _metric_suite(self.task, 1)[0][self._primary]
        ts = event["timestamp"]
        if self.deployed_at is None:
            self.deployed_at = ts
        self.counts["predictions"] += 1
        features = event["features"]
        row = dict(features) if self._feature_names.issuperset(features) else self._admit(features)
        row[PREDICTION] = event["prediction"]
        row[SCORE] = event["score"]
        score = event["score"]
        if score is not None and not 0.0 <= score <= 1.0:
            self._score_out_of_range += 1
            self.counts["score_out_of_range"] += 1
        elif self.settings.output_range and not isinstance(event["prediction"], (str, bool)):
            low, high = self.settings.output_range
            if not low <= event["prediction"] <= high:
                self._score_out_of_range += 1
                self.counts["score_out_of_range"] += 1
        if event.get("latency_ms") is not None:
            self.latency.add(event["latency_ms"])
        if event.get("kpis") or event.get("invalid_kpis"):
            self._observe_kpis(event["kpis"], event["invalid_kpis"], event["segment"])
        if event["segment"] and self.task == "classification":
            self.segments.add_prediction(event["segment"], _as_class(event["prediction"]))
        if self.settings.retrain_max_interval:
            self._maybe_scheduled_retrain(ts, out)
        if self.reference is None:
            self._reference_rows.append(row)
            if self._reference_segments is not None:
                self._reference_segments.append(event["segment"])
            if self._reference_rows.n >= self.settings.reference_size:
                self._build_reference()
            return True
        if self.window.n == 0:
            self._window_start = self._window_end = ts
            self._window_offsets[0] = offset
        self.window.append(row)
        self._window_segments.append(event["segment"])
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

    def add_columns(self, batch: PredictionColumns, offset, rows: list, labels: list) -> list:
        """Append this version's predictions of one batch, as columns; returns what they emit.

        ``rows`` are the events' indices in their message (the audit offsets are
        ``[offset, row]``); ``labels`` the labels that came before their predictions, as
        ``(position in batch, label, clock, kpis, invalid kpis)``: each is joined after its prediction and before
        the window that holds it closes, as the row-by-row path does. Windows close where
        that path closes them (size, or ``window_seconds`` of event time); batches that need
        a decision per event (new feature names past ``max_features``, scheduled retrains)
        and batches of fewer than ``SMALL_BATCH`` rows take the row-by-row path.
        """
        out: list = []
        n = len(batch)
        if not n:
            return out
        settings, counts = self.settings, self.counts
        new_names = [name for name in batch.feature_names() if name not in self._feature_names]
        over_cap = bool(new_names) and len(self._feature_names) + len(new_names) > settings.max_features
        if n < SMALL_BATCH or settings.retrain_max_interval or over_cap:
            # names past the cap are dropped per event that has a value for them
            return self._add_rows(batch, offset, rows, labels, keep_missing=not over_cap)
        self._feature_names.update(new_names)
        if self.task is None:
            self.task = _infer_task(batch.prediction[0], None if batch.score[0] != batch.score[0] else batch.score[0])
        if self._metrics_suite is None:
            self._metrics_suite, self._primary = metric_suite(self.task, settings.performance_window)
            self._baseline_metric = _metric_suite(self.task, 1)[0][self._primary]
        ts = batch.ts
        if self.deployed_at is None:
            self.deployed_at = float(ts[0])
        out_of_range = self._out_of_range(batch)
        columns = {name: batch.feature_values(name) for name in batch.features}
        columns[PREDICTION] = batch.prediction
        columns[SCORE] = [None if v != v else v for v in batch.score.tolist()]
        segment_rows = batch.segment_rows()
        classification = batch.prediction if self.task == "classification" else None
        pending_labels = sorted(labels, key=lambda item: item[0])
        next_label = 0
        # Latency and KPIs are fed up to a row before its early label joins and before a window
        # closes, so the trackers see the order the row-by-row path gives them.
        feed = self._outcome_feeder(batch)
        i = 0
        while i < n:
            if self.reference is None:
                stop = min(n, i + settings.reference_size - self._reference_rows.n)
                self._take(i, stop, out_of_range, segment_rows, classification)
                self._reference_rows.extend({k: v[i:stop] for k, v in columns.items()}, stop - i)
                if self._reference_segments is not None:
                    self._reference_segments.extend(segment_rows[i:stop])
                next_label = self._join_early(pending_labels, next_label, stop, batch, segment_rows, out, feed)
                feed(stop)
                i = stop
                if self._reference_rows.n >= settings.reference_size:
                    self._build_reference()
                continue
            cut = self._window_cut(ts, i)
            stop = n if cut is None else cut + 1
            if self.window.n == 0:
                self._window_start = self._window_end = float(ts[i])
                self._window_offsets[0] = None if offset is None else [offset, rows[i]]
            self._take(i, stop, out_of_range, segment_rows, classification)
            self.window.extend({k: v[i:stop] for k, v in columns.items()}, stop - i)
            self._window_segments.extend(segment_rows[i:stop])
            self._window_start = min(self._window_start, float(ts[i:stop].min()))
            self._window_end = max(self._window_end, float(ts[i:stop].max()))
            self._window_offsets[1] = None if offset is None else [offset, rows[stop - 1]]
            if cut is not None:
                # labels of the rows before the closing one come before the close, its own after it
                next_label = self._join_early(pending_labels, next_label, cut, batch, segment_rows, out, feed)
                feed(stop)
                self.close_window(out)
            next_label = self._join_early(pending_labels, next_label, stop, batch, segment_rows, out, feed)
            feed(stop)
            i = stop
        return out

    # -- per-window extra trackers (serving latency, KPIs): fed per run of rows, read at close --
    def _outcome_feeder(self, batch: PredictionColumns):
        """``feed(stop)``: rows up to ``stop`` (from where the last call left off) go to
        :meth:`_observe_window_rows`; a no-op for a batch without latencies or KPIs."""
        if not batch.kpis and np.isnan(batch.latency_ms).all() and not any(batch.invalid_kpis):
            return lambda stop: None
        fed = [0]

        def feed(stop: int) -> None:
            if stop > fed[0]:
                self._observe_window_rows(batch, fed[0], stop)
                fed[0] = stop
        return feed

    def _observe_window_rows(self, batch: PredictionColumns, start: int, stop: int) -> None:
        """Rows ``start:stop`` of ``batch`` enter the reference or the open window: their
        latencies (NaN: none) and KPIs go to the trackers, one batch per KPI, as
        :meth:`add_prediction` feeds them one event at a time."""
        latency = batch.latency_ms[start:stop]
        present = ~np.isnan(latency)
        if present.any():
            self.latency.observe(latency[present])
        segments = None
        for name, column in batch.kpis.items():
            values = column[start:stop]
            rows = np.flatnonzero(~np.isnan(values))
            if not rows.size:
                continue
            if batch.segments and segments is None:
                segments = [batch.segment_of(j) for j in range(start, stop)]
            self.kpis.observe(name, values[rows],
                              None if segments is None else [segments[j] for j in rows.tolist()])
        refused = sum(len(names) for names in batch.invalid_kpis[start:stop])
        if refused:
            self.kpis.reject(refused)

    def _window_extras(self) -> dict:
        """What per-window trackers report at the close, merged into ``last_window`` (name -> dict)."""
        return {}

    def _window_cut(self, ts: np.ndarray, i: int) -> int | None:
        """The first row from ``i`` on at which the open window closes (by size or by event time)."""
        settings = self.settings
        held = self.window.n
        by_size = i + settings.window_size - held - 1
        end = min(len(ts), by_size + 1)
        span = ts[i:end]
        start = np.minimum.accumulate(span)
        if held:
            start = np.minimum(start, self._window_start)
        sizes = held + 1 + np.arange(len(span))
        late = np.flatnonzero((sizes >= settings.min_window_size) & (span - start >= settings.window_seconds))
        if len(late):
            return i + int(late[0])
        return by_size if by_size < len(ts) else None

    def _take(self, i: int, stop: int, out_of_range: np.ndarray, segment_rows: list, predictions: list | None) -> None:
        """Counts of rows ``i:stop`` as they enter the reference or the window."""
        self.counts["predictions"] += stop - i
        bad = int(out_of_range[i:stop].sum())
        self._score_out_of_range += bad
        self.counts["score_out_of_range"] += bad
        if predictions is not None:   # classification: per-segment positive rates
            self.segments.add_predictions(segment_rows[i:stop], predictions[i:stop], _as_class)

    def _out_of_range(self, batch: PredictionColumns) -> np.ndarray:
        """Per row: the score outside [0, 1], or (no score) a numeric prediction outside ``output_range``."""
        score = batch.score
        present = ~np.isnan(score)
        bad = present & ((score < 0.0) | (score > 1.0))
        if self.settings.output_range:
            low, high = self.settings.output_range
            for j in np.flatnonzero(~bad).tolist():   # a score in range, or none: the prediction is checked
                value = batch.prediction[j]
                if not isinstance(value, (str, bool)) and not low <= value <= high:
                    bad[j] = True
        return bad

    def _join_early(self, labels: list, start: int, stop: int, batch: PredictionColumns, segment_rows: list,
                    out: list, feed=None) -> int:
        """Join the early labels of rows before ``stop``; returns the index of the next one.
        ``feed(row + 1)`` first: the row's latency and KPIs are in before its label."""
        while start < len(labels) and labels[start][0] < stop:
            row, label, clock, kpis, invalid = labels[start]
            if feed is not None:
                feed(row + 1)
            score = batch.score[row]
            out += self.add_labels([batch.prediction[row]], [None if score != score else float(score)], [label],
                                   clock, [segment_rows[row]], [kpis], [invalid])
            start += 1
        return start

    def _add_rows(self, batch: PredictionColumns, offset, rows: list, labels: list, keep_missing: bool = False) -> list:
        """The row-by-row path, for batches that need a decision per event, and the oracle of
        the columnar path in tests. ``keep_missing``: every event names every feature of the
        batch, so new columns come in the order the columnar path gives them."""
        out: list = []
        by_row: dict = {}
        for row, label, clock, kpis, invalid in labels:
            by_row.setdefault(row, []).append((label, clock, kpis, invalid))
        for j, event in enumerate(batch.to_events(keep_missing)):
            self.add_prediction(event, None if offset is None else [offset, rows[j]], out)
            for label, clock, kpis, invalid in by_row.get(j, ()):
                self.add_label(event["prediction"], event["score"], label, clock, out, event["segment"],
                               kpis, invalid)
        return out

    def _admit(self, features: dict) -> dict:
        """The row of an event with names not seen before: admitted while fewer than ``max_features``
        names are known, dropped (and counted) beyond, so a producer inventing names per event
        cannot grow every window by a column per name."""
        names, cap = self._feature_names, self.settings.max_features
        row = {}
        for name, value in features.items():
            if name not in names:
                if len(names) >= cap:
                    self.counts["features_dropped"] += 1
                    continue
                names.add(name)
            row[name] = value
        return row

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
                "n": self.window.n, "partition": self.partition,
                # [offset, index in the message] of the first and last event: `driftline audit --recompute`
                "offsets": {"first": self._window_offsets[0], "last": self._window_offsets[1]}}

    def _converted(self, columns: dict) -> dict:
        """The window's columns, those the reference knows as :class:`WindowColumn`: every
        check of the window (drift, data quality, domain classifier) shares one conversion."""
        kinds = self.reference.features
        return {name: WindowColumn(values, kinds[name].value_type) if name in kinds else values
                for name, values in columns.items()}

    def close_window(self, out: list) -> None:
        """Test the window, emit what it found, and start the next one.

        The next window starts whatever happens: a check that raises (a bug, or input it
        cannot handle) is recorded in ``last_window["errors"]`` and the other checks still
        run, so one bad value can never stop a model's monitoring.
        """
        started = time.perf_counter()
        try:
            self._test_window(out)
        finally:
            self.window_test_seconds.observe(time.perf_counter() - started)
            self._next_window()

    def _checked(self, name: str, check, default=()):
        try:
            return check()
        except Exception as exc:  # recorded, reported in status; the window's other checks go on
            self._check_errors[name] = f"{type(exc).__name__}: {exc}"
            self.counts["check_errors"] = self.counts.get("check_errors", 0) + 1
            return default

    def _test_window(self, out: list) -> None:
        self._check_errors: dict = {}
        raw = self.window.columns()
        columns = self._converted(raw)
        report = evaluate_window(self.reference, columns, self.window_settings)
        bounds = self._window_bounds()
        findings: dict[str, dict] = {kind: {} for kind in (
            "input_drift", "prediction_drift", "data_quality", "multivariate_drift",
            "estimated_performance", "fairness", "segment_drift")}
        for result in report.drifted:
            kind = "prediction_drift" if result.feature in OUTPUT_COLUMNS else "input_drift"
            best = findings[kind].get(result.feature)
            if best is None or (result.p_value or 0.0) < (best.p_value or 0.0):
                findings[kind][result.feature] = result
        for result in self._checked("data_quality", lambda: self.quality.check(self.reference, columns)):
            if result.drifted and result.feature not in OUTPUT_COLUMNS:
                findings["data_quality"][f"{result.feature}/{result.detector.split('.')[-1]}"] = result
        if self._score_out_of_range:
            findings["data_quality"][f"{SCORE}/output_range"] = self._guardrail_result()
        multivariate = self.settings.multivariate
        if multivariate.get("enabled", True) and self.window_index % max(1, multivariate.get("every", 1)) == 0:
            # rows as the reference sampled them (outputs included), so both sides have the same columns
            result = self._checked("multivariate_drift", lambda: self.domain.test(self.reference, columns), None)
            if result is not None and result.drifted:
                findings["multivariate_drift"]["__rows__"] = result
        if self.cbpe is not None and self.window.n:
            predictions = [_as_class(p) for p in raw.get(PREDICTION, [])]
            result = self._checked("estimated_performance",
                                   lambda: self.cbpe.test(raw.get(SCORE, []), predictions=predictions), None)
            if result is not None and "estimated_accuracy" in result.evidence:
                self.estimate = {"accuracy": result.evidence["estimated_accuracy"], "window": self.window_index}
            if result is not None and result.drifted:
                findings["estimated_performance"]["__score__"] = result
        active_gaps = {feature for kind, feature in self.lifecycle.active() if kind == "fairness"}
        for result in self._checked("fairness", lambda: self.segments.test(
                self.settings.segment_min_size, self.settings.fairness_tolerance, self.settings.fairness_alpha,
                active=active_gaps, hold=self.settings.hysteresis)):
            findings["fairness"][result.feature] = result
        self._segment_report = {}
        if self.settings.segment_drift:
            findings["segment_drift"] = self._checked("segment_drift", lambda: self._segment_drift(columns), {})
        undecided = {"fairness": self.segments.undecided(self.settings.segment_min_size, active_gaps)}
        latency = self._checked("latency", self.latency.close_window, None)
        if latency is not None and latency.quality() is not None:
            findings["data_quality"]["latency_ms/invalid"] = latency.quality()
        emitted = self._outcome_alerts(latency, bounds, out)
        for kind, results in findings.items():
            announce, resolved = self.lifecycle.observe(self.window_index, kind, set(results),
                                                        undecided.get(kind, frozenset()))
            if announce:
                ordered = sorted(results.values(), key=lambda r: (r.p_value if r.p_value is not None else 1.0,
                                                                   -(r.effect_size or 0.0)))
                emitted.append(self._window_alert(kind, list(results), ordered, report, bounds, out))
            for key in resolved:
                self._resolved_alert(kind, key, bounds, out)
        self._drift_streak = self._drift_streak + 1 if findings["input_drift"] else 0
        if self.baseline is not None:  # a slow decline the concept detector missed still alerts
            alert = self._check_performance(bounds["end"], out, trigger="rolling_window")
            if alert is not None:
                emitted.append(alert)
        self._apply_retrain_policy(emitted, bounds, out)
        self.last_window = {
            **bounds,
            "drift": {r.feature: {"detector": r.detector, "statistic": r.statistic, "p_value": r.p_value,
                                  "threshold": r.threshold, "effect_size": r.effect_size, "drifted": r.drifted}
                      for r in report.results if r.detector in ("ks", "chi_squared", "prediction_ks",
                                                                "prediction_chi_squared")},
            "drifted_features": sorted(k for kind in ("input_drift", "prediction_drift") for k in findings[kind]),
            "findings": {kind: sorted(keys) for kind, keys in findings.items() if keys},
            "segments": self.segments.summary(),
            "segment_drift": dict(self._segment_report),
            "latency": latency.to_dict() if latency is not None else None,
            "kpis": self.kpis.summary(),
            "errors": dict(self._check_errors),
            **self._window_extras(),
        }
        self.closed_windows.append(self._window_summary(report, columns))
        del self.closed_windows[:-64]       # bounded when no stream layer takes them (tests, benchmarks)

    def _window_summary(self, report, columns: dict) -> dict:
        """What the window history keeps of a tested window: every feature's test with both
        sides' summaries and histograms (on the reference's bins, at most 30), the metrics and
        estimate at its close, and the alerts raised since the previous window closed (the
        window's own, and performance or comparison alerts that labels raised meanwhile)."""
        alerts, self.alerts_since_window = self.alerts_since_window, []
        features = {}
        for name, result in self.last_window["drift"].items():
            profile = self.reference.features.get(name)
            features[name] = {**result, "reference": profile.summary if profile else None,
                              "current": report.summaries.get(name)}
            if profile is not None and name in columns:
                bins = self._checked("histogram", lambda: histograms(profile, columns[name]), None)
                if bins is not None:
                    features[name]["histogram"] = {"bins": bins[0][:30], "reference": bins[1][:30].tolist(),
                                                   "current": bins[2][:30].tolist()}
        window = self.last_window
        return json_safe_tree({
            "model": self.model, "model_version": self.version, "index": window["index"],
            "start": window["start"], "end": window["end"], "n": window["n"], "features": features,
            "drifted_features": window["drifted_features"], "findings": window["findings"],
            "metrics": self.rolling_metrics(), "estimate": dict(self.estimate),
            "alerts": alerts, "latency": window["latency"], "kpis": window["kpis"],
            "errors": window["errors"],
        })

    def _outcome_alerts(self, latency, bounds: dict, out: list, closing: bool = True) -> list:
        """Latency and KPI alerts through the same lifecycle as the others: at a window close, and
        for KPIs between closes too (``closing=False``: announces only, nothing counts as clear)."""
        emitted = []
        try:
            kpis = self.kpis.check()
        except Exception as exc:   # recorded; never stops the window or the label
            self.counts["check_errors"] += 1
            self.last_window.setdefault("errors", {})["kpi"] = f"{type(exc).__name__}: {exc}"
            kpis = {}
        if bounds.get("n") is None:   # between closes: the rolling KPI values tested, as a performance alert
            bounds = {**bounds, "n": max((r.evidence["n_rolling"] for r in kpis.values()), default=0),
                      "size": self.kpis.window}
        common = {"model": self.model, "model_version": self.version, "window": bounds,
                  "reference": self.reference_info, "window_index": self.window_index,
                  "config_version": self.config_version}
        for kind, found, build in (
                ("latency", latency.findings() if latency is not None else {},
                 lambda keys: latency_alert(keys=keys, report=latency, **common)),
                ("kpi", kpis, lambda keys: kpi_alert(keys=keys, findings=kpis, **common))):
            held = frozenset() if closing else {key for k, key in self.lifecycle.active() if k == kind}
            announce, resolved = self.lifecycle.observe(self.window_index, kind, set(found), held)
            if announce:
                alert = build(sorted(found))
                self._emit(out, alert)
                emitted.append(alert)
            for key in resolved:
                self._resolved_alert(kind, key, bounds, out)
        return emitted

    def _observe_kpis(self, kpis: dict, invalid: list, segment: dict | None) -> None:
        self.kpis.observe_event(kpis, segment)
        if invalid:
            self.kpis.reject(len(invalid))

    def _next_window(self) -> None:
        self.segments.reset_window()
        self.counts["windows"] += 1
        self.window_index += 1
        self.window.clear()
        self._window_segments = []
        self._window_start = self._window_end = None
        self._window_offsets = [None, None]
        self._first_tick = self._first_tick_window = None
        self._score_out_of_range = 0

    def _segment_drift(self, columns: dict) -> dict:
        """Input drift inside each segment value: its window rows against its own reference rows.

        A segment value differs from the population by definition (a region has its own
        countries), so it is compared with the reference rows of the same value, kept when
        the reference was built. Values with at least ``segment_min_size`` window rows are
        tested (at most 20 per window, the largest); those without a reference of their own
        are reported untested in ``last_window["segment_drift"]``. Every segment x feature test
        of the window is one family, corrected together and ERT-calibrated like the main tests.
        """
        groups: dict = {}
        for index, segment in enumerate(self._window_segments):
            for key in (segment or {}).items():
                groups.setdefault(key, []).append(index)
        large = sorted(((key, rows) for key, rows in groups.items() if len(rows) >= self.settings.segment_min_size),
                       key=lambda item: (-len(item[1]), item[0]))
        references = self.reference.segments or {}
        sizes = self.reference.segment_sizes
        settings = self.segment_window_settings
        untested, tested, groups = {}, {}, []
        for rank, ((attr, value), rows) in enumerate(large):
            key = f"{attr}={value}"
            sub = references.get(key)
            if rank >= 20:
                untested[key] = "more than 20 segment values in the window"
                continue
            if sub is None:
                have = (sizes or {}).get(key, 0)
                untested[key] = ("the reference has no segments" if sizes is None else
                                 f"{have} reference rows < segment_reference_min_size "
                                 f"{self.settings.segment_reference_min_size}")
                continue
            tested[key] = len(rows)
            groups.append(SegmentGroup(key, np.asarray(rows, dtype=np.intp), sub))
        family, drifted = segment_family(groups, columns, settings, skip=frozenset(OUTPUT_COLUMNS))
        found = {}
        for i, result in drifted.items():
            test = family[i]
            attr, _, value = test.key.partition("=")
            name = f"{test.key}:{result.feature}"
            found[name] = dataclasses.replace(result, feature=name, evidence={
                **result.evidence, "segment": {attr: value}, "segment_rows": test.n_rows,
                "segment_reference_rows": test.n_reference, "family_size": len(family),
                "calibration": self.segment_calibration})
        self._segment_report = {"tested": tested, "untested": untested, "family_size": len(family)}
        return found

    def _guardrail_result(self):
        from detectors.base import DriftResult

        n = max(self.window.n, 1)
        expected = self.settings.output_range or [0.0, 1.0]
        return DriftResult("guardrail.output_range", SCORE, self._score_out_of_range / n, None, 0.0, "statistic",
                           True, evidence={"out_of_range": self._score_out_of_range, "n": n,
                                           "expected_range": list(expected)})

    def _severity(self, kind: str, results: list) -> str:
        if kind in ("input_drift", "prediction_drift"):
            effect = max((r.effect_size or 0.0) for r in results)
            return "critical" if effect >= self.settings.critical_effect_size or len(results) >= 3 else "warning"
        if kind in ("fairness", "estimated_performance"):
            worst = max(abs(r.statistic) for r in results)
            return "critical" if worst > 2 * max(r.threshold for r in results) else "warning"
        return "warning"

    def _window_alert(self, kind: str, keys: list, results: list, report, bounds: dict, out: list) -> dict:
        top = results[0]
        evidence = {}
        for r in results:
            entry = {"detector": r.detector, "statistic": r.statistic, "p_value": r.p_value,
                     "threshold": r.threshold, "effect_size": r.effect_size, "effect_name": r.effect_name}
            if r.feature in self.reference.features:
                entry["reference"] = self.reference.features[r.feature].summary
                entry["current"] = report.summaries.get(r.feature)
            entry.update({k: v for k, v in r.evidence.items() if k not in ("reference", "current")})
            evidence[r.feature or "rows"] = entry
        names = [r.feature for r in results if r.feature]
        if kind == "multivariate_drift":
            names = [f for f, _ in top.evidence.get("top_features", [])[:3]]
        alert = make_alert(
            model=self.model, model_version=self.version, kind=kind, severity=self._severity(kind, results),
            detector=top.detector, feature=top.feature, features=names, statistic=top.statistic,
            p_value=top.p_value, threshold=top.threshold, window=bounds, reference=self.reference_info,
            evidence=evidence, id_parts=(self.window_index, ",".join(sorted(map(str, keys)))),
            config_version=self.config_version, conditions=sorted(map(str, keys)),
            message=f"{kind.replace('_', ' ')} in {', '.join(map(str, names))} (window {self.window_index}, n={bounds['n']})")
        self._emit(out, alert)
        return alert

    def _resolved_alert(self, kind: str, feature: str, bounds: dict, out: list) -> None:
        self._emit(out, make_alert(
            model=self.model, model_version=self.version, kind="resolved", severity="info", detector="lifecycle",
            feature=feature, statistic=None, p_value=None, threshold=None, window=bounds,
            reference=self.reference_info, evidence={"resolves": kind, "clear_windows": self.settings.resolve_windows},
            id_parts=(self.window_index, kind, feature), config_version=self.config_version, conditions=[feature],
            message=f"{kind.replace('_', ' ')} in {feature} cleared for {self.settings.resolve_windows} windows"))

    # -- retrain policy ------------------------------------------------------------
    def _triggers(self, alert: dict) -> bool:
        for rule in self.settings.retrain_on:
            kind, _, severity = rule.partition(":")
            if alert["kind"] == kind and SEVERITIES.index(alert["severity"]) >= SEVERITIES.index(severity or "info"):
                return True
        return False

    def _apply_retrain_policy(self, emitted: list, bounds: dict, out: list) -> None:
        triggering = [a for a in emitted if self._triggers(a)]
        ts = bounds["end"]
        if triggering:
            reason = "; ".join(a["message"] for a in triggering)
            self._request_retrain([a["alert_id"] for a in triggering], reason, ts, out, bounds=bounds)
        elif self.settings.retrain_drift_windows and self._drift_streak >= self.settings.retrain_drift_windows:
            self._request_retrain([], f"input drift persisted {self._drift_streak} windows", ts, out, bounds=bounds)
            self._drift_streak = 0

    def _maybe_scheduled_retrain(self, ts: float, out: list) -> None:
        last = max(x for x in (self.deployed_at, self.last_retrain_at) if x is not None)
        if ts - last >= self.settings.retrain_max_interval:
            self._scheduled_retrains += 1
            self._request_retrain([], f"scheduled: no retrain for {self.settings.retrain_max_interval:.0f} s",
                                  ts, out, id_parts=("scheduled", self._scheduled_retrains))

    # -- labels ------------------------------------------------------------------
    def add_label(self, prediction, score, label, ts: float, out: list, segment: dict | None = None,
                  kpis: dict | None = None, invalid_kpis: list | None = None) -> None:
        """One joined label (see :meth:`add_labels`)."""
        out += self.add_labels([prediction], [score], [label], ts, [segment], [kpis], [invalid_kpis])

    def add_labels(self, predictions: list, scores: list, labels: list, ts: float,
                   segments: list | None = None, kpis: list | None = None, invalid_kpis: list | None = None) -> list:
        """Joined labels with their predictions' outputs, in join order; returns what they emit.

        The metrics take the labels in one numpy update per run between two performance
        checks (a check reads the rolling metric as of its label); the concept detector,
        the baseline, the segment counts and the CBPE fit see them one by one, as before.
        ``kpis``/``invalid_kpis``: per label, its KPIs (name -> number) and the names the
        contract refused (issue 15); KPIs are observed, and checked when due, label by label.
        """
        out: list = []
        if label_batch.quiet(self, len(labels), kpis, invalid_kpis):   # nothing watched: per batch up to a concept drift
            taken = label_batch.fold_quiet_labels(self, _as_class, predictions, scores, labels, segments, ts, out)
            predictions, scores, labels = predictions[taken:], scores[taken:], labels[taken:]
            segments, kpis, invalid_kpis = (x[taken:] if x else x for x in (segments, kpis, invalid_kpis))
        segments = segments or [None] * len(labels)
        kpis = kpis or [None] * len(labels)
        invalid_kpis = invalid_kpis or [None] * len(labels)
        classification = self.task == "classification"
        pending_true, pending_pred, pending_score = [], [], []
        metrics, settings, counts = self._metrics_suite, self.settings, self.counts

        def flush():
            if pending_true:
                metrics.update(pending_true, pending_pred, pending_score)
                pending_true.clear(), pending_pred.clear(), pending_score.clear()

        for prediction, score, label, segment, kpi, invalid in zip(predictions, scores, labels, segments,
                                                                   kpis, invalid_kpis):
            counts["labelled"] += 1
            if kpi or invalid:
                self._observe_kpis(kpi or {}, invalid, segment)
                if self.kpis.due():
                    self._outcome_alerts(None, {"index": self.window_index, "labelled": counts["labelled"],
                                                "start": None, "end": ts, "n": None}, out, closing=False)
            if classification:
                y_true, y_pred = _as_class(label), _as_class(prediction)
                error = float(y_true != y_pred)
                if segment:
                    self.segments.add_label(segment, y_true, y_pred, ts)
                if (self.cbpe is None and settings.estimate_performance and score is not None
                        and isinstance(y_true, bool) and isinstance(y_pred, bool) and 0.0 <= score <= 1.0):
                    self._cbpe_fit.append(score, y_true, y_pred)
                    if len(self._cbpe_fit) >= settings.cbpe_reference_labels:
                        fit_scores, fit_labels, fit_predictions = self._cbpe_fit.columns()
                        self.cbpe = CBPE(max_drop=settings.performance_tolerance).fit(
                            fit_scores, fit_labels, fit_predictions)
                        self._cbpe_fit = FitSample()
            else:
                try:
                    y_true, y_pred = float(label), float(prediction)
                except (TypeError, ValueError):
                    continue
                error = abs(y_true - y_pred)
            pending_true.append(y_true)
            pending_pred.append(y_pred)
            pending_score.append(score)
            if self.baseline is None:
                self._baseline_metric.update(y_true, y_pred)
                if self._baseline_errors is not None:
                    self._baseline_errors.append(error)
                if counts["labelled"] >= settings.performance_window:
                    self.baseline = _metric_value(self._baseline_metric)
            self.recent_errors.append(error)
            self.concept.update(error)
            if self.concept.drift_detected:
                # The detector fires early, when the rolling metric has barely moved: keep checking
                # the gap for a rolling window's worth of labels instead of only at this instant.
                self._suspect_left = settings.performance_window
            if self._suspect_left and self.baseline is not None:
                self._suspect_left -= 1
                if self.concept.drift_detected or self._suspect_left % 25 == 0:
                    flush()
                    alert = self._check_performance(ts, out, trigger=self.concept.name)
                    if alert is not None and self._triggers(alert):
                        self._request_retrain([alert["alert_id"]],
                                              f"performance {alert['severity']}: {alert['message']}", ts, out)
        flush()
        return out

    @property
    def _metrics(self) -> dict | None:
        """Overall metrics by name (river-like views of :mod:`detectors.label_metrics`)."""
        return None if self._metrics_suite is None else self._metrics_suite.overall

    @property
    def _rolling(self) -> dict | None:
        return None if self._metrics_suite is None else self._metrics_suite.rolling

    def _check_performance(self, ts: float, out: list, trigger: str) -> dict | None:
        """A performance alert when the rolling metric is worse than baseline by the tolerance,
        and a one-sided test given both sample sizes finds the drop significant
        (:func:`detectors.performance.drop_test`).

        Hysteresis: once announced, the condition holds while the gap stays above
        ``hysteresis`` x tolerance, and is resolved after ``resolve_windows`` window closes
        below it; it is re-announced at most every ``realert_windows`` windows.
        """
        rolling = _metric_value(self._rolling[self._primary])
        if rolling is None or not self.recent_errors:
            return
        tol = self.settings.performance_tolerance
        test = drop_test(self._primary, self._baseline_errors, list(self.recent_errors), tol,
                         self.settings.performance_alpha, baseline=self.baseline,
                         n_baseline=self.settings.performance_window)
        if self._performance_active and trigger == "rolling_window":
            if test.gap > self.settings.hysteresis * tol:
                self._performance_clear = 0
            else:
                self._performance_clear += 1
                if self._performance_clear >= self.settings.resolve_windows:
                    self._performance_active = False
                    self._performance_clear = 0
                    self._resolved_alert("performance", self._primary, self._window_bounds(), out)
                    return
        if self._performance_announced is not None and \
                self.window_index - self._performance_announced < self.settings.realert_windows:
            return  # cooldown: one performance alert per realert_windows windows
        if not test.drifted:
            return
        bigger_is_better = self._rolling[self._primary].bigger_is_better
        gap = test.gap
        severity = "critical" if gap > 2 * tol else "warning"
        self._performance_announced = self.window_index
        self._performance_active, self._performance_clear = True, 0
        n = self.counts["labelled"]
        alert = make_alert(
            model=self.model, model_version=self.version, kind="performance", severity=severity,
            detector=f"{trigger}+{self._primary}", feature=None, statistic=test.rolling,
            p_value=test.p_value, threshold=(test.baseline - tol) if bigger_is_better else test.baseline * (1 + tol),
            window={"index": self.window_index, "labelled": n, "size": self.settings.performance_window,
                    "end": ts, "start": None, "n": test.n_rolling},
            reference=self.reference_info,
            evidence={"metric": self._primary, "baseline": test.baseline, "rolling": test.rolling, "gap": gap,
                      "tolerance": tol, **test.evidence(), "rolling_metrics": self.rolling_metrics()},
            id_parts=("labelled", n), config_version=self.config_version,
            message=f"{self._primary} {test.rolling:.3f} vs baseline {test.baseline:.3f} "
                    f"(±{1.96 * test.baseline_se:.3f}; p={test.p_value:.2g}, {trigger})")
        self._emit(out, alert)
        return alert

    def _request_retrain(self, alert_ids: list, reason: str, ts: float, out: list, bounds: dict | None = None,
                         id_parts: tuple | None = None) -> None:
        """Ask for retraining unless one was asked within ``retrain_min_interval`` (then record it)."""
        data_range = {"since": self.deployed_at, "until": ts, "model_version": self.version}
        if bounds is not None:
            data_range["offsets"] = bounds.get("offsets")
        if self.last_retrain_at is not None and ts - self.last_retrain_at < self.settings.retrain_min_interval:
            self.counts["retrain_suppressed"] += 1
            self.suppressed_retrains.append({"at": ts, "reason": reason, "alert_ids": alert_ids,
                                             "next_allowed_at": self.last_retrain_at + self.settings.retrain_min_interval})
            return
        self.last_retrain_at = ts
        self.counts["retrain_requests"] += 1
        out.append(("retrain", make_retrain_request(
            model=self.model, model_version=self.version, reason=reason, alert_ids=alert_ids,
            data_range=data_range, id_parts=id_parts or ("n", self.counts["predictions"], self.counts["labelled"]),
            now=None)))

    # -- output ------------------------------------------------------------------
    def _emit(self, out: list, alert: dict) -> None:
        self.counts["alerts"] += 1
        self.last_alerts.append({k: alert[k] for k in ("alert_id", "kind", "severity", "feature", "message", "created_at")})
        self.alerts_since_window.append({k: alert.get(k) for k in ("alert_id", "kind", "severity", "features",
                                                                    "message")})
        del self.alerts_since_window[:-100]
        out.append(("alert", alert))

    def rolling_metrics(self) -> dict:
        """None for every metric until a label came (river reports an empty accuracy as 0)."""
        labelled = self.counts["labelled"] > 0
        return {name: _metric_value(m) if labelled else None for name, m in (self._rolling or {}).items()}

    def status(self) -> dict:
        return {
            "model": self.model,
            "model_version": self.version,
            "task": self.task,
            "counts": dict(self.counts),
            "reference": self.reference_info or {"source": "building", "n": self._reference_rows.n},
            "baseline": {self._primary: self.baseline} if self._primary else {},
            "metrics": {name: _metric_value(m) if self.counts["labelled"] else None
                        for name, m in (self._metrics or {}).items()},
            "rolling_metrics": self.rolling_metrics(),
            "open_window": {"index": self.window_index, "n": self.window.n},
            "last_window": self.last_window,
            "active_conditions": [list(k) for k in self.lifecycle.active()],
            "last_alerts": list(self.last_alerts),
            "last_retrain_at": self.last_retrain_at,
            "deployed_at": self.deployed_at,
            "suppressed_retrains": list(self.suppressed_retrains),
            "latency": self.latency.status(),
            "kpis": self.kpis.status(),
        }


class ModelMonitor:
    """Every version of one model, plus the prediction/label join."""

    def __init__(self, model: str, settings: ModelSettings, config_version: str = ""):
        self.model = model
        self.settings = settings
        self.config_version = config_version
        self.versions: dict[str, VersionMonitor] = {}
        self._pending: OrderedDict = OrderedDict()   # prediction_id -> [(version, prediction, score, segment, ts)]
        # prediction_id -> [label, watermark when it came, joined yet, label time]: the label came first
        self._early_labels: OrderedDict = OrderedDict()
        # Event time comes from the predictions only. Label timestamps come from another clock
        # (often when the label was recorded, days later): a label stamped "now" during a replay
        # of older predictions would otherwise expire every prediction still waiting for a label.
        self.clock = 0.0                    # max prediction time: retrain-policy and comparison clock
        self.source_clocks: dict = {}       # source partition -> max prediction time read from it
        self.counts = {"expired_unlabelled": 0, "evicted_unlabelled": 0, "expired_labels": 0,
                       "duplicate_predictions": 0, "unknown_version_labels": 0}
        self.applied_offsets: dict = {}             # partition -> last offset folded into this state
        self._last_comparison: dict = {}
        self.label_delay = BucketCounts(DELAY_BUCKETS)   # label time - prediction time, joined labels

    def __setstate__(self, state: dict) -> None:
        """Checkpoints written before the watermark join get its fields on restore."""
        state.setdefault("source_clocks", {})
        state.setdefault("label_delay", BucketCounts(DELAY_BUCKETS))
        state["_early_labels"] = OrderedDict(   # was (label, label time): wait from the old clock
            (pid, [label[0], state["clock"], False] if isinstance(label, tuple) else label)
            for pid, label in state["_early_labels"].items())
        self.__dict__.update(state)

    def version(self, name: str) -> VersionMonitor:
        monitor = self.versions.get(name)
        if monitor is None:
            monitor = self.versions[name] = VersionMonitor(self.model, name, self.settings, self.config_version)
        return monitor

    def knows(self, version: str) -> bool:
        return version in self.versions

    def set_reference(self, version: str, profile: ReferenceProfile, source: str = "explicit") -> None:
        self.version(version).set_reference(profile, source)

    def restore_policy(self, version: str, deployed_at: float | None, last_retrain_at: float | None) -> None:
        """Retrain-policy clocks kept outside the checkpoint (Redis), for a cold start."""
        monitor = self.version(version)
        monitor.deployed_at = deployed_at if deployed_at is not None else monitor.deployed_at
        monitor.last_retrain_at = last_retrain_at if last_retrain_at is not None else monitor.last_retrain_at

    def archive(self) -> list:
        """References built from first predictions that the stream layer has not stored yet."""
        found = []
        for monitor in self.versions.values():
            if monitor.unpublished_reference:
                monitor.unpublished_reference = False
                found.append({"reference_id": monitor.reference.reference_id, "model": self.model,
                              "model_version": monitor.version, "profile": monitor.reference.to_dict(),
                              "window_settings": monitor.window_settings.to_dict(),
                              "segment_window_settings": monitor.segment_window_settings.to_dict(),
                              "calibration": monitor.calibration})
        return found

    def window_summaries(self) -> list:
        """Summaries of the windows closed since the last call (the window history's entries)."""
        found = []
        for monitor in self.versions.values():
            if monitor.closed_windows:
                found += monitor.closed_windows
                monitor.closed_windows = []
        return found

    @property
    def watermark(self) -> float:
        """Event time every source partition has passed: the clock of the label TTLs.

        Partitions are read at different paces (a backlog, a slow broker), so the max time
        seen can run far ahead of predictions still on their way from another partition;
        expiring by it would drop joins those predictions are about to make. A partition
        that stops carrying this model's predictions holds the watermark back: expiry is
        late, never early, and ``max_pending_labels`` still bounds memory.
        """
        return min(self.source_clocks.values(), default=0.0)

    def add_predictions(self, events: list, offset=None, partition=None, sources=None) -> list:
        """Fold validated predictions in (dicts; :meth:`add_columns` takes them as columns).

        ``offset``/``partition`` locate their message for audits; ``sources`` gives the
        source partition of consecutive runs of ``events`` as ``[(partition, count), ...]``
        (default: all from one source).
        """
        if not events:
            return []
        return self.add_columns(PredictionColumns.from_events(events, sources, max_names=self.settings.max_features),
                                offset, partition)

    def add_columns(self, batch: PredictionColumns, offset=None, partition=None) -> list:
        """Fold a batch of validated predictions of this model in; returns what it emits.

        The join is decided per event (a dict look-up: shadow traffic, redeliveries, labels
        that came first); each version then takes its rows as columns
        (:meth:`VersionMonitor.add_columns`). ``batch.sources`` as in :meth:`add_predictions`.
        """
        out: list = []
        n = len(batch)
        if not n:
            return out
        pending, early = self._pending, self._early_labels
        windows_before = self._windows_closed()
        ts = batch.ts
        start, clocks, first = 0, self.source_clocks, not self.source_clocks
        for source, count in batch.sources or [(None, n)]:
            if count:
                newest = float(ts[start:start + count].max())
                if newest > clocks.get(source, float("-inf")):
                    clocks[source] = newest
            start += count
        if first and clocks:   # labels that came before any prediction start waiting now
            for label in early.values():
                label[1] = self.watermark
        clock = self.clock        # max prediction time, of the rows kept
        by_version: dict = {}     # name -> [rows, early labels as (position, label, clock)]
        times = ts.tolist()
        scores = batch.score.tolist()
        segment_rows = batch.segment_rows()
        for index, pid in enumerate(batch.ids):
            name = batch.model_version[index]
            segment = segment_rows[index]
            score = scores[index]
            entry = (name, batch.prediction[index], None if score != score else score, segment, times[index])
            shadows = pending.get(pid)
            if shadows is not None:
                # Same id from another version = shadow traffic; from the same version = redelivery.
                if any(e[0] == name for e in shadows):
                    self.counts["duplicate_predictions"] += 1
                    continue
                shadows.append(entry)
            if times[index] > clock:
                clock = times[index]
            taken = by_version.get(name)
            if taken is None:
                taken = by_version[name] = [[], []]
            label = early.get(pid)
            if label is not None:   # kept until its TTL: a shadow version's prediction may still come
                if not label[2] and len(label) > 3 and label[3] >= times[index]:   # [3]: label time
                    self.label_delay.observe(label[3] - times[index])
                label[2] = True
                taken[1].append((len(taken[0]), label[0], clock, *_label_kpis(label)))
            elif shadows is None:
                pending[pid] = [entry]
            taken[0].append(index)
        self.clock = clock
        for name, (rows, labels) in by_version.items():
            version = self.version(name)
            version.partition = partition
            sub = batch if len(rows) == n else batch.take(rows)
            out += version.add_columns(sub, offset, rows, labels)
        self._expire()
        if len(self.versions) > 1 and self._windows_closed() != windows_before:
            self._compare(out)
        return out

    def add_labels(self, events: list) -> list:
        """Fold validated labels in (dicts; :meth:`add_label_columns` takes them as columns)."""
        return self.add_label_columns(LabelColumns.from_events(events))

    def add_label_columns(self, batch: LabelColumns) -> list:
        """Join a batch of labels with their predictions (prediction id -> pending entry) and give
        each version its joined labels in one call per run of consecutive labels of that version."""
        out: list = []
        clock, watermark = self.clock, self.watermark
        pending, early = self._pending, self._early_labels
        joined: list = []      # [version, predictions, scores, labels, segments, kpis, invalid kpis] per run
        with_kpis = batch.kpis
        for position, (pid, label, ts) in enumerate(zip(batch.ids, batch.label, batch.ts.tolist())):
            entries = pending.pop(pid, None)
            label_kpis = kpis_of(with_kpis, position) if with_kpis else None
            label_invalid = batch.invalid_kpis[position] or None
            if entries is None:   # [4:6]: the label's KPIs (newer checkpoints)
                early[pid] = [label, watermark, False, ts, label_kpis or None, label_invalid]
                continue
            delay = ts - entries[0][4]
            if delay >= 0:   # a label stamped before its prediction is another clock's doing, not a delay
                self.label_delay.observe(delay)
            for name, prediction, score, segment, _ in entries:
                if not joined or joined[-1][0] != name:
                    joined.append([name, [], [], [], [], [], []])
                run = joined[-1]
                run[1].append(prediction), run[2].append(score), run[3].append(label), run[4].append(segment)
                run[5].append(label_kpis), run[6].append(label_invalid)
        for name, predictions, scores, labels, segments, kpis, invalid in joined:
            out += self.versions[name].add_labels(predictions, scores, labels, clock, segments, kpis, invalid)
        self._expire()
        return out

    def _windows_closed(self) -> int:
        return sum(v.window_index for v in self.versions.values())

    def _compare(self, out: list) -> None:
        """Champion/challenger: the newest version against the champion, on labelled events."""
        settings = self.settings
        names = list(self.versions)
        challenger = names[-1]
        champion = settings.champion if settings.champion in self.versions else max(
            names[:-1], key=lambda n: self.versions[n].counts["predictions"])
        if champion == challenger:
            return
        a, b = self.versions[champion], self.versions[challenger]
        if a.task != b.task or a.task is None:
            return
        result = compare_versions(list(a.recent_errors), list(b.recent_errors), a.task,
                                  settings.comparison_min_labelled, settings.comparison_alpha)
        outcomes = {"latency": latency_difference(a.latency, b.latency),   # issue 15
                    "kpis": compare_kpis(a.kpis, b.kpis)}
        decided_on = settings.compare_on
        if decided_on.startswith("kpi:"):
            name = decided_on[4:]
            on_kpi = recommend_on_kpi(outcomes["kpis"][name], settings.kpis[name],
                                      settings.comparison_min_labelled, settings.comparison_alpha)
            if result is None or on_kpi is None:
                return
            kpi = outcomes["kpis"][name]   # the alert's numbers are then the KPI's Welch test
            result = dataclasses.replace(result, detector="comparison.kpi_welch_t", statistic=kpi.difference,
                                         p_value=kpi.p_value, effect_size=kpi.difference, effect_name=decided_on,
                                         evidence={**result.evidence, "recommendation": on_kpi,
                                                   "recommendation_on_error": result.evidence["recommendation"]})
        if result is None:
            return
        recommendation = result.evidence["recommendation"]
        key = (champion, challenger)
        if self._last_comparison.get(key) == recommendation:
            return
        self._last_comparison[key] = recommendation
        b._emit(out, make_alert(
            model=self.model, model_version=challenger, kind="comparison",
            severity="warning" if recommendation == "rollback" else "info", detector=result.detector,
            feature=None, statistic=result.statistic, p_value=result.p_value, threshold=result.threshold,
            window={"index": b.window_index, "labelled": b.counts["labelled"], "start": None, "end": self.clock,
                    "n": result.evidence["n_challenger"]},
            reference={"champion": champion, **a.reference_info},
            evidence={**result.evidence, "champion": champion, "challenger": challenger,
                      "champion_metrics": a.rolling_metrics(), "challenger_metrics": b.rolling_metrics(),
                      "compare_on": decided_on, "latency": outcomes["latency"],
                      "kpis": {k: c.to_dict() for k, c in outcomes["kpis"].items()}},
            id_parts=(champion, recommendation, b.window_index), config_version=self.config_version,
            message=f"{challenger} vs {champion}: {recommendation} "
                    f"(error {result.evidence['error_challenger']:.3f} vs {result.evidence['error_champion']:.3f}"
                    + (f"; {outcomes['kpis'][decided_on[4:]].summary()}, decided on it)" if decided_on != "error" else ")")))

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
        """Drop joins older than the label TTL (prediction event time), then enforce the hard cap.

        A prediction waits for its label until the watermark is ``label_ttl_seconds``
        past it; a label that came first waits as long for its prediction, counted from
        the watermark when it arrived. A label joined early is kept until then too (a
        shadow version's prediction may still come), and only unjoined ones count as expired.
        """
        horizon = self.watermark - self.settings.label_ttl_seconds
        pending, early, counts = self._pending, self._early_labels, self.counts
        while pending and next(iter(pending.values()))[0][-1] < horizon:
            pending.popitem(last=False)
            counts["expired_unlabelled"] += 1
        cap = self.settings.max_pending_labels
        while early and (len(early) > cap or next(iter(early.values()))[1] < horizon):
            counts["expired_labels"] += not early.popitem(last=False)[1][2]   # joined ones are not lost
        while len(pending) > cap:
            pending.popitem(last=False)
            counts["evicted_unlabelled"] += 1


    def status(self) -> dict:
        return {
            "model": self.model,
            "pending_labels": len(self._pending),
            "early_labels": len(self._early_labels),
            "join": dict(self.counts),
            "versions": {name: v.status() for name, v in self.versions.items()},
        }
