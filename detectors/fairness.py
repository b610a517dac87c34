"""Per-segment metrics and disparity tests (demographic parity, equal opportunity, accuracy).

Counts accumulate per window from the ``segment`` attributes of predictions
(positive-prediction rate) and of labelled predictions (accuracy, true-positive
rate). For each attribute, the best and the worst segment values with at least
``min_size`` events are compared: a finding is a gap that *significantly
exceeds* ``tolerance`` (one-sided z-test of H0: gap <= tolerance, unpooled
standard error, :func:`excess_gap_p`), not merely a gap above it: a population
gap just under the tolerance would otherwise be announced whenever a window's
noise pushes it over. The best-vs-worst pair is the most extreme of all pairs,
so ``alpha`` is Bonferroni-divided by the number of pairs and metrics.

Hysteresis: an announced gap holds while it stays above ``hold`` x tolerance;
a window where it cannot be judged (fewer than two values with ``min_size``
events) is :meth:`SegmentStats.undecided`, neither firing nor clear.
"""
from __future__ import annotations

import math

from scipy.stats import norm

from detectors.base import DriftResult

METRICS = ("accuracy", "positive_rate", "true_positive_rate")


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of H0: x1/n1 == x2/n2 (pooled z-test).

    >>> round(two_proportion_p(90, 100, 60, 100), 6)
    1e-06
    >>> two_proportion_p(5, 10, 5, 10)
    1.0
    """
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    return float(2 * norm.sf(abs(x1 / n1 - x2 / n2) / se))


def excess_gap_p(x1: int, n1: int, x2: int, n2: int, tolerance: float) -> float:
    """One-sided p-value of H0: x1/n1 - x2/n2 <= tolerance (z-test, unpooled standard error).

    >>> round(excess_gap_p(90, 100, 60, 100, 0.1), 6), round(excess_gap_p(70, 100, 60, 100, 0.1), 3)
    (0.000249, 0.5)
    """
    p1, p2 = x1 / n1, x2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    if se == 0:
        return 0.0 if p1 - p2 > tolerance else 1.0
    return float(norm.sf((p1 - p2 - tolerance) / se))


def judge_gap(attr: str, metric: str, values: dict, min_size: int, tolerance: float, alpha: float,
              active: bool = False, hold: float = 1.0) -> DriftResult | None:
    """The finding on one attribute's ``values`` (``{value: (successes, trials)}``) for ``metric``,
    or None: best against worst of the values with ``min_size`` trials, :func:`excess_gap_p`,
    ``alpha`` Bonferroni-divided by pairs and metrics; an ``active`` gap holds above ``hold`` x
    tolerance. The evidence keeps every value's counts and these settings, so
    ``driftline audit --recompute`` re-runs this function on exactly what the window was judged on.

    >>> r = judge_gap("region", "accuracy", {"north": (95, 100), "south": (60, 100), "east": (3, 4)}, 50, 0.1, 0.01)
    >>> r.feature, round(r.statistic, 2), r.evidence["counts"]
    ('region.accuracy', 0.35, [['east', 3, 4], ['north', 95, 100], ['south', 60, 100]])
    """
    rates = {v: (x / n, x, n) for v, (x, n) in values.items() if n >= min_size}
    if len(rates) < 2:
        return None
    best = max(rates, key=lambda v: rates[v][0])
    worst = min(rates, key=lambda v: rates[v][0])
    gap = rates[best][0] - rates[worst][0]
    p = excess_gap_p(rates[best][1], rates[best][2], rates[worst][1], rates[worst][2], tolerance)
    # best-vs-worst is the most extreme of k(k-1)/2 pairs, over three metrics: Bonferroni
    pairs = len(rates) * (len(rates) - 1) // 2
    found = gap > tolerance and p < alpha / (pairs * len(METRICS))
    holds = active and gap > hold * tolerance
    if not (found or holds):
        return None
    return DriftResult(
        f"fairness.{metric}", f"{attr}.{metric}", gap, p, tolerance, "statistic", True,
        effect_size=gap, effect_name=f"{metric}_gap",
        evidence={"attribute": attr, "metric": metric, "best": best, "worst": worst,
                  "rates": {v: r[0] for v, r in rates.items()},
                  "n": {v: r[2] for v, r in rates.items()}, "alpha": alpha,
                  "test": "excess_gap_z", "held": bool(holds and not found),
                  "hold_threshold": hold * tolerance,
                  # what the decision was taken on: [value, successes, trials] of every value seen
                  "counts": [[v, int(x), int(n)] for v, (x, n) in sorted(values.items(), key=lambda i: str(i[0]))],
                  "min_size": min_size, "active": bool(active), "hold": hold, "pairs": pairs,
                  "family": pairs * len(METRICS)})


class SegmentStats:
    """Window counts per (attribute, value), and the disparity test over them.

    >>> stats = SegmentStats()
    >>> for i in range(200):
    ...     stats.add_label({"region": "north"}, True, True)
    ...     stats.add_label({"region": "south"}, True, i % 2 == 0)
    >>> [(r.feature, round(r.statistic, 2), r.drifted) for r in stats.test(100, 0.1, 0.01)]
    [('region.accuracy', 0.5, True), ('region.true_positive_rate', 0.5, True)]
    """

    def __init__(self):
        self._predictions: dict = {}   # (attr, value) -> [n, positive predictions]
        self._labels: dict = {}        # (attr, value) -> [n, correct, actual positives, true positives]
        self._label_clock: list = [None, None]   # monitor clock (prediction time): first, last label counted

    def add_prediction(self, segment: dict, y_pred) -> None:
        for key in segment.items():
            counts = self._predictions.get(key)
            if counts is None:
                counts = self._predictions[key] = [0, 0]
            counts[0] += 1
            counts[1] += y_pred is True

    def add_label(self, segment: dict, y_true, y_pred, ts: float | None = None) -> None:
        if ts is not None:
            clock = self._clock()
            if clock[0] is None:
                clock[0] = ts
            clock[1] = ts
        for key in segment.items():
            counts = self._labels.get(key)
            if counts is None:
                counts = self._labels[key] = [0, 0, 0, 0]
            counts[0] += 1
            counts[1] += y_true == y_pred
            if y_true is True:
                counts[2] += 1
                counts[3] += y_pred is True

    def add_predictions(self, segments: list, predictions: list, as_class) -> None:
        """:meth:`add_prediction` for each prediction whose segment is not empty, its class read by
        ``as_class`` (counts: order does not matter)."""
        counted = self._predictions
        for segment, prediction in zip(segments, predictions):
            if not segment:
                continue
            positive = (prediction if type(prediction) is bool else as_class(prediction)) is True
            for key in segment.items():
                counts = counted.get(key)
                if counts is None:
                    counts = counted[key] = [0, 0]
                counts[0] += 1
                counts[1] += positive

    def add_labels(self, segments: list, y_true: list, y_pred: list, ts: float | list | None = None) -> None:
        """:meth:`add_label` for each label whose segment is not empty (counts: order does not matter),
        at the monitor clock ``ts``: one for all, or one per label."""
        if ts is not None and any(segments):
            if type(ts) is list:   # the clocks of the first and the last label with a segment
                stamped = [t for t, segment in zip(ts, segments) if segment]
                first, last = stamped[0], stamped[-1]
            else:
                first = last = ts
            clock = self._clock()
            if clock[0] is None:
                clock[0] = first
            clock[1] = last
        labels = self._labels
        for segment, actual, predicted in zip(segments, y_true, y_pred):
            if not segment:
                continue
            correct = actual == predicted
            positive = actual is True
            true_positive = positive and predicted is True
            for key in segment.items():
                counts = labels.get(key)
                if counts is None:
                    counts = labels[key] = [0, 0, 0, 0]
                counts[0] += 1
                counts[1] += correct
                if positive:
                    counts[2] += 1
                    counts[3] += true_positive

    def _groups(self, metric: str) -> dict:
        """attr -> {value: (successes, trials)} for one metric."""
        groups: dict = {}
        if metric == "positive_rate":
            source = ((k, c[1], c[0]) for k, c in self._predictions.items())
        elif metric == "accuracy":
            source = ((k, c[1], c[0]) for k, c in self._labels.items())
        else:
            source = ((k, c[3], c[2]) for k, c in self._labels.items())
        for (attr, value), x, n in source:
            groups.setdefault(attr, {})[value] = (x, n)
        return groups

    def test(self, min_size: int, tolerance: float, alpha: float, active: set = frozenset(),
             hold: float = 1.0) -> list[DriftResult]:
        """Findings of one window. A gap in ``active`` (already announced, as ``"attr.metric"``)
        holds while it exceeds ``hold * tolerance``, significant or not: hysteresis, so a gap
        that hovers at the tolerance is not resolved and announced again window after window."""
        results = []
        for metric in METRICS:
            for attr, values in sorted(self.counts(metric).items()):
                result = judge_gap(attr, metric, values, min_size, tolerance, alpha,
                                   f"{attr}.{metric}" in active, hold)
                if result is not None:
                    if metric != "positive_rate":   # where the labels it counted joined, on the monitor's clock
                        first, last = self._clock()
                        result.evidence["labels_joined"] = {"first": first, "last": last}
                    results.append(result)
        return results

    def _clock(self) -> list:
        # checkpoints written before it hold no label clock: the window that restores them starts one
        return self.__dict__.setdefault("_label_clock", [None, None])

    def counts(self, metric: str) -> dict:
        """``{attribute: {value: (successes, trials)}}`` of one of :data:`METRICS` in this window."""
        return self._groups(metric)

    def undecided(self, min_size: int, keys) -> set:
        """Those of ``keys`` (``"attr.metric"``) this window cannot judge: fewer than two values
        of the attribute have ``min_size`` events for the metric (e.g. too few actual positives)."""
        judged = {f"{attr}.{metric}" for metric in METRICS for attr, values in self._groups(metric).items()
                  if sum(1 for _, n in values.values() if n >= min_size) >= 2}
        return {key for key in keys if key not in judged}

    def summary(self) -> dict:
        out: dict = {}
        for (attr, value), (n, pos) in self._predictions.items():
            out.setdefault(f"{attr}={value}", {})["positive_rate"] = pos / n if n else None
            out[f"{attr}={value}"]["n"] = n
        for (attr, value), (n, correct, _, _) in self._labels.items():
            out.setdefault(f"{attr}={value}", {})["accuracy"] = correct / n if n else None
            out[f"{attr}={value}"]["labelled"] = n
        return out

    def reset_window(self) -> None:
        self._predictions.clear()
        self._labels.clear()
        self._label_clock = [None, None]

    def to_state(self) -> dict:
        """Counts per segment value as rows ``[attribute, value, *counts]``."""
        return {"predictions": [[*key, *counts] for key, counts in self._predictions.items()],
                "labels": [[*key, *counts] for key, counts in self._labels.items()],
                "label_clock": list(self._clock())}

    @classmethod
    def from_state(cls, state: dict) -> "SegmentStats":
        stats = cls()
        stats._predictions = {(row[0], row[1]): list(row[2:]) for row in state["predictions"]}
        stats._labels = {(row[0], row[1]): list(row[2:]) for row in state["labels"]}
        stats._label_clock = list(state["label_clock"])
        return stats
