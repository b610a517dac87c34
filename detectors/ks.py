"""Two-sample Kolmogorov-Smirnov test of a numeric window against the reference."""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import FeatureProfile, to_column
from detectors.summary import summarize

__all__ = ["KolmogorovSmirnov", "ks_statistic"]


def ks_statistic(reference_sorted: np.ndarray, current: np.ndarray) -> float:
    """Two-sample KS statistic (max |ECDF difference|) from a sorted reference.

    Vectorised with ``searchsorted``; equal to ``scipy.stats.ks_2samp(...).statistic``
    including ties (both ECDFs are evaluated at every pooled value, right-continuous).

    >>> ks_statistic(np.array([1.0, 2.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]))
    0.33333333333333337
    """
    current = np.sort(current)
    pooled = np.concatenate([reference_sorted, current])
    cdf_ref = np.searchsorted(reference_sorted, pooled, side="right") / reference_sorted.size
    cdf_cur = np.searchsorted(current, pooled, side="right") / current.size
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


class KolmogorovSmirnov(Estimator):
    """Two-sample KS test of the window's non-missing values vs the reference sample.

    Statistic and p-value are those of ``scipy.stats.ks_2samp`` (two-sided,
    default ``method="auto"``: exact for samples up to 10,000, asymptotic above)
    on the window and the profile's stored sorted reference sample, so ties and
    constant columns are handled exactly as scipy handles them. Missing values
    are excluded (:class:`~detectors.missing_rate.MissingRate` tests those). An
    empty or all-missing window gives statistic 0, p-value 1 and no drift, with
    the reason in ``evidence``.

    Parameters
    ----------
    alpha
        Drift when ``p_value <= alpha``.

    Examples
    --------
    >>> from detectors.profile import FeatureProfile
    >>> rng = np.random.default_rng(42)
    >>> ref = FeatureProfile.from_values("x", rng.normal(size=2000))
    >>> ks = KolmogorovSmirnov(alpha=0.01)
    >>> ks.test(ref, rng.normal(size=500)).drifted
    False
    >>> r = ks.test(ref, rng.normal(loc=0.5, size=500))
    >>> r.drifted, r.p_value < 1e-10, round(r.statistic, 3)
    (True, True, 0.252)
    >>> ks.test(ref, [None, float("nan")]).evidence["reason"]
    'no non-missing values in window'
    """

    name = "ks"

    def __init__(self, alpha: float = 0.05):
        self.alpha = alpha

    def test(self, feature_profile: FeatureProfile, values, detector: str | None = None) -> DriftResult:
        detector = detector or self.name
        if feature_profile.kind != "numeric":
            raise ValueError(f"KS needs a numeric feature; {feature_profile.name!r} is {feature_profile.kind}")
        column = to_column(values, "numeric")
        current = column[~np.isnan(column)]
        reference = feature_profile.sample
        evidence = {
            "n_reference": int(reference.size),
            "n_current": int(current.size),
            "reference": feature_profile.summary,
            "current": summarize(column, "numeric"),
        }
        if current.size == 0:
            return empty_result(detector, feature_profile.name, self.alpha, "p_value", "no non-missing values in window", evidence)
        if reference.size == 0:
            return empty_result(detector, feature_profile.name, self.alpha, "p_value", "no non-missing values in reference", evidence)
        res = stats.ks_2samp(current, reference)
        evidence["statistic_location"] = float(res.statistic_location)
        # +1: the window's ECDF is above the reference's there (window shifted to smaller values).
        evidence["statistic_sign"] = int(res.statistic_sign)
        p_value = float(res.pvalue)
        return DriftResult(detector, feature_profile.name, float(res.statistic), p_value, self.alpha, "p_value",
                           bool(p_value <= self.alpha), evidence=json_safe(evidence))
