"""Performance metrics of labelled predictions, updated per batch with numpy.

The values are river's (``metrics.Accuracy``, ``F1``, ``ROCAUC``, ``LogLoss``, ``MAE``,
``RMSE``, ``R2`` and ``utils.Rolling`` of them) on the same stream, to rounding
(tests/detectors/test_label_metrics.py checks 1e-12): counts instead of one confusion
matrix update per label and metric, sums over the last ``window`` labels instead of an
update and a revert per label. ROC AUC is river's: the trapezoid over 10 score thresholds
(not the exact AUC: the number the status reported before stays the number it reports).

A metric is read through :class:`MetricView` (``get()``, ``bigger_is_better``), so code
written against river's metrics reads these unchanged.

>>> metrics = ClassificationMetrics(window=3)
>>> metrics.update([True, False, True, True], [True, True, True, False], [0.9, 0.6, 0.8, 0.4])
>>> round(metrics.overall["accuracy"].get(), 3), round(metrics.rolling["accuracy"].get(), 3)
(0.5, 0.333)
>>> round(metrics.overall["f1"].get(), 3), round(metrics.overall["roc_auc"].get(), 3)
(0.667, 0.667)
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate

__all__ = ["MetricView", "ClassificationMetrics", "RegressionMetrics", "metric_suite", "from_river", "suite_from_state"]

_EPS = 1e-15   # river's LogLoss clamps probabilities to [1e-15, 1 - 1e-15]
_BOOL = frozenset({bool})
THRESHOLDS = np.array([i / 9 for i in range(10)])
THRESHOLDS[0] -= 1e-7
THRESHOLDS[-1] += 1e-7


class MetricView:
    """One metric of a suite, read like a river metric."""

    __slots__ = ("get", "bigger_is_better")

    def __init__(self, get, bigger_is_better: bool):
        self.get = get
        self.bigger_is_better = bigger_is_better


def _div(a: float, b: float) -> float:
    return a / b if b else 0.0


def _f1(tp: float, fp: float, fn: float) -> float:
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    return _div(2 * precision * recall, precision + recall)


class _Tail:
    """The last ``size`` rows of a few float columns, as one 2-d array."""

    def __init__(self, size: int, width: int):
        self.size = size
        self.rows = np.empty((0, width))

    def extend(self, rows: np.ndarray) -> None:
        if len(rows) >= self.size:
            self.rows = rows[len(rows) - self.size:].copy()
        else:
            self.rows = np.concatenate((self.rows[max(0, len(self.rows) + len(rows) - self.size):], rows))


class ClassificationMetrics:
    """Accuracy, F1 (positive class ``True``), ROC AUC and log loss overall; accuracy, F1 and
    log loss over the last ``window`` labels (log loss: the last ``window`` with a probability).

    ``update`` takes classes as :func:`detectors.monitor._as_class` makes them, and the
    scores (None or NaN: no probability); a score counts for ROC AUC and log loss when the
    label is a bool and the score is in [0, 1], as before.
    """

    def __init__(self, window: int):
        self.window = window
        self.n = 0
        self.correct = 0.0
        self.tp = self.fp = self.fn = 0.0
        self.roc = np.zeros((4, len(THRESHOLDS)))      # tp, fp, fn, tn per threshold
        self.log_loss_n = 0
        self.log_loss_sum = 0.0
        self._outcomes = _Tail(window, 4)   # correct, true positive, false positive, false negative
        self._losses = _Tail(window, 1)
        self._staged: tuple = ([], [], [])  # labels taken, not yet counted: one numpy pass per STAGE
        self.overall = {"accuracy": MetricView(self.accuracy, True), "f1": MetricView(self.f1, True),
                        "roc_auc": MetricView(self.roc_auc, True), "log_loss": MetricView(self.log_loss, False)}
        self.rolling = {"accuracy": MetricView(self.rolling_accuracy, True),
                        "f1": MetricView(self.rolling_f1, True),
                        "log_loss": MetricView(self.rolling_log_loss, False)}

    TASK = "classification"
    STAGE = 256   # labels staged at most: numpy's per-call cost is paid per STAGE, not per label

    def __getstate__(self) -> dict:
        self._fold()
        return {k: v for k, v in self.__dict__.items() if k not in ("overall", "rolling")}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["window"])
        self.__dict__.update(state)

    STATE = ("window", "n", "correct", "tp", "fp", "fn", "roc", "log_loss_n", "log_loss_sum")
    TAILS = {"outcomes": "_outcomes", "losses": "_losses"}

    def to_state(self) -> dict:
        """Counts and sums, and the rolling tails as 2-d arrays (labels staged are counted first)."""
        self._fold()
        return {"task": self.TASK, **{name: getattr(self, name) for name in self.STATE},
                **{name: getattr(self, attr).rows for name, attr in self.TAILS.items()}}

    @classmethod
    def from_state(cls, state: dict):
        suite = cls(state["window"])
        for name in cls.STATE:
            setattr(suite, name, state[name])
        for name, attr in cls.TAILS.items():
            getattr(suite, attr).rows = state[name]
        return suite

    def update(self, y_true: list, y_pred: list, scores) -> None:
        """Take labels (classes) with their predictions and scores; counted on the next read."""
        staged = self._staged
        staged[0].extend(y_true), staged[1].extend(y_pred), staged[2].extend(scores)
        if len(staged[0]) >= self.STAGE:
            self._fold()

    def _fold(self) -> None:
        if not self._staged[0]:
            return
        y_true, y_pred, scores = self._staged
        self._staged = ([], [], [])
        n = len(y_true)
        if not n:
            return
        if _BOOL.issuperset(map(type, y_true)) and _BOOL.issuperset(map(type, y_pred)):
            # binary classes as bools (the usual case): a class equal to True is the class itself
            true_pos, pred_pos = np.array(y_true, dtype=bool), np.array(y_pred, dtype=bool)
            correct = true_pos == pred_pos
        else:
            correct = np.fromiter((t == p for t, p in zip(y_true, y_pred)), bool, n)
            true_pos = np.fromiter((t == True for t in y_true), bool, n)   # noqa: E712 -- a class equal to True
            pred_pos = np.fromiter((p == True for p in y_pred), bool, n)   # noqa: E712
        tp, fp, fn = true_pos & pred_pos, ~true_pos & pred_pos, true_pos & ~pred_pos
        self.n += n
        self.correct += float(correct.sum())
        self.tp += float(tp.sum())
        self.fp += float(fp.sum())
        self.fn += float(fn.sum())
        self._outcomes.extend(np.column_stack((correct, tp, fp, fn)).astype(np.float64))
        scores = np.asarray([math.nan if s is None else s for s in scores], dtype=np.float64)
        probability = np.fromiter((type(t) is bool for t in y_true), bool, n) & (scores >= 0.0) & (scores <= 1.0)
        if probability.any():
            p, truth = scores[probability], true_pos[probability]
            above = p[:, None] > THRESHOLDS[None, :]
            self.roc[0] += (above & truth[:, None]).sum(axis=0)
            self.roc[1] += (above & ~truth[:, None]).sum(axis=0)
            self.roc[2] += (~above & truth[:, None]).sum(axis=0)
            self.roc[3] += (~above & ~truth[:, None]).sum(axis=0)
            clamped = np.clip(p, _EPS, 1 - _EPS)
            losses = -np.log(np.where(truth, clamped, 1 - clamped))
            self.log_loss_n += len(losses)
            self.log_loss_sum += float(losses.sum())
            self._losses.extend(losses[:, None])

    def accuracy(self) -> float:
        self._fold()
        return _div(self.correct, self.n)

    def f1(self) -> float:
        self._fold()
        return _f1(self.tp, self.fp, self.fn)

    def roc_auc(self) -> float:
        self._fold()
        tp, fp, fn, tn = self.roc.tolist()
        tprs = [_div(a, a + b) for a, b in zip(tp, fn)]
        fprs = [_div(a, a + b) for a, b in zip(fp, tn)]
        return float(-integrate.trapezoid(x=fprs, y=tprs))

    def log_loss(self) -> float:
        self._fold()
        return _div(self.log_loss_sum, self.log_loss_n)

    def rolling_accuracy(self) -> float:
        self._fold()
        rows = self._outcomes.rows
        return _div(float(rows[:, 0].sum()), len(rows))

    def rolling_f1(self) -> float:
        self._fold()
        _, tp, fp, fn = self._outcomes.rows.sum(axis=0).tolist()
        return _f1(tp, fp, fn)

    def rolling_log_loss(self) -> float:
        self._fold()
        rows = self._losses.rows
        return _div(float(rows.sum()), len(rows))


class RegressionMetrics:
    """MAE, RMSE and R² overall; MAE and RMSE over the last ``window`` labels.

    R² is river's: 1 - residual sum of squares / ((n - 1) x sample variance), 0.0 below two
    labels; the variance is merged per batch (Chan et al.), as stable as river's Welford update.
    """

    def __init__(self, window: int):
        self.window = window
        self.n = 0
        self.abs_sum = self.sq_sum = 0.0
        self.y_mean = self.y_m2 = 0.0
        self._errors = _Tail(window, 2)     # absolute, squared
        self._staged: tuple = ([], [])
        self.overall = {"mae": MetricView(self.mae, False), "rmse": MetricView(self.rmse, False),
                        "r2": MetricView(self.r2, True)}
        self.rolling = {"mae": MetricView(self.rolling_mae, False), "rmse": MetricView(self.rolling_rmse, False)}

    STAGE = ClassificationMetrics.STAGE
    __getstate__ = ClassificationMetrics.__getstate__
    __setstate__ = ClassificationMetrics.__setstate__
    STATE = ("window", "n", "abs_sum", "sq_sum", "y_mean", "y_m2")
    TAILS = {"errors": "_errors"}
    TASK = "regression"
    to_state = ClassificationMetrics.to_state
    from_state = classmethod(ClassificationMetrics.from_state.__func__)

    def update(self, y_true, y_pred, scores=None) -> None:
        staged = self._staged
        staged[0].extend(y_true), staged[1].extend(y_pred)
        if len(staged[0]) >= self.STAGE:
            self._fold()

    def _fold(self) -> None:
        if not self._staged[0]:
            return
        y_true, y_pred = self._staged
        self._staged = ([], [])
        y = np.asarray(y_true, dtype=np.float64)
        if not len(y):
            return
        diff = y - np.asarray(y_pred, dtype=np.float64)
        absolute, squared = np.abs(diff), diff * diff
        n_a, n_b = self.n, len(y)
        mean_b = float(y.mean())
        m2_b = float(((y - mean_b) ** 2).sum())
        total = n_a + n_b
        delta = mean_b - self.y_mean
        self.y_mean += delta * n_b / total
        self.y_m2 += m2_b + delta * delta * n_a * n_b / total
        self.n = total
        self.abs_sum += float(absolute.sum())
        self.sq_sum += float(squared.sum())
        self._errors.extend(np.column_stack((absolute, squared)))

    def mae(self) -> float:
        self._fold()
        return _div(self.abs_sum, self.n)

    def rmse(self) -> float:
        self._fold()
        return _div(self.sq_sum, self.n) ** 0.5

    def r2(self) -> float:
        self._fold()
        if self.n > 1:
            return 1 - self.sq_sum / self.y_m2 if self.y_m2 else 0.0
        return 0.0

    def rolling_mae(self) -> float:
        self._fold()
        rows = self._errors.rows
        return _div(float(rows[:, 0].sum()), len(rows))

    def rolling_rmse(self) -> float:
        self._fold()
        rows = self._errors.rows
        return _div(float(rows[:, 1].sum()), len(rows)) ** 0.5


def metric_suite(task: str, window: int):
    """The metrics of a task and the name of its primary one."""
    if task == "classification":
        return ClassificationMetrics(window), "accuracy"
    return RegressionMetrics(window), "mae"


def from_river(task: str, window: int, overall: dict, rolling: dict):
    """The metrics of a checkpoint written when they were river's (``_metrics``/``_rolling``):
    counts and sums read from river's state, the rolling windows replayed from ``Rolling.window``."""
    suite, _ = metric_suite(task, window)
    if task == "classification":
        pairs = [args for args, _ in rolling["accuracy"].window]
        suite.update([t for t, _ in pairs], [p for _, p in pairs], [None] * len(pairs))
        suite._fold()
        losses = [args for args, _ in rolling["log_loss"].window]
        if losses:
            helper = ClassificationMetrics(window)
            helper.update([t for t, _ in losses], [t for t, _ in losses], [s for _, s in losses])
            helper._fold()
            suite._losses = helper._losses
        cm = overall["accuracy"].cm
        suite.n, suite.correct = int(cm.total_weight), float(cm.total_true_positives)
        suite.tp, suite.fp, suite.fn = (float(cm.true_positives(True)), float(cm.false_positives(True)),
                                        float(cm.false_negatives(True)))
        suite.roc = np.array([[float(c.true_positives(True)) for c in overall["roc_auc"].cms],
                              [float(c.false_positives(True)) for c in overall["roc_auc"].cms],
                              [float(c.false_negatives(True)) for c in overall["roc_auc"].cms],
                              [float(c.true_negatives(True)) for c in overall["roc_auc"].cms]])
        mean = overall["log_loss"]._mean
        suite.log_loss_n, suite.log_loss_sum = int(mean.n), float(mean.get()) * mean.n
        return suite
    pairs = [args for args, _ in rolling["mae"].window]
    suite.update([t for t, _ in pairs], [p for _, p in pairs])
    suite._fold()
    variance = overall["r2"]._y_var
    suite.n = int(variance.mean.n)
    suite.y_mean, suite.y_m2 = float(variance.mean.get()), float(variance._S)
    suite.abs_sum = float(overall["mae"]._mean.get()) * suite.n
    suite.sq_sum = float(overall["r2"]._residual_sum_of_squares)
    return suite


def suite_from_state(state: dict):
    """The metrics :meth:`ClassificationMetrics.to_state` (or the regression one) recorded."""
    return (ClassificationMetrics if state["task"] == "classification" else RegressionMetrics).from_state(state)
