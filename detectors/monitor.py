"""The per-model monitor: the composition of the per-version concerns and the label join. Pure: no I/O.

One :class:`ModelMonitor` per model holds every version of it and the label join
(a label carries ``model``, so a prediction and its label meet in the same
monitor whichever arrives first). Each :class:`VersionMonitor` composes what one
version needs, each concern in its own module and built from the settings:

- :mod:`detectors.window`: the open window (column buffer, when it closes);
- :mod:`detectors.window_tests`: the tests of a closed window and their findings;
- :mod:`detectors.performance_watch`: labels against the baseline, the concept detector, CBPE;
- :mod:`detectors.outcomes`: serving latency and business KPIs;
- :mod:`detectors.lifecycle`: alerts announced, resolved and recorded;
- :mod:`detectors.retrain_policy`: when to ask for retraining.

Methods return what they emit, in the order it was raised: a version's methods as typed
records (:class:`detectors.alerts.Alert`, :class:`detectors.alerts.RetrainRequest`), the
model's public methods as the stream layer takes them, ``("alert", dict)`` and
``("retrain", dict)`` in the wire format (:func:`detectors.alerts.wire`). A monitor's state is
plain data by ``to_state()`` (each collaborator's own), and ``from_state`` gives exactly this
monitor back: the stream layer checkpoints it as bytes of an explicit, versioned format
(:data:`detectors.monitor_state.CHECKPOINT_FORMAT`) and restores it after a crash or a rebalance;
checkpoints of the older pickled layouts are migrated on restore (:mod:`detectors.monitor_state`).

Per-event work is an append to column buffers and a dict look-up; the
statistical tests run once per window on numpy arrays.
"""
from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np

from detectors.alerts import build_alert, wire
from detectors.base import json_safe_tree
from detectors.buckets import DURATION_BUCKETS, BucketCounts
from detectors.calibration import calibrate
from detectors.columns import LabelColumns, PredictionColumns
from detectors.comparison import compare_versions
from detectors import label_batch
from detectors.fairness import SegmentStats
from detectors.histogram import histograms
from detectors.kpi import compare_kpis, recommend_on_kpi
from detectors.latency import latency_difference
from detectors.lifecycle import AlertIssuer
from detectors.join import LabelJoin
from detectors.monitor_state import migrate_model_state, migrate_version_state
from detectors.outcomes import OutcomeWatch
from detectors.outputs import OUTPUT_COLUMNS, PREDICTION, SCORE, as_class, infer_task
from detectors.performance_watch import PerformanceWatch, metric_value
from detectors.profile import ReferenceProfile, WindowColumn
from detectors.retrain_policy import RetrainPolicy
from detectors.settings import ModelSettings
from detectors.state_values import decode, encode
from detectors.suite import WindowSettings
from detectors.window import ColumnBuffer, OpenWindow
from detectors.window_buffer import RawColumns, WindowBuffer
from detectors.window_tests import WindowTests, checked

SMALL_BATCH = 8            # fewer rows go row by row: numpy's per-call cost outweighs the columns


_as_class = as_class       # the name tests and older code import
__all__ = ["ColumnBuffer", "ModelMonitor", "VersionMonitor", "_as_class"]


def _forward(part: str, name: str, doc: str = ""):
    """A read-write attribute of the version kept by one of its collaborators."""
    return property(lambda self: getattr(getattr(self, part), name),
                    lambda self, value: setattr(getattr(self, part), name, value), doc=doc or f"``{part}.{name}``")


class VersionMonitor:
    """Reference, windows, metrics and alert lifecycle of one model version: the composition.

    The reference (and its calibration) is the version's own, shared by its collaborators;
    the rest lives in them: ``open`` (:class:`~detectors.window.OpenWindow`), ``tests``
    (:class:`~detectors.window_tests.WindowTests`), ``performance``
    (:class:`~detectors.performance_watch.PerformanceWatch`), ``outcomes``
    (:class:`~detectors.outcomes.OutcomeWatch`), ``alerts`` (:class:`~detectors.lifecycle.AlertIssuer`)
    and ``retrain`` (:class:`~detectors.retrain_policy.RetrainPolicy`).
    """

    def __init__(self, model: str, version: str, settings: ModelSettings, config_version: str = ""):
        self.model = model
        self.version = version
        self.settings = settings
        self.config_version = config_version
        self.window_settings = WindowSettings.from_dict(settings.drift)
        self.task = None if settings.task == "auto" else settings.task
        self.reference: ReferenceProfile | None = None
        self.reference_info: dict = {}
        self.calibration: dict | None = None
        self.unpublished_reference = False
        self._reference_rows = ColumnBuffer()
        self._reference_segments: list = []    # each reference row's segment, for per-segment references
        self.partition = None
        self.counts = {"predictions": 0, "labelled": 0, "windows": 0, "alerts": 0, "check_errors": 0,
                       "score_out_of_range": 0, "retrain_requests": 0, "retrain_suppressed": 0,
                       "features_dropped": 0}
        self._feature_names: set = set()    # admitted names, at most settings.max_features
        self.segments = SegmentStats()      # per-segment rates: fairness (fed by predictions and labels)
        self.last_window: dict = {}
        self.window_test_seconds = BucketCounts(DURATION_BUCKETS)   # exposed as a Prometheus histogram
        self.closed_windows: list = []      # summaries for the window history, taken by the stream layer
        self.open = OpenWindow()
        self.tests = WindowTests(settings, self.window_settings)
        self.performance = PerformanceWatch(settings, self.counts)
        self.outcomes = OutcomeWatch(settings, self.window_settings)
        self.alerts = AlertIssuer(model, version, settings, config_version, self.counts)
        self.retrain = RetrainPolicy(model, version, settings, self.counts)

    def __setstate__(self, state: dict) -> None:
        """Checkpoints of the single-class layout (every attribute on the version) are migrated;
        an open window held as lists (checkpoints before the typed buffer) becomes typed columns."""
        self.__dict__.update(migrate_version_state(state))
        if self.reference is not None:
            self.open.adopt(self.reference, self.settings.window_size)

    def to_state(self) -> dict:
        """Plain data (:mod:`detectors.monitor_state`): the version's fields and each collaborator's
        ``to_state()``. The settings are the model's (:meth:`ModelMonitor.to_state`); the reference
        stays the profile object, which the stream layer stores once, apart from checkpoints."""
        return {"version": self.version, "config_version": self.config_version,
                "window_settings": self.window_settings.to_dict(), "task": self.task, "reference": self.reference,
                "reference_info": self.reference_info, "calibration": self.calibration,
                "unpublished_reference": self.unpublished_reference,
                "reference_rows": {"columns": self._reference_rows.columns(), "n": self._reference_rows.n},
                "reference_segments": None if self._reference_segments is None else encode(self._reference_segments),
                "partition": self.partition, "counts": dict(self.counts), "feature_names": sorted(self._feature_names),
                "segments": self.segments.to_state(), "last_window": self.last_window,
                "window_test_seconds": self.window_test_seconds.to_state(), "closed_windows": list(self.closed_windows),
                "open": self.open.to_state(), "tests": self.tests.to_state(),
                "performance": self.performance.to_state(), "outcomes": self.outcomes.to_state(),
                "alerts": self.alerts.to_state(), "retrain": self.retrain.to_state()}

    @classmethod
    def from_state(cls, state: dict, model: str, settings: ModelSettings) -> "VersionMonitor":
        name, config_version = state["version"], state["config_version"]
        version = cls(model, name, settings, config_version)
        counts = version.counts
        counts.update(state["counts"])   # one dict, shared with the collaborators
        version.window_settings = WindowSettings.from_dict(state["window_settings"])
        version.task, version.reference = state["task"], state["reference"]
        version.reference_info, version.calibration = state["reference_info"], state["calibration"]
        version.unpublished_reference = state["unpublished_reference"]
        version._reference_rows.extend(state["reference_rows"]["columns"], state["reference_rows"]["n"])
        segments = state["reference_segments"]
        version._reference_segments = None if segments is None else decode(segments)
        version.partition = state["partition"]
        version._feature_names = set(state["feature_names"])
        version.segments = SegmentStats.from_state(state["segments"])
        version.last_window = state["last_window"]
        version.window_test_seconds = BucketCounts.from_state(state["window_test_seconds"])
        version.closed_windows = list(state["closed_windows"])
        version.open = OpenWindow.from_state(state["open"], version.reference, settings.window_size)
        version.tests = WindowTests.from_state(state["tests"], settings, version.window_settings)
        version.performance = PerformanceWatch.from_state(state["performance"], settings, counts)
        version.outcomes = OutcomeWatch.from_state(state["outcomes"], settings, version.window_settings)
        version.alerts = AlertIssuer.from_state(state["alerts"], model, name, settings, config_version, counts)
        version.retrain = RetrainPolicy.from_state(state["retrain"], model, name, settings, counts)
        return version

    # -- attributes kept by the collaborators, under the names status, tests and the stream layer use --
    window = property(lambda self: self.open.rows, doc="The open window's rows (a WindowBuffer once the reference is set).")
    window_index = _forward("open", "index")
    segment_window_settings = _forward("tests", "segment_window_settings")
    segment_calibration = _forward("tests", "segment_calibration")
    quality = _forward("tests", "quality")
    domain = _forward("tests", "domain")
    latency = _forward("outcomes", "latency")
    kpis = _forward("outcomes", "kpis")
    baseline = _forward("performance", "baseline")
    cbpe = _forward("performance", "cbpe")
    estimate = _forward("performance", "estimate")
    recent_errors = _forward("performance", "recent_errors")
    concept = _forward("performance", "concept")
    _cbpe_fit = _forward("performance", "cbpe_fit")
    _baseline_errors = _forward("performance", "baseline_errors")
    _suspect_left = _forward("performance", "suspect_left")
    _primary = _forward("performance", "primary")
    _metrics_suite = _forward("performance", "metrics_suite")
    _metrics = property(lambda self: self.performance.overall, doc="Overall metrics by name.")
    _rolling = property(lambda self: self.performance.rolling, doc="Rolling metrics by name.")
    lifecycle = _forward("alerts", "lifecycle")
    last_alerts = _forward("alerts", "last_alerts")
    deployed_at = _forward("retrain", "deployed_at")
    last_retrain_at = _forward("retrain", "last_retrain_at")
    suppressed_retrains = _forward("retrain", "suppressed_retrains")

    # -- reference ---------------------------------------------------------------
    def set_reference(self, profile: ReferenceProfile, source: str) -> None:
        self.reference = profile
        self.tests.segment_window_settings = self.window_settings
        self.reference_info = {"reference_id": profile.reference_id, "source": source, "n": profile.n,
                               "calibration": self.calibration,
                               "alpha": self.window_settings.alpha, "correction": self.window_settings.correction}
        self.open.rows = WindowBuffer(profile, self.settings.window_size)
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
            self.tests.calibrate_segments(columns, segments, profile)
        self.unpublished_reference = True   # the stream layer archives it (audits recompute from it)

    # -- predictions -------------------------------------------------------------
    def _start(self, prediction, score) -> None:
        if self.task is None:
            self.task = infer_task(prediction, score)
        self.performance.start(self.task)

    def add_prediction(self, event: dict, offset, owned: bool = False) -> list:
        """Append one validated prediction (to the reference while it is being built, else to the
        open window); returns what it emits. ``owned``: the event's ``features`` dict is the caller's
        to give away (:meth:`_add_rows`' events), and becomes the row instead of a copy of it."""
        if self.task is None or self.performance.metrics_suite is None:
            self._start(event["prediction"], event["score"])
        out: list = []
        ts = event["timestamp"]
        if self.retrain.deployed_at is None:
            self.retrain.deployed_at = ts
        self.counts["predictions"] += 1
        features = event["features"]
        if self._feature_names.issuperset(features):
            row = features if owned else dict(features)
        else:
            row = self._admit(features)
        row[PREDICTION] = event["prediction"]
        row[SCORE] = event["score"]
        score = event["score"]
        if score is not None and not 0.0 <= score <= 1.0:
            self.open.out_of_range += 1
            self.counts["score_out_of_range"] += 1
        elif self.settings.output_range and not isinstance(event["prediction"], (str, bool)):
            low, high = self.settings.output_range
            if not low <= event["prediction"] <= high:
                self.open.out_of_range += 1
                self.counts["score_out_of_range"] += 1
        if event.get("latency_ms") is not None:
            self.outcomes.latency.add(event["latency_ms"])
        if event.get("kpis") or event.get("invalid_kpis"):
            self.outcomes.observe_event(event["kpis"], event["invalid_kpis"], event["segment"])
        if event["segment"] and self.task == "classification":
            self.segments.add_prediction(event["segment"], as_class(event["prediction"]))
        if self.settings.retrain_max_interval:
            out += self.retrain.scheduled(ts)
        if self.reference is None:
            self._reference_rows.append(row)
            if self._reference_segments is not None:
                self._reference_segments.append(event["segment"])
            if self._reference_rows.n >= self.settings.reference_size:
                self._build_reference()
            return out
        self.open.append(row, event["segment"], ts, offset)
        settings = self.settings
        if self.open.rows.n >= settings.window_size or self.open.due_by_time(ts, settings.min_window_size,
                                                                         settings.window_seconds):
            out += self.close_window()
        return out

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
        settings = self.settings
        new_names = [name for name in batch.feature_names() if name not in self._feature_names]
        over_cap = bool(new_names) and len(self._feature_names) + len(new_names) > settings.max_features
        if n < SMALL_BATCH or settings.retrain_max_interval or over_cap:
            # names past the cap are dropped per event that has a value for them
            return self._add_rows(batch, offset, rows, labels, keep_missing=not over_cap)
        self._feature_names.update(new_names)
        self._start(batch.prediction[0], None if batch.score[0] != batch.score[0] else batch.score[0])
        ts = batch.ts
        if self.retrain.deployed_at is None:
            self.retrain.deployed_at = float(ts[0])
        out_of_range = self._out_of_range(batch)
        columns = {**batch.features, PREDICTION: batch.prediction, SCORE: batch.score}   # arrays stay arrays
        segment_rows = batch.segment_rows()
        classification = batch.prediction if self.task == "classification" else None
        pending_labels = sorted(labels, key=lambda item: item[0])
        next_label = 0
        # Latency and KPIs are fed up to a row before its early label joins and before a window
        # closes, so the trackers see the order the row-by-row path gives them.
        feed = self.outcomes.feeder(batch)
        window = self.open
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
                    window = self.open
                continue
            cut = window.cut(ts, i, settings.window_size, settings.min_window_size, settings.window_seconds)
            stop = n if cut is None else cut + 1
            self._take(i, stop, out_of_range, segment_rows, classification)
            window.extend({k: v[i:stop] for k, v in columns.items()}, segment_rows[i:stop], ts[i:stop],
                          None if offset is None else [offset, rows[i]],
                          None if offset is None else [offset, rows[stop - 1]])
            if cut is not None:
                # labels of the rows before the closing one come before the close, its own after it
                next_label = self._join_early(pending_labels, next_label, cut, batch, segment_rows, out, feed)
                feed(stop)
                out += self.close_window()
            next_label = self._join_early(pending_labels, next_label, stop, batch, segment_rows, out, feed)
            feed(stop)
            i = stop
        return out

    def _take(self, i: int, stop: int, out_of_range: np.ndarray, segment_rows: list, predictions: list | None) -> None:
        """Counts of rows ``i:stop`` as they enter the reference or the window."""
        self.counts["predictions"] += stop - i
        bad = int(out_of_range[i:stop].sum())
        self.open.out_of_range += bad
        self.counts["score_out_of_range"] += bad
        if predictions is not None:   # classification: per-segment positive rates
            self.segments.add_predictions(segment_rows[i:stop], predictions[i:stop], as_class)

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
        """Join the early labels of rows before ``stop`` (what they emit goes to ``out``); returns
        the index of the next one. ``feed(row + 1)`` first: the row's latency and KPIs are in before its label.

        Consecutive labels without KPIs go in one :meth:`add_labels` call, each at its own join
        clock: it takes them one by one as these calls would, and without KPIs nothing in it reads
        what ``feed`` fed (a label with KPIs checks them when due: it goes alone, after its row's feed)."""
        end = start
        while end < len(labels) and labels[end][0] < stop:
            end += 1
        prediction, score_of = batch.prediction, batch.score
        while start < end:
            run = start + 1
            if not (labels[start][3] or labels[start][4]):
                while run < end and not (labels[run][3] or labels[run][4]):
                    run += 1
            taken = labels[start:run]
            rows = [item[0] for item in taken]
            if feed is not None:
                feed(rows[-1] + 1)
            scores = score_of[rows].tolist()
            clocks = [item[2] for item in taken]
            out += self.add_labels([prediction[r] for r in rows], [None if s != s else s for s in scores],
                                   [item[1] for item in taken], clocks if len(set(clocks)) > 1 else clocks[0],
                                   [segment_rows[r] for r in rows], [item[3] for item in taken],
                                   [item[4] for item in taken])
            start = run
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
            out += self.add_prediction(event, None if offset is None else [offset, rows[j]], owned=True)
            for label, clock, kpis, invalid in by_row.get(j, ()):
                out += self.add_label(event["prediction"], event["score"], label, clock, event["segment"],
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

    def on_tick(self, now: float) -> list:
        """A wall-clock tick; returns what it emits (a window open across ticks may close)."""
        if self.reference is None:
            self.open.first_tick = None
            return []
        if self.open.due_by_tick(now, self.settings.min_window_size, self.settings.window_seconds):
            return self.close_window()
        return []

    def maybe_close_by_time(self, now: float) -> list:
        if self.open.due_by_time(now, self.settings.min_window_size, self.settings.window_seconds):
            return self.close_window()
        return []

    # -- windows -----------------------------------------------------------------
    def _window_bounds(self) -> dict:
        return self.open.bounds(self.partition)

    def _converted(self) -> tuple:
        """The window's columns as its checks take them, and as raw values (CBPE reads the
        predictions): those the reference knows as :class:`WindowColumn`, shared by every check
        of the window (drift, data quality, domain classifier). A typed buffer gives them from its
        arrays; rows held as lists (a window restored from an old checkpoint) are converted."""
        rows = self.open.rows
        if isinstance(rows, WindowBuffer):
            return rows.window_columns(), RawColumns(rows)
        raw = rows.columns()
        kinds = self.reference.features
        return {name: WindowColumn(values, kinds[name].value_type) if name in kinds else values
                for name, values in raw.items()}, raw

    def close_window(self) -> list:
        """Test the window, return what it found, and start the next one.

        The next window starts whatever happens: a check that raises (a bug, or input it
        cannot handle) is recorded in ``last_window["errors"]`` and the other checks still
        run, so one bad value can never stop a model's monitoring.
        """
        started = time.perf_counter()
        try:
            return self._test_window()
        finally:
            self.window_test_seconds.observe(time.perf_counter() - started)
            self._next_window()

    def _common(self) -> dict:
        """What every outcome alert of this version carries but its window."""
        return {"model": self.model, "model_version": self.version,
                "reference": self.reference_info, "window_index": self.open.index,
                "config_version": self.config_version}

    def _outcome_alerts(self, latency, bounds: dict, closing: bool = True) -> tuple[list, list]:
        """Latency and KPI alerts (:meth:`detectors.outcomes.OutcomeWatch.alerts`), emitted:
        returns (what is emitted, the alerts announced)."""
        decisions, bounds = self.outcomes.alerts(latency, bounds, self.alerts, self._common(), self.last_window,
                                                 closing)
        out, announced = [], []
        for what, kind, item in decisions:
            if what == "announce":
                out.append(self.alerts.emit(item))
                announced.append(item)
            else:
                out.append(self.alerts.emit(self.alerts.resolved_alert(kind, item, bounds, self.reference_info,
                                                                       self.open.index)))
        return out, announced

    def _test_window(self) -> list:
        window, alerts = self.open, self.alerts
        columns, raw = self._converted()
        active_gaps = alerts.active("fairness")
        found = self.tests.run(self.reference, raw, columns, self.window_settings, window, self.performance,
                               self.segments, active_gaps, self.outcomes.latency, self.counts)
        report, findings, latency = found.report, found.findings, found.latency
        bounds = self._window_bounds()
        out, emitted = self._outcome_alerts(latency, bounds)
        for kind, results in findings.items():
            announce, resolved = alerts.lifecycle.observe(window.index, kind, set(results),
                                                          found.undecided.get(kind, frozenset()))
            if announce:
                ordered = sorted(results.values(), key=lambda r: (r.p_value if r.p_value is not None else 1.0,
                                                                   -(r.effect_size or 0.0)))
                alert = alerts.window_alert(kind, list(results), ordered, report, bounds, self.reference,
                                            self.reference_info, window.index)
                out.append(alerts.emit(alert))
                emitted.append(alert)
            for key in resolved:
                out.append(alerts.emit(alerts.resolved_alert(kind, key, bounds, self.reference_info, window.index)))
        if self.performance.baseline is not None:  # a slow decline the concept detector missed still alerts
            performance = self._check_performance(bounds["end"], trigger="rolling_window")
            out += performance
            emitted += [record for record in performance if record.kind == "performance"]
        out += self.retrain.after_window(emitted, bounds, bool(findings["input_drift"]))
        self.last_window = {
            **bounds,
            "drift": {r.feature: {"detector": r.detector, "statistic": r.statistic, "p_value": r.p_value,
                                  "threshold": r.threshold, "effect_size": r.effect_size, "drifted": r.drifted}
                      for r in report.results if r.detector in ("ks", "chi_squared", "prediction_ks",
                                                                "prediction_chi_squared")},
            "drifted_features": sorted(k for kind in ("input_drift", "prediction_drift") for k in findings[kind]),
            "findings": {kind: sorted(keys) for kind, keys in findings.items() if keys},
            "segments": self.segments.summary(),
            "segment_drift": dict(self.tests.segment_report),
            "latency": latency.to_dict() if latency is not None else None,
            "kpis": self.outcomes.kpis.summary(),
            "errors": dict(found.errors),
        }
        self.closed_windows.append(self._window_summary(report, columns, found.errors))
        del self.closed_windows[:-64]       # bounded when no stream layer takes them (tests, benchmarks)
        return out

    def _window_summary(self, report, columns: dict, errors: dict) -> dict:
        """What the window history keeps of a tested window: every feature's test with both
        sides' summaries and histograms (on the reference's bins, at most 30), the metrics and
        estimate at its close, and the alerts raised since the previous window closed (the
        window's own, and performance or comparison alerts that labels raised meanwhile)."""
        alerts = self.alerts.take_since_window()
        features = {}
        for name, result in self.last_window["drift"].items():
            profile = self.reference.features.get(name)
            features[name] = {**result, "reference": profile.summary if profile else None,
                              "current": report.summaries.get(name)}
            if profile is not None and name in columns:
                bins = checked(errors, self.counts, "histogram", lambda: histograms(profile, columns[name]), None)
                if bins is not None:
                    features[name]["histogram"] = {"bins": bins[0][:30], "reference": bins[1][:30].tolist(),
                                                   "current": bins[2][:30].tolist()}
        window = self.last_window
        return json_safe_tree({
            "model": self.model, "model_version": self.version, "index": window["index"],
            "start": window["start"], "end": window["end"], "n": window["n"], "features": features,
            "drifted_features": window["drifted_features"], "findings": window["findings"],
            "metrics": self.rolling_metrics(), "estimate": dict(self.performance.estimate),
            "alerts": alerts, "latency": window["latency"], "kpis": window["kpis"],
            "errors": window["errors"],
        })

    def _next_window(self) -> None:
        self.segments.reset_window()
        self.counts["windows"] += 1
        self.open.next()

    # -- labels ------------------------------------------------------------------
    def add_label(self, prediction, score, label, ts: float, segment: dict | None = None,
                  kpis: dict | None = None, invalid_kpis: list | None = None) -> list:
        """One joined label (see :meth:`add_labels`); returns what it emits.

        :meth:`add_labels`' loop for one label: the metrics take it alone, as a run of one, before the
        concept detector sees it (it reads errors, not the metrics), then the check it may call for."""
        out: list = []
        outcome = self._label_outcome(prediction, score, label, ts, segment, kpis, invalid_kpis, out)
        if outcome is None:
            return out
        performance = self.performance
        performance.update([outcome[0]], [outcome[1]], [score])
        if performance.observe(*outcome):
            self._concept_check(ts, out)
        return out

    def _label_outcome(self, prediction, score, label, ts: float, segment, kpis, invalid_kpis, out: list):
        """One joined label counted, its KPIs observed (a KPI check due appends to ``out``), its
        segment counts and the CBPE fit fed: ``(y_true, y_pred, error)``, or None for a regression
        label or prediction that is not a number (skipped)."""
        counts = self.counts
        counts["labelled"] += 1
        if kpis or invalid_kpis:
            self.outcomes.observe_event(kpis or {}, invalid_kpis, segment)
            if self.outcomes.kpis.due():
                out += self._outcome_alerts(None, {"index": self.open.index, "labelled": counts["labelled"],
                                                   "start": None, "end": ts, "n": None}, closing=False)[0]
        if self.task == "classification":
            y_true, y_pred = as_class(label), as_class(prediction)
            if segment:
                self.segments.add_label(segment, y_true, y_pred, ts)
            if self.performance.cbpe is None:   # until it is fitted
                self.performance.fit_cbpe(score, y_true, y_pred)
            return y_true, y_pred, float(y_true != y_pred)
        try:
            y_true, y_pred = float(label), float(prediction)
        except (TypeError, ValueError):
            return None
        return y_true, y_pred, abs(y_true - y_pred)

    def _concept_check(self, ts: float, out: list) -> None:
        """The performance check a label called for (:meth:`PerformanceWatch.observe`), and the
        retrain request that may follow it, appended to ``out``."""
        found = self._check_performance(ts, trigger=self.performance.concept.name)
        out += found
        alert = next((record for record in found if record.kind == "performance"), None)
        out += self.retrain.after_performance(alert, ts)

    def add_labels(self, predictions: list, scores: list, labels: list, ts: float | list,
                   segments: list | None = None, kpis: list | None = None, invalid_kpis: list | None = None) -> list:
        """Joined labels with their predictions' outputs, in join order; returns what they emit.

        ``ts``: the monitor clock they joined at, one for all or one per label (early labels
        joined along a batch of predictions, each at the clock of its row).

        The metrics take the labels in one numpy update per run between two performance
        checks (a check reads the rolling metric as of its label); the concept detector,
        the baseline, the segment counts and the CBPE fit see them one by one, as before.
        ``kpis``/``invalid_kpis``: per label, its KPIs (name -> number) and the names the
        contract refused (issue 15); KPIs are observed, and checked when due, label by label.
        One label is :meth:`add_label`'s (the same updates without the lists).
        """
        if len(labels) == 1:
            return self.add_label(predictions[0], scores[0], labels[0], ts[0] if type(ts) is list else ts,
                                  segments[0] if segments else None,
                                  kpis[0] if kpis else None, invalid_kpis[0] if invalid_kpis else None)
        return self._add_label_runs(predictions, scores, labels, ts, segments, kpis, invalid_kpis)

    def _add_label_runs(self, predictions: list, scores: list, labels: list, ts: float,
                        segments: list | None, kpis: list | None, invalid_kpis: list | None) -> list:
        """:meth:`add_labels` of any number of labels: the metrics updated per run between two checks."""
        out: list = []
        if label_batch.quiet(self, len(labels), kpis, invalid_kpis):   # nothing watched: per batch up to a concept drift
            taken = label_batch.fold_quiet_labels(self, as_class, predictions, scores, labels, segments, ts, out)
            predictions, scores, labels = predictions[taken:], scores[taken:], labels[taken:]
            segments, kpis, invalid_kpis = (x[taken:] if x else x for x in (segments, kpis, invalid_kpis))
            if type(ts) is list:
                ts = ts[taken:]
        clocks = ts if type(ts) is list else itertools.repeat(ts)
        segments = segments or [None] * len(labels)
        kpis = kpis or [None] * len(labels)
        invalid_kpis = invalid_kpis or [None] * len(labels)
        pending_true, pending_pred, pending_score = [], [], []
        performance = self.performance

        def flush():
            if pending_true:
                performance.update(pending_true, pending_pred, pending_score)
                pending_true.clear(), pending_pred.clear(), pending_score.clear()

        for prediction, score, label, clock, segment, kpi, invalid in zip(predictions, scores, labels, clocks,
                                                                          segments, kpis, invalid_kpis):
            outcome = self._label_outcome(prediction, score, label, clock, segment, kpi, invalid, out)
            if outcome is None:
                continue
            pending_true.append(outcome[0])
            pending_pred.append(outcome[1])
            pending_score.append(score)
            if performance.observe(*outcome):
                flush()
                self._concept_check(clock, out)
        flush()
        return out

    def _check_performance(self, ts: float, trigger: str) -> list:
        """The performance alert, or the resolved alert ending one, that the rolling metric
        raises now (:meth:`detectors.performance_watch.PerformanceWatch.check`), emitted."""
        decision, fields = self.performance.check(ts, trigger, self.open.index)
        if decision == "resolved":
            return [self.alerts.emit(self.alerts.resolved_alert("performance", self.performance.primary,
                                                                self._window_bounds(), self.reference_info,
                                                                self.open.index))]
        if decision != "alert":
            return []
        return [self.alerts.emit(build_alert(model=self.model, model_version=self.version,
                                            reference=self.reference_info, config_version=self.config_version,
                                            **fields))]

    # -- output ------------------------------------------------------------------
    def rolling_metrics(self) -> dict:
        """None for every metric until a label came (river reports an empty accuracy as 0)."""
        return self.performance.rolling_metrics()

    def status(self) -> dict:
        performance = self.performance
        return {
            "model": self.model,
            "model_version": self.version,
            "task": self.task,
            "counts": dict(self.counts),
            "reference": self.reference_info or {"source": "building", "n": self._reference_rows.n},
            "baseline": {performance.primary: performance.baseline} if performance.primary else {},
            "metrics": {name: metric_value(m) if self.counts["labelled"] else None
                        for name, m in (performance.overall or {}).items()},
            "rolling_metrics": self.rolling_metrics(),
            "open_window": {"index": self.open.index, "n": self.open.n},
            "last_window": self.last_window,
            "active_conditions": [list(k) for k in self.alerts.lifecycle.active()],
            "last_alerts": list(self.alerts.last_alerts),
            "last_retrain_at": self.retrain.last_retrain_at,
            "deployed_at": self.retrain.deployed_at,
            "suppressed_retrains": list(self.retrain.suppressed_retrains),
            "latency": self.outcomes.latency.status(),
            "kpis": self.outcomes.kpis.status(),
        }


class ModelMonitor:
    """Every version of one model, the prediction/label join (``join``, :class:`detectors.join.LabelJoin`)
    and the champion/challenger comparison."""

    def __init__(self, model: str, settings: ModelSettings, config_version: str = ""):
        self.model = model
        self.settings = settings
        self.config_version = config_version
        self.versions: dict[str, VersionMonitor] = {}
        self.join = LabelJoin(settings)
        self.applied_offsets: dict = {}             # partition -> last offset folded into this state
        self._last_comparison: dict = {}

    def __setstate__(self, state: dict) -> None:
        """Checkpoints of the layout before the join had its own class are migrated."""
        self.__dict__.update(migrate_model_state(state))

    def to_state(self) -> dict:
        """This monitor as plain data: the body of a checkpoint of format
        :data:`detectors.monitor_state.CHECKPOINT_FORMAT` (the stream layer adds the format and the
        outbox). Not a copy: pickle it before the monitor takes more events."""
        return {"model": self.model, "settings": self.settings.to_state(), "config_version": self.config_version,
                "versions": [version.to_state() for version in self.versions.values()],
                "join": self.join.to_state(), "applied_offsets": dict(self.applied_offsets),
                "last_comparison": [[*pair, recommendation] for pair, recommendation in self._last_comparison.items()]}

    @classmethod
    def from_state(cls, state: dict) -> "ModelMonitor":
        settings = ModelSettings.from_state(state["settings"])
        monitor = cls(state["model"], settings, state["config_version"])
        for recorded in state["versions"]:
            monitor.versions[recorded["version"]] = VersionMonitor.from_state(recorded, monitor.model, settings)
        monitor.join = LabelJoin.from_state(state["join"], settings)
        monitor.applied_offsets = dict(state["applied_offsets"])
        monitor._last_comparison = {(champion, challenger): recommendation
                                    for champion, challenger, recommendation in state["last_comparison"]}
        return monitor

    # the join's state, under the names status, tests and the stream layer use
    _pending = _forward("join", "pending")
    _early_labels = _forward("join", "early")
    clock = _forward("join", "clock", "Max prediction time: the retrain-policy and comparison clock.")
    source_clocks = _forward("join", "source_clocks")
    counts = _forward("join", "counts", "The join's counts (expired, evicted, duplicates).")
    label_delay = _forward("join", "label_delay")

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
        """Event time every source partition has passed (:attr:`detectors.join.LabelJoin.watermark`)."""
        return self.join.watermark

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
        closed = False   # a window closed: only the versions taking rows can close one
        by_version = self.join.predictions(batch)
        for name, (rows, labels) in by_version.items():
            version = self.version(name)
            version.partition = partition
            sub = batch if len(rows) == n else batch.take(rows)
            index = version.open.index
            out += version.add_columns(sub, offset, rows, labels)
            closed = closed or version.open.index != index
        self.join.expire()
        if closed and len(self.versions) > 1:
            out += self._compare()
        return wire(out) if out else out

    def add_labels(self, events: list) -> list:
        """Fold validated labels in (dicts; :meth:`add_label_columns` takes them as columns)."""
        return self.add_label_columns(LabelColumns.from_events(events))

    def add_label_columns(self, batch: LabelColumns) -> list:
        """Join a batch of labels with their predictions (prediction id -> pending entry) and give
        each version its joined labels in one call per run of consecutive labels of that version."""
        out: list = []
        clock = self.join.clock
        joined = self.join.labels(batch)
        for name, predictions, scores, labels, segments, kpis, invalid in joined:
            out += self.versions[name].add_labels(predictions, scores, labels, clock, segments, kpis, invalid)
        self.join.expire()
        return wire(out) if out else out

    def _compare(self) -> list:
        """Champion/challenger: the newest version against the champion, on labelled events;
        returns the comparison alert when the recommendation changed."""
        settings = self.settings
        names = list(self.versions)
        challenger = names[-1]
        champion = settings.champion if settings.champion in self.versions else max(
            names[:-1], key=lambda n: self.versions[n].counts["predictions"])
        if champion == challenger:
            return []
        a, b = self.versions[champion], self.versions[challenger]
        if a.task != b.task or a.task is None:
            return []
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
                return []
            kpi = outcomes["kpis"][name]   # the alert's numbers are then the KPI's Welch test
            result = dataclasses.replace(result, detector="comparison.kpi_welch_t", statistic=kpi.difference,
                                         p_value=kpi.p_value, effect_size=kpi.difference, effect_name=decided_on,
                                         evidence={**result.evidence, "recommendation": on_kpi,
                                                   "recommendation_on_error": result.evidence["recommendation"]})
        if result is None:
            return []
        recommendation = result.evidence["recommendation"]
        key = (champion, challenger)
        if self._last_comparison.get(key) == recommendation:
            return []
        self._last_comparison[key] = recommendation
        return [b.alerts.emit(build_alert(
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
                    + (f"; {outcomes['kpis'][decided_on[4:]].summary()}, decided on it)" if decided_on != "error" else ")")))]

    def tick(self, now: float) -> list:
        """A wall-clock tick, delivered through the stream so a replay sees the same ticks.

        A window that stays open across ticks spanning ``window_seconds`` is closed
        if it holds ``min_window_size`` predictions, so slow traffic still gets
        tested. Ticks never move the event clock (historical replays keep their TTLs).
        """
        out: list = []
        for version in self.versions.values():
            out += version.on_tick(now)
        return wire(out) if out else out

    def status(self) -> dict:
        return {
            "model": self.model,
            "pending_labels": len(self._pending),
            "early_labels": len(self._early_labels),
            "join": dict(self.counts),
            "versions": {name: v.status() for name, v in self.versions.items()},
        }
