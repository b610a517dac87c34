"""Two-proportion z-test of a window's missing rate against the reference's."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import FeatureProfile, WindowColumn

__all__ = ["MissingRate", "missing_count", "two_proportion_z", "missing_psi"]


def missing_count(column: np.ndarray) -> int:
    """Missing values in a converted column (NaN or None)."""
    if column.dtype == object:
        return int(np.count_nonzero(np.equal(column, None)))
    return int(np.isnan(column).sum())


class MissingRate(Estimator):
    """Two-sided two-proportion z-test (pooled variance) of the missing rate.

    ``statistic`` is the signed z (positive when the window has more missing
    values); ``p_value = 2 * norm.sf(|z|)``. When both samples are all present
    (or all missing) the rates are equal: z = 0, p = 1. The PSI of the
    missing/present split is in ``evidence["psi"]``; the suite uses it as the
    effect size.

    Parameters
    ----------
    alpha
        Drift when ``p_value <= alpha``.

    Examples
    --------
    >>> from detectors.profile import FeatureProfile
    >>> ref = FeatureProfile.from_values("x", [1.0] * 980 + [None] * 20)
    >>> test = MissingRate(alpha=0.01)
    >>> test.test(ref, [1.0] * 490 + [None] * 10).drifted
    False
    >>> r = test.test(ref, [1.0] * 400 + [None] * 100)
    >>> r.drifted, round(r.statistic, 2), r.evidence["current_missing_rate"]
    (True, 12.11, 0.2)
    """

    name = "missing_rate"

    def __init__(self, alpha: float = 0.05):
        self.alpha = alpha

    def test(self, feature_profile: FeatureProfile, values) -> DriftResult:
        column = WindowColumn.of(values, feature_profile.kind)
        n_cur, n_ref = int(column.values.size), int(feature_profile.n)
        x_cur = column.n_missing
        x_ref = int(round(feature_profile.missing_rate * n_ref))
        p_ref = x_ref / n_ref if n_ref else 0.0
        p_cur = x_cur / n_cur if n_cur else 0.0
        evidence = {
            "n_reference": n_ref,
            "n_current": n_cur,
            "reference_missing_rate": p_ref,
            "current_missing_rate": p_cur,
            "psi": missing_psi(p_ref, p_cur, n_ref, n_cur),
        }
        if n_cur == 0:
            return empty_result(self.name, feature_profile.name, self.alpha, "p_value", "empty window", evidence)
        if n_ref == 0:
            return empty_result(self.name, feature_profile.name, self.alpha, "p_value", "empty reference", evidence)
        z, p_value = two_proportion_z(x_ref, n_ref, x_cur, n_cur)
        return DriftResult(self.name, feature_profile.name, float(z), p_value, self.alpha, "p_value",
                           bool(p_value <= self.alpha), effect_size=evidence["psi"], effect_name="psi",
                           evidence=json_safe(evidence))


def two_proportion_z(x_ref: int, n_ref: int, x_cur: int, n_cur: int) -> tuple[float, float]:
    """Signed z and two-sided p-value of :class:`MissingRate`: ``x`` missing of ``n`` on each side (both ``n`` > 0).

    >>> z, p = two_proportion_z(20, 1000, 100, 500)
    >>> round(z, 2), p < 1e-30
    (12.11, True)
    """
    p_ref, p_cur = x_ref / n_ref, x_cur / n_cur
    pooled = (x_ref + x_cur) / (n_ref + n_cur)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_ref + 1.0 / n_cur))
    z = (p_cur - p_ref) / se if se > 0 else 0.0
    return z, float(2.0 * special.ndtr(-abs(z)))  # = 2 * scipy.stats.norm.sf(|z|), without its argument handling


def missing_psi(p_ref: float, p_cur: float, n_ref: int, n_cur: int, pseudo_count: float = 0.5) -> float:
    """PSI of the (missing, present) split, with the same smoothing as :mod:`detectors.psi`."""
    if not n_ref or not n_cur:
        return 0.0
    a = (np.array([p_ref, 1 - p_ref]) * n_ref + pseudo_count) / (n_ref + 2 * pseudo_count)
    b = (np.array([p_cur, 1 - p_cur]) * n_cur + pseudo_count) / (n_cur + 2 * pseudo_count)
    return float(np.sum((b - a) * np.log(b / a)))
