"""Confidence-based performance estimation (CBPE): expected accuracy without labels.

Scores are calibrated on the reference period's labelled events before they are
read as probabilities, and the estimate is for the model's own predicted labels
(its decision threshold, whatever it is), so it estimates the accuracy that the
labels will show for this model.
"""

from __future__ import annotations

from array import array

import numpy as np

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import to_column

__all__ = ["CBPE", "calibration_knots", "expected_accuracy", "expected_accuracy_of", "expected_roc_auc"]


def expected_accuracy(scores: np.ndarray, decision_threshold: float = 0.5) -> tuple[float, float]:
    """Expected accuracy of thresholded calibrated scores ``P(y=1)``, and its standard error.

    Row ``i`` is right with probability ``s_i`` if predicted positive, else ``1 - s_i``.

    >>> [round(v, 4) for v in expected_accuracy(np.array([0.9, 0.8, 0.3, 0.5]))]
    [0.725, 0.2107]
    """
    s = np.asarray(scores, dtype=np.float64)
    p_correct = np.where(s >= decision_threshold, s, 1.0 - s)
    return float(p_correct.mean()), float(np.sqrt(np.sum(p_correct * (1 - p_correct))) / s.size)


def expected_accuracy_of(probabilities: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Expected accuracy of the predicted labels ``predicted`` when row ``i`` is positive with
    probability ``probabilities[i]``, and its standard error (the realised accuracy's spread).

    >>> [round(v, 4) for v in expected_accuracy_of(np.array([0.9, 0.6, 0.3]), np.array([True, False, False]))]
    [0.6667, 0.2449]
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p_correct = np.where(np.asarray(predicted, dtype=bool), p, 1.0 - p)
    return float(p_correct.mean()), float(np.sqrt(np.sum(p_correct * (1 - p_correct))) / p.size)


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


def calibration_knots(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of the piecewise-linear map ``np.interp(., x, y)`` that it cannot do without.

    An isotonic fit is constant over blocks of scores; a point inside a run of equal values
    adds nothing (the map is flat on both sides of it), so only the ends of each run are kept.
    ``np.interp`` on the knots gives bit for bit what it gives on all the points: the kept
    segments are the same pairs of points, and a flat one evaluates to its value exactly.

    >>> calibration_knots(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), np.array([0.0, 0.0, 0.0, 0.5, 1.0]))
    (array([0.1, 0.3, 0.4, 0.5]), array([0. , 0. , 0.5, 1. ]))
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.ones(x.size, dtype=bool)
    if x.size > 2:
        keep[1:-1] = ~((y[1:-1] == y[:-2]) & (y[1:-1] == y[2:]))
    return x[keep], y[keep]


class CBPE(Estimator):
    """Estimate a binary classifier's accuracy (and ROC AUC) from its scores, without labels.

    :meth:`fit` learns, on the reference period's labelled events, a calibration
    map from the model's scores to ``P(y = 1)`` (isotonic regression,
    ``scipy.optimize.isotonic_regression``: monotone, so it fixes over- and
    under-confident scores alike) and the realised accuracy of the model's own
    predictions. :meth:`test` then estimates a window's accuracy for the labels
    the model predicted: row ``i`` is right with probability ``c_i`` if it
    predicted positive, ``1 - c_i`` if not (``c`` the calibrated score). Its
    sampling error is ``sqrt(sum p_i (1 - p_i)) / n`` (``p_i`` = probability that
    row ``i`` is right), the spread of the realised accuracy around the estimate;
    the reference accuracy's own error ``sqrt(a (1 - a) / n_ref)`` is combined
    with it. Drift when the estimated drop exceeds ``max_drop`` by more than
    ``z`` times that combined error. Valid while the relation between features
    and label holds (covariate shift only); results carry ``evidence["estimated"] = True``,
    and what the decision was taken on: the calibration map's knots (``calibration_map``,
    :func:`calibration_knots`), the reference accuracy and its error, ``z``, so
    :meth:`from_evidence` rebuilds an estimator that gives the same result on the same window
    (``driftline audit --recompute``).

    Parameters
    ----------
    max_drop
        Tolerated drop of accuracy below the reference's realised accuracy.
    decision_threshold
        Only when predictions are not given: scores at or above it are predicted positive.
    z
        How many combined standard errors the drop must exceed ``max_drop`` by.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.beta(0.5, 0.5, size=5000)            # P(y = 1)
    >>> scores = p ** 2                              # miscalibrated (monotone) scores...
    >>> cbpe = CBPE(max_drop=0.05).fit(scores, rng.random(5000) < p, predictions=scores >= 0.3)  # ...own threshold
    >>> q = rng.beta(0.5, 0.5, size=5000)
    >>> cbpe.test(q ** 2, predictions=q ** 2 >= 0.3).drifted
    False
    >>> q = rng.beta(3, 3, size=5000)                # less confident: accuracy drops
    >>> r = cbpe.test(q ** 2, predictions=q ** 2 >= 0.3)
    >>> realised = np.mean((q ** 2 >= 0.3) == (rng.random(5000) < q))
    >>> r.drifted, round(r.evidence["estimated_accuracy"], 2), round(float(realised), 2)
    (True, 0.66, 0.64)
    """

    name = "cbpe"

    def __init__(self, max_drop: float = 0.05, decision_threshold: float = 0.5, z: float = 2.0):
        self.max_drop = max_drop
        self.decision_threshold = decision_threshold
        self.z = z
        self._reset()

    def _reset(self) -> None:
        self._reference: dict | None = None
        self._calibration_x: np.ndarray | None = None   # distinct reference scores, sorted
        self._calibration_y: np.ndarray | None = None   # isotonic P(y = 1) at each of them

    def _rows(self, scores, predictions) -> tuple[np.ndarray, np.ndarray, int]:
        """Scores in [0, 1] and the predicted labels of the same rows, and how many scores fell
        outside (not probabilities: left out here, and reported by the output-range guardrail)."""
        s = to_column(scores, "numeric")
        if predictions is None:
            pred = s >= self.decision_threshold
            known = np.ones(s.size, dtype=bool)
        else:
            predictions = list(predictions)
            if len(predictions) != s.size:
                raise ValueError(f"{len(predictions)} predictions for {s.size} scores")
            known = np.array([isinstance(v, (bool, np.bool_)) for v in predictions], dtype=bool)
            pred = np.array([bool(v) if k else False for v, k in zip(predictions, known)], dtype=bool)
        present = ~np.isnan(s) & known
        inside = present & (s >= 0) & (s <= 1)
        return s[inside], pred[inside], int(present.sum() - inside.sum())

    def calibrated(self, scores) -> np.ndarray:
        """``P(y = 1)`` for each score, by the isotonic map fitted on the reference (linear between
        the fitted points, constant beyond them)."""
        if self._calibration_x is None:
            raise RuntimeError("call fit(reference_scores, reference_labels, predictions) first")
        return np.interp(np.asarray(scores, dtype=np.float64), self._calibration_x, self._calibration_y)

    def fit(self, scores, labels, predictions=None) -> "CBPE":
        """Learn the calibration map and the reference period's realised performance.

        ``predictions`` are the model's own predicted labels (bools); without them, scores at
        or above ``decision_threshold`` count as predicted positive.
        """
        from scipy.optimize import isotonic_regression
        from scipy.stats import mannwhitneyu

        raw = to_column(scores, "numeric")
        labels = list(labels)
        if len(labels) != raw.size:
            raise ValueError(f"{len(labels)} labels for {raw.size} scores")
        keep = ~np.isnan(raw)
        if np.any((raw[keep] < 0) | (raw[keep] > 1)):
            raise ValueError("CBPE needs scores in [0, 1]")
        s, pred, _ = self._rows(raw, predictions)
        y_all = np.asarray([bool(v) for v in labels])
        if predictions is None:
            y = y_all[keep]
        else:
            known = np.array([isinstance(v, (bool, np.bool_)) for v in predictions], dtype=bool)
            y = y_all[keep & known]
        if s.size == 0:
            raise ValueError("CBPE needs labelled scores")
        # isotonic regression of the labels on the scores, ties pooled first (one point per distinct score)
        x, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
        means = np.bincount(inverse, weights=y.astype(np.float64)) / counts
        self._calibration_x = x
        self._calibration_y = isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x
        accuracy = float(np.mean(pred == y))
        auc = None
        if 0 < y.sum() < y.size:
            auc = float(mannwhitneyu(s[y], s[~y]).statistic / (y.sum() * (~y).sum()))
        calibrated = self.calibrated(s)
        self._reference = {"n": int(s.size), "accuracy": accuracy,
                           "accuracy_se": float(np.sqrt(accuracy * (1 - accuracy) / s.size)), "roc_auc": auc,
                           "estimated_accuracy": expected_accuracy_of(calibrated, pred)[0],
                           "estimated_roc_auc": expected_roc_auc(calibrated),
                           "calibration": "isotonic", "calibration_points": int(x.size)}
        return self

    def calibration_map(self) -> dict:
        """The calibration as stored with a result: ``{"x": knots, "y": P(y = 1) at them}``."""
        if self._calibration_x is None:
            raise RuntimeError("call fit(reference_scores, reference_labels, predictions) first")
        x, y = calibration_knots(self._calibration_x, self._calibration_y)
        return {"x": x.tolist(), "y": y.tolist()}

    @classmethod
    def from_evidence(cls, evidence: dict, max_drop: float) -> "CBPE":
        """The fitted estimator a result's evidence was computed with (its calibration map, the
        reference accuracy and error, ``z``): its :meth:`test` on the same window gives the same
        result. ``max_drop`` is the result's threshold.

        >>> rng = np.random.default_rng(1)
        >>> p = rng.random(2000)
        >>> cbpe = CBPE(max_drop=0.05).fit(p, rng.random(2000) < p, predictions=p >= 0.5)
        >>> q = rng.beta(2, 2, 500)
        >>> first = cbpe.test(q, predictions=q >= 0.5)
        >>> again = CBPE.from_evidence(first.evidence, first.threshold).test(q, predictions=q >= 0.5)
        >>> again.statistic == first.statistic, again.evidence["margin"] == first.evidence["margin"]
        (True, True)
        """
        missing = [k for k in ("calibration_map", "reference_accuracy", "reference_accuracy_se", "z")
                   if k not in evidence]
        if missing:
            raise KeyError(f"the evidence has no {', '.join(missing)}")
        estimator = cls(max_drop=max_drop, decision_threshold=evidence.get("decision_threshold", 0.5),
                        z=evidence["z"])
        calibration = evidence["calibration_map"]
        estimator._calibration_x = np.asarray(calibration["x"], dtype=np.float64)
        estimator._calibration_y = np.asarray(calibration["y"], dtype=np.float64)
        estimator._reference = {"n": evidence.get("reference_n"), "accuracy": evidence["reference_accuracy"],
                                "accuracy_se": evidence["reference_accuracy_se"], "calibration": "isotonic",
                                "calibration_points": len(calibration["x"])}
        return estimator

    def to_state(self) -> dict:
        return {"max_drop": self.max_drop, "decision_threshold": self.decision_threshold, "z": self.z,
                "reference": self._reference, "calibration_x": self._calibration_x,
                "calibration_y": self._calibration_y}

    @classmethod
    def from_state(cls, state: dict) -> "CBPE":
        estimator = cls(state["max_drop"], state["decision_threshold"], state["z"])
        estimator._reference = state["reference"]
        estimator._calibration_x, estimator._calibration_y = state["calibration_x"], state["calibration_y"]
        return estimator

    def test(self, values, predictions=None) -> DriftResult:
        """Estimate the window's accuracy from its scores and the model's ``predictions`` (bools)."""
        if self._reference is None or self._calibration_x is None:
            raise RuntimeError("call fit(reference_scores, reference_labels, predictions) first")
        s, pred, outside = self._rows(values, predictions)
        ref = self._reference
        evidence = {"estimated": True, "reference": ref, "n": int(s.size), "scores_out_of_range": outside}
        if s.size == 0:
            return empty_result(self.name, "__score__", self.max_drop, "statistic", "no scores in window", evidence)
        calibrated = self.calibrated(s)
        estimated, se = expected_accuracy_of(calibrated, pred)
        drop = ref["accuracy"] - estimated
        error = float(np.hypot(se, ref["accuracy_se"]))
        margin = self.z * error
        evidence.update(estimated_accuracy=estimated, estimated_accuracy_se=se, drop_se=error, z=self.z,
                        margin=margin, estimated_roc_auc=expected_roc_auc(calibrated),
                        reference_accuracy=ref["accuracy"], reference_accuracy_se=ref["accuracy_se"],
                        reference_n=ref["n"], decision_threshold=self.decision_threshold,
                        calibration_map=self.calibration_map(), predicted_positive_rate=float(pred.mean()))
        return DriftResult(self.name, "__score__", float(drop), None, self.max_drop, "statistic",
                           bool(drop - self.max_drop > margin), effect_size=float(drop), effect_name="accuracy_drop",
                           evidence=json_safe(evidence))


class FitSample:
    """The first labelled ``(score, label, prediction)`` triples a version's CBPE is fitted on,
    kept as a float64 array and one byte of flags each (9 bytes) instead of a tuple of Python
    objects (~100 bytes): a version waiting for ``cbpe_reference_labels`` (5,000) labels holds
    45 KB, not 0.5 MB. :meth:`columns` gives back the values :meth:`CBPE.fit` takes.

    >>> sample = FitSample([(0.25, True, False)]); sample.append(0.75, False, True)
    >>> len(sample), sample.columns()
    (2, ([0.25, 0.75], [True, False], [False, True]))
    """

    __slots__ = ("scores", "flags")

    def __init__(self, items=()) -> None:
        self.scores = array("d")
        self.flags = bytearray()
        for score, label, prediction in items:
            self.append(score, label, prediction)

    @classmethod
    def restored(cls, stored) -> "FitSample":
        """A checkpoint's sample: a FitSample, or (older checkpoints) a list of triples."""
        if isinstance(stored, cls):
            return stored
        return cls(item for item in stored or () if len(item) == 3)

    def append(self, score: float, label: bool, prediction: bool) -> None:
        self.scores.append(score)
        self.flags.append(bool(label) | bool(prediction) << 1)

    def __len__(self) -> int:
        return len(self.scores)

    def columns(self) -> tuple[list, list, list]:
        """(scores, labels, predictions) as lists of floats and bools."""
        return (self.scores.tolist(), [bool(f & 1) for f in self.flags], [bool(f & 2) for f in self.flags])

    def to_state(self) -> dict:
        """The scores as float64 bytes, the flags (label, prediction) as bytes."""
        return {"scores": self.scores.tobytes(), "flags": bytes(self.flags)}

    @classmethod
    def from_state(cls, state: dict) -> "FitSample":
        sample = cls()
        sample.scores.frombytes(state["scores"])
        sample.flags.extend(state["flags"])
        return sample
