"""Per-segment metrics and disparity tests (demographic parity, equal opportunity, accuracy).

Counts accumulate per window from the ``segment`` attributes of predictions
(positive-prediction rate) and of labelled predictions (accuracy, true-positive
rate). For each attribute, the best and the worst segment values with at least
``min_size`` events are compared: a gap above ``tolerance`` that a
two-proportion z-test also finds significant is a finding. The best-vs-worst
pair is the most extreme of all pairs, so ``alpha`` is Bonferroni-divided by the
number of pairs and metrics.
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

    def add_prediction(self, segment: dict, y_pred) -> None:
        for key in segment.items():
            counts = self._predictions.get(key)
            if counts is None:
                counts = self._predictions[key] = [0, 0]
            counts[0] += 1
            counts[1] += y_pred is True

    def add_label(self, segment: dict, y_true, y_pred) -> None:
        for key in segment.items():
            counts = self._labels.get(key)
            if counts is None:
                counts = self._labels[key] = [0, 0, 0, 0]
            counts[0] += 1
            counts[1] += y_true == y_pred
            if y_true is True:
                counts[2] += 1
                counts[3] += y_pred is True

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
            for attr, values in sorted(self._groups(metric).items()):
                rates = {v: (x / n, x, n) for v, (x, n) in values.items() if n >= min_size}
                if len(rates) < 2:
                    continue
                best = max(rates, key=lambda v: rates[v][0])
                worst = min(rates, key=lambda v: rates[v][0])
                gap = rates[best][0] - rates[worst][0]
                p = two_proportion_p(rates[best][1], rates[best][2], rates[worst][1], rates[worst][2])
                # best-vs-worst is the most extreme of k(k-1)/2 pairs, over three metrics: Bonferroni
                pairs = len(rates) * (len(rates) - 1) // 2
                key = f"{attr}.{metric}"
                holds = key in active and gap > hold * tolerance
                if holds or (gap > tolerance and p < alpha / (pairs * len(METRICS))):
                    results.append(DriftResult(
                        f"fairness.{metric}", key, gap, p, tolerance, "statistic", True,
                        effect_size=gap, effect_name=f"{metric}_gap",
                        evidence={"attribute": attr, "metric": metric, "best": best, "worst": worst,
                                  "rates": {v: r[0] for v, r in rates.items()},
                                  "n": {v: r[2] for v, r in rates.items()}, "alpha": alpha,
                                  "held": bool(holds and not (gap > tolerance and p < alpha / (pairs * len(METRICS)))),
                                  "hold_threshold": hold * tolerance}))
        return results

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
