"""Labels against the baseline for one model version: rolling metrics, the baseline over the
first labels, the concept detector on the error stream, the performance alert with its
hysteresis, and CBPE's estimate while labels are delayed. Pure: no I/O.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
from river import metrics, utils

from detectors.cbpe import CBPE, FitSample
from detectors.concept import make_concept_detector
from detectors.label_metrics import metric_suite, suite_from_state
from detectors.performance import drop_test
from detectors.settings import ModelSettings


def river_metric_suite(task: str, window: int) -> tuple[dict, dict, str]:
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


def metric_value(metric) -> float | None:
    try:
        value = float(metric.get())
    except (ZeroDivisionError, ValueError, TypeError):
        return None
    return value if math.isfinite(value) else None


class PerformanceWatch:
    """Joined labels of one version against its baseline; ``counts`` is the version's counter dict."""

    def __init__(self, settings: ModelSettings, counts: dict):
        self.settings = settings
        self.counts = counts
        self.concept = make_concept_detector(settings.concept_detector, **settings.concept_params)
        self.metrics_suite = None           # detectors.label_metrics, once the task is known
        self.primary = None
        self.baseline_metric = None
        self.baseline: float | None = None
        self.baseline_errors: list | None = []   # errors of the labels the baseline is computed on
        self.recent_errors: deque = deque(maxlen=settings.performance_window)
        self.suspect_left = 0
        self.announced: int | None = None   # window index of the last performance alert
        self.active = False                 # announced and not resolved (hysteresis)
        self.clear = 0                      # consecutive window closes with the gap below the hold level
        self.cbpe: CBPE | None = None
        self.cbpe_fit = FitSample()         # (score, label, prediction) of the first labelled events
        self.estimate: dict = {}            # CBPE's estimate of the last window (before labels come)

    def start(self, task: str) -> None:
        """The metrics of ``task``, at the first prediction."""
        if self.metrics_suite is None:
            self.metrics_suite, self.primary = metric_suite(task, self.settings.performance_window)
            self.baseline_metric = river_metric_suite(task, 1)[0][self.primary]

    @property
    def overall(self) -> dict | None:
        """Overall metrics by name (river-like views of :mod:`detectors.label_metrics`)."""
        return None if self.metrics_suite is None else self.metrics_suite.overall

    @property
    def rolling(self) -> dict | None:
        return None if self.metrics_suite is None else self.metrics_suite.rolling

    def fit_cbpe(self, score, y_true, y_pred) -> None:
        """A labelled classification event with a score in [0, 1], towards CBPE's calibration."""
        settings = self.settings
        if (self.cbpe is None and settings.estimate_performance and score is not None
                and isinstance(y_true, bool) and isinstance(y_pred, bool) and 0.0 <= score <= 1.0):
            self.cbpe_fit.append(score, y_true, y_pred)
            if len(self.cbpe_fit) >= settings.cbpe_reference_labels:
                fit_scores, fit_labels, fit_predictions = self.cbpe_fit.columns()
                self.cbpe = CBPE(max_drop=settings.performance_tolerance).fit(fit_scores, fit_labels, fit_predictions)
                self.cbpe_fit = FitSample()

    def observe(self, y_true, y_pred, error: float) -> bool:
        """One label's error, label by label (the metrics take theirs in batches, :meth:`update`);
        returns True when the performance is to be checked now, as of this label."""
        settings = self.settings
        if self.baseline is None:
            self.baseline_metric.update(y_true, y_pred)
            if self.baseline_errors is not None:
                self.baseline_errors.append(error)
            if self.counts["labelled"] >= settings.performance_window:
                self.baseline = metric_value(self.baseline_metric)
        self.recent_errors.append(error)
        self.concept.update(error)
        if self.concept.drift_detected:
            # The detector fires early, when the rolling metric has barely moved: keep checking
            # the gap for a rolling window's worth of labels instead of only at this instant.
            self.suspect_left = settings.performance_window
        if self.suspect_left and self.baseline is not None:
            self.suspect_left -= 1
            return self.concept.drift_detected or self.suspect_left % 25 == 0
        return False

    def update(self, y_true: list, y_pred: list, scores: list) -> None:
        """The rolling and overall metrics, one numpy update for a run of labels."""
        self.metrics_suite.update(y_true, y_pred, scores)

    def rolling_metrics(self) -> dict:
        """None for every metric until a label came (river reports an empty accuracy as 0)."""
        labelled = self.counts["labelled"] > 0
        return {name: metric_value(m) if labelled else None for name, m in (self.rolling or {}).items()}

    def check(self, ts: float, trigger: str, window_index: int) -> tuple[str, dict | None]:
        """``("alert", evidence)`` when the rolling metric is worse than baseline by the tolerance
        and a one-sided test given both sample sizes finds the drop significant
        (:func:`detectors.performance.drop_test`); ``("resolved", None)`` when an announced drop
        cleared; ``("", None)`` otherwise.

        Hysteresis: once announced, the condition holds while the gap stays above
        ``hysteresis`` x tolerance, and is resolved after ``resolve_windows`` window closes
        below it; it is re-announced at most every ``realert_windows`` windows.
        """
        rolling = metric_value(self.rolling[self.primary])
        if rolling is None or not self.recent_errors:
            return "", None
        settings = self.settings
        tol = settings.performance_tolerance
        test = drop_test(self.primary, self.baseline_errors, list(self.recent_errors), tol,
                         settings.performance_alpha, baseline=self.baseline,
                         n_baseline=settings.performance_window)
        if self.active and trigger == "rolling_window":
            if test.gap > settings.hysteresis * tol:
                self.clear = 0
            else:
                self.clear += 1
                if self.clear >= settings.resolve_windows:
                    self.active = False
                    self.clear = 0
                    return "resolved", None
        if self.announced is not None and window_index - self.announced < settings.realert_windows:
            return "", None  # cooldown: one performance alert per realert_windows windows
        if not test.drifted:
            return "", None
        self.announced = window_index
        self.active, self.clear = True, 0
        return "alert", self._alert_fields(test, ts, trigger, window_index)

    def _alert_fields(self, test, ts: float, trigger: str, window_index: int) -> dict:
        """What :func:`detectors.alerts.make_alert` takes for a performance alert, but the identity."""
        tol = self.settings.performance_tolerance
        bigger_is_better = self.rolling[self.primary].bigger_is_better
        gap = test.gap
        n = self.counts["labelled"]
        return dict(
            kind="performance", severity="critical" if gap > 2 * tol else "warning",
            detector=f"{trigger}+{self.primary}", feature=None, statistic=test.rolling,
            p_value=test.p_value, threshold=(test.baseline - tol) if bigger_is_better else test.baseline * (1 + tol),
            window={"index": window_index, "labelled": n, "size": self.settings.performance_window,
                    "end": ts, "start": None, "n": test.n_rolling},
            evidence={"metric": self.primary, "baseline": test.baseline, "rolling": test.rolling, "gap": gap,
                      "tolerance": tol, **test.evidence(), "rolling_metrics": self.rolling_metrics()},
            id_parts=("labelled", n),
            message=f"{self.primary} {test.rolling:.3f} vs baseline {test.baseline:.3f} "
                    f"(±{1.96 * test.baseline_se:.3f}; p={test.p_value:.2g}, {trigger})")

    # -- checkpoint ----------------------------------------------------------------
    def to_state(self) -> dict:
        """Plain data, but the concept detector (river's ADWIN or another, behind
        :class:`detectors.concept.ContinuousDetector`) and the baseline metric (a river metric):
        objects, pickled as river pickles them, for they have no simpler public state."""
        return {"concept": self.concept,
                "metrics": None if self.metrics_suite is None else self.metrics_suite.to_state(),
                "primary": self.primary, "baseline_metric": self.baseline_metric, "baseline": self.baseline,
                "baseline_errors": None if self.baseline_errors is None else np.asarray(self.baseline_errors,
                                                                                        dtype=np.float64),
                "recent_errors": np.asarray(self.recent_errors, dtype=np.float64),
                "suspect_left": self.suspect_left, "announced": self.announced, "active": self.active,
                "clear": self.clear, "cbpe": None if self.cbpe is None else self.cbpe.to_state(),
                "cbpe_fit": self.cbpe_fit.to_state(), "estimate": dict(self.estimate)}

    @classmethod
    def from_state(cls, state: dict, settings: ModelSettings, counts: dict) -> "PerformanceWatch":
        watch = cls(settings, counts)
        watch.concept = state["concept"]
        watch.metrics_suite = None if state["metrics"] is None else suite_from_state(state["metrics"])
        watch.primary, watch.baseline_metric, watch.baseline = state["primary"], state["baseline_metric"], state["baseline"]
        errors = state["baseline_errors"]
        watch.baseline_errors = None if errors is None else errors.tolist()
        watch.recent_errors.extend(state["recent_errors"].tolist())
        watch.suspect_left, watch.announced = state["suspect_left"], state["announced"]
        watch.active, watch.clear = state["active"], state["clear"]
        watch.cbpe = None if state["cbpe"] is None else CBPE.from_state(state["cbpe"])
        watch.cbpe_fit = FitSample.from_state(state["cbpe_fit"])
        watch.estimate = dict(state["estimate"])
        return watch
