"""Wasserstein-1 distance between the reference and a numeric window, in reference std units."""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.ks import pooled_counts
from detectors.profile import WindowColumn

__all__ = ["Wasserstein", "wasserstein_sorted"]

_vecdot = getattr(np, "vecdot", None)


def wasserstein_sorted(u_sorted: np.ndarray, v_sorted: np.ndarray, pooled: tuple | None = None) -> float:
    """``scipy.stats.wasserstein_distance(u, v)`` of two sorted, non-empty samples.

    The same steps as scipy's unweighted ``_cdf_distance(1, u, v)`` (scipy 1.17),
    minus the argsorts of samples that are already sorted; the positions come
    from :func:`~detectors.ks.pooled_counts` (``pooled``, if already computed).

    >>> rng = np.random.default_rng(0)
    >>> u, v = np.sort(rng.normal(size=300)), np.sort(rng.normal(0.3, size=500))
    >>> bool(wasserstein_sorted(u, v) == stats.wasserstein_distance(u, v))
    True
    """
    _, all_values, u_le, v_le = pooled or pooled_counts(u_sorted, v_sorted)
    deltas = np.diff(all_values)
    u_cdf = u_le[:-1] / u_sorted.size
    v_cdf = v_le[:-1] / v_sorted.size
    if _vecdot is not None:  # what scipy uses on numpy >= 2
        return _vecdot(np.abs(u_cdf - v_cdf), deltas)
    return np.sum(np.abs(u_cdf - v_cdf) * deltas, axis=-1)  # pragma: no cover


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
        column = WindowColumn.of(values, "numeric")
        current = column.sorted_present
        reference = feature_profile.sample
        scale = feature_profile.std if feature_profile.std else 1.0
        evidence = {"n_reference": int(reference.size), "n_current": int(current.size), "scale": scale,
                    "scale_is_reference_std": bool(feature_profile.std)}
        if current.size == 0 or reference.size == 0:
            return empty_result(self.name, feature_profile.name, self.threshold, "statistic", "no non-missing values", evidence)
        if (reference[:-1] <= reference[1:]).all():
            pooled = column.shared("pooled", reference, lambda: pooled_counts(current, reference))
            raw = float(wasserstein_sorted(current, reference, pooled))
        else:  # profiles keep the sample sorted; one built by hand (or with NaN) may not
            raw = float(stats.wasserstein_distance(current, reference))
        evidence["distance"] = raw
        value = raw / scale
        return DriftResult(self.name, feature_profile.name, value, None, self.threshold, "statistic",
                           bool(value > self.threshold), effect_size=value, effect_name="wasserstein_std",
                           evidence=json_safe(evidence))
