"""Jensen-Shannon distance between reference and window histograms."""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.histogram import histograms

__all__ = ["JensenShannon", "jensenshannon_base2", "jensenshannon_normalised"]

_LN2 = np.log(2)


def jensenshannon_base2(p: np.ndarray, q: np.ndarray) -> np.float64:
    """``scipy.spatial.distance.jensenshannon(p, q, base=2)`` of two 1-d float arrays.

    The same operations in the same order, without the generic axis handling,
    which costs more than the arithmetic on a dozen bins.

    >>> from scipy.spatial import distance
    >>> p, q = np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.4, 0.1])
    >>> bool(jensenshannon_base2(p, q) == distance.jensenshannon(p, q, base=2))
    True
    """
    return jensenshannon_normalised(p / p.sum(), q / q.sum())


def jensenshannon_normalised(p: np.ndarray, q: np.ndarray) -> np.float64:
    """:func:`jensenshannon_base2` after its first step, the division of each side by its sum
    (which a reference's side, the same every window, need not do again)."""
    m = (p + q) / 2.0
    js = rel_entr(p, m).sum() + rel_entr(q, m).sum()
    js /= _LN2
    return np.sqrt(js / 2.0)


class JensenShannon(Estimator):
    """Jensen-Shannon distance (base 2, so in [0, 1]) between binned distributions.

    Numeric features use the reference quantile bins; categorical features the
    category frequencies over the union of categories. Computed with
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` (see
    :func:`jensenshannon_base2`); it is the square
    root of the JS divergence and finite with empty bins. The decision is on the
    statistic.

    Parameters
    ----------
    threshold
        Drift when the distance exceeds it.

    Examples
    --------
    >>> from detectors.profile import FeatureProfile
    >>> rng = np.random.default_rng(0)
    >>> ref = FeatureProfile.from_values("x", rng.normal(size=2000))
    >>> test = JensenShannon(threshold=0.1)
    >>> test.test(ref, rng.normal(size=1000)).drifted
    False
    >>> r = test.test(ref, rng.normal(loc=0.5, size=1000))
    >>> r.drifted, round(r.statistic, 2)
    (True, 0.23)
    """

    name = "jensen_shannon"

    def __init__(self, threshold: float = 0.1):
        self.threshold = threshold

    def test(self, feature_profile, values) -> DriftResult:
        labels, ref, cur = histograms(feature_profile, values)
        evidence = {"n_reference": int(ref.sum()), "n_current": int(cur.sum()), "n_bins": len(labels)}
        if cur.sum() == 0 or ref.sum() == 0:
            return empty_result(self.name, feature_profile.name, self.threshold, "statistic", "no non-missing values", evidence)
        value = float(jensenshannon_base2(ref / ref.sum(), cur / cur.sum()))
        return DriftResult(self.name, feature_profile.name, value, None, self.threshold, "statistic",
                           bool(value > self.threshold), effect_size=value, effect_name="jensen_shannon",
                           evidence=json_safe(evidence))
