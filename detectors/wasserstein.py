"""Wasserstein-1 distance between the reference and a numeric window, in reference std units."""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import to_column

__all__ = ["Wasserstein"]


class Wasserstein(Estimator):
    """Earth mover's distance (``scipy.stats.wasserstein_distance``) divided by the reference std.

    Dividing by the reference standard deviation makes the number comparable
    across features: a mean shift of 0.5 std gives about 0.5. A constant
    reference (std 0) is not rescaled (scale 1, noted in evidence). Missing
    values are excluded. The decision is on the statistic.

    Parameters
    ----------
    threshold
        Drift when the normalised distance exceeds it.

    Examples
    --------
    >>> from detectors.profile import FeatureProfile
    >>> rng = np.random.default_rng(0)
    >>> ref = FeatureProfile.from_values("x", rng.normal(size=2000))
    >>> test = Wasserstein(threshold=0.2)
    >>> test.test(ref, rng.normal(size=1000)).drifted
    False
    >>> r = test.test(ref, rng.normal(loc=0.5, size=1000))
    >>> r.drifted, round(r.statistic, 1)
    (True, 0.6)
    """

    name = "wasserstein"

    def __init__(self, threshold: float = 0.2):
        self.threshold = threshold

    def test(self, feature_profile, values) -> DriftResult:
        if feature_profile.kind != "numeric":
            raise ValueError(f"Wasserstein needs a numeric feature; {feature_profile.name!r} is {feature_profile.kind}")
        column = to_column(values, "numeric")
        current = column[~np.isnan(column)]
        reference = feature_profile.sample
        scale = feature_profile.std if feature_profile.std else 1.0
        evidence = {"n_reference": int(reference.size), "n_current": int(current.size), "scale": scale,
                    "scale_is_reference_std": bool(feature_profile.std)}
        if current.size == 0 or reference.size == 0:
            return empty_result(self.name, feature_profile.name, self.threshold, "statistic", "no non-missing values", evidence)
        raw = float(stats.wasserstein_distance(current, reference))
        evidence["distance"] = raw
        value = raw / scale
        return DriftResult(self.name, feature_profile.name, value, None, self.threshold, "statistic",
                           bool(value > self.threshold), effect_size=value, effect_name="wasserstein_std",
                           evidence=json_safe(evidence))
