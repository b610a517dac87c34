"""Confidence-based performance estimation (CBPE): expected accuracy without labels."""

from __future__ import annotations

import numpy as np

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import to_column

__all__ = ["CBPE", "expected_accuracy", "expected_roc_auc"]


def expected_accuracy(scores: np.ndarray, decision_threshold: float = 0.5) -> tuple[float, float]:
    """Expected accuracy of thresholded calibrated scores ``P(y=1)``, and its standard error.

    Row ``i`` is right with probability ``s_i`` if predicted positive, else ``1 - s_i``.

    >>> [round(v, 4) for v in expected_accuracy(np.array([0.9, 0.8, 0.3, 0.5]))]
    [0.725, 0.2107]
    """
    s = np.asarray(scores, dtype=np.float64)
    p_correct = np.where(s >= decision_threshold, s, 1.0 - s)
    return float(p_correct.mean()), float(np.sqrt(np.sum(p_correct * (1 - p_correct))) / s.size)


def expected_roc_auc(scores: np.ndarray) -> float | None:
    """Expected ROC AUC when row ``i`` is positive with probability ``s_i`` (ties count 1/2).

    ``sum_{i != j} s_i (1 - s_j) [s_i > s_j] / sum_{i != j} s_i (1 - s_j)``, by sorting and cumulative sums.

    >>> round(expected_roc_auc(np.array([0.1, 0.9])), 4)
    0.9878
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    neg = 1.0 - s
    uniq, start = np.unique(s, return_index=True)
    # negative mass strictly below each value, and within its tie group
    cum_neg = np.concatenate([[0.0], np.cumsum(neg)])
    end = np.append(start[1:], s.size)
    below = cum_neg[start]
    group_neg = cum_neg[end] - cum_neg[start]
    group_pos = np.add.reduceat(s, start)
    # pairs i != j: inside a tie group remove the i == j terms
    group_self = np.add.reduceat(s * neg, start)
    numerator = np.sum(group_pos * below) + 0.5 * np.sum(group_pos * group_neg - group_self)
    denominator = s.sum() * neg.sum() - np.sum(s * neg)
    return float(numerator / denominator) if denominator > 0 else None


class CBPE(Estimator):
    """Estimate a binary classifier's accuracy (and ROC AUC) from calibrated scores, without labels.

    Fit on the reference period's scores *and* labels (realised performance),
    then :meth:`test` a window of scores: drift when the estimated accuracy is
    more than ``max_drop`` below the reference's realised accuracy. Only valid
    when scores are calibrated probabilities of the positive class and the
    relation between features and label did not change (covariate shift only);
    results carry ``evidence["estimated"] = True``.

    Parameters
    ----------
    max_drop
        Drift when ``reference_accuracy - estimated_accuracy > max_drop``.
    decision_threshold
        Scores at or above it are predicted positive.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref_scores = rng.beta(0.5, 0.5, size=2000)
    >>> ref_labels = rng.random(2000) < ref_scores   # calibrated by construction
    >>> cbpe = CBPE(max_drop=0.05).fit(ref_scores, ref_labels)
    >>> cbpe.test(rng.beta(0.5, 0.5, size=1000)).drifted
    False
    >>> r = cbpe.test(rng.beta(3, 3, size=1000))   # scores pile up near 0.5: less confident
    >>> r.drifted, r.evidence["estimated"], round(r.evidence["estimated_accuracy"], 2)
    (True, True, 0.66)
    """

    name = "cbpe"

    def __init__(self, max_drop: float = 0.05, decision_threshold: float = 0.5):
        self.max_drop = max_drop
        self.decision_threshold = decision_threshold
        self._reset()

    def _reset(self) -> None:
        self._reference: dict | None = None

    @staticmethod
    def _scores(values) -> tuple[np.ndarray, int]:
        """The window's scores in [0, 1], and how many fell outside (not probabilities: left out
        here, and reported by the output-range guardrail)."""
        column = to_column(values, "numeric")
        column = column[~np.isnan(column)]
        inside = (column >= 0) & (column <= 1)
        return column[inside], int(column.size - inside.sum())

    def fit(self, scores, labels) -> "CBPE":
        """Learn the reference period's realised and estimated performance."""
        s = to_column(scores, "numeric")
        y = np.asarray([bool(v) for v in labels])
        keep = ~np.isnan(s)
        s, y = s[keep], y[keep]
        if np.any((s < 0) | (s > 1)):
            raise ValueError("CBPE needs calibrated scores in [0, 1]")
        pred = s >= self.decision_threshold
        from scipy.stats import mannwhitneyu

        auc = None
        if 0 < y.sum() < y.size:
            auc = float(mannwhitneyu(s[y], s[~y]).statistic / (y.sum() * (~y).sum()))
        estimated, _ = expected_accuracy(s, self.decision_threshold)
        self._reference = {"n": int(s.size), "accuracy": float(np.mean(pred == y)), "roc_auc": auc,
                           "estimated_accuracy": estimated, "estimated_roc_auc": expected_roc_auc(s)}
        return self

    def test(self, values) -> DriftResult:
        if self._reference is None:
            raise RuntimeError("call fit(reference_scores, reference_labels) first")
        s, outside = self._scores(values)
        ref = self._reference
        evidence = {"estimated": True, "reference": ref, "n": int(s.size), "scores_out_of_range": outside}
        if s.size == 0:
            return empty_result(self.name, "__score__", self.max_drop, "statistic", "no scores in window", evidence)
        estimated, se = expected_accuracy(s, self.decision_threshold)
        # Compare like with like: the window's expected accuracy against the reference period's
        # expected accuracy (both from scores). Scores that are not perfectly calibrated then
        # shift both sides alike instead of raising a false alarm; the realised reference
        # accuracy plus the change is reported as the estimate of what labels will show.
        drop = ref["estimated_accuracy"] - estimated
        evidence.update(estimated_accuracy=estimated, estimated_accuracy_se=se, estimated_roc_auc=expected_roc_auc(s),
                        reference_accuracy=ref["accuracy"], reference_estimated_accuracy=ref["estimated_accuracy"],
                        expected_realised_accuracy=ref["accuracy"] - drop)
        return DriftResult(self.name, "__score__", float(drop), None, self.max_drop, "statistic", bool(drop > self.max_drop),
                           effect_size=float(drop), effect_name="accuracy_drop", evidence=json_safe(evidence))
