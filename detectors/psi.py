"""Population Stability Index between the reference and a window."""

from __future__ import annotations

import numpy as np

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.histogram import histograms

__all__ = ["PopulationStabilityIndex", "psi", "smoothed_fractions", "psi_of_fractions"]

_STR = frozenset({str})


def psi(reference_counts: np.ndarray, current_counts: np.ndarray, pseudo_count: float = 0.5) -> float:
    """``sum((q - p) * ln(q / p))`` over bins, with ``pseudo_count`` added to every bin of both sides.

    The pseudo-count keeps empty bins (and unseen categories) finite.

    >>> round(psi(np.array([50, 50]), np.array([50, 50])), 12)
    0.0
    >>> round(psi(np.array([500, 500]), np.array([800, 200])), 4)
    0.4149
    """
    return psi_of_fractions(smoothed_fractions(reference_counts, pseudo_count), smoothed_fractions(current_counts, pseudo_count))


def smoothed_fractions(counts: np.ndarray, pseudo_count: float = 0.5) -> np.ndarray:
    """Bin fractions after adding ``pseudo_count`` to every bin: one side of :func:`psi`.

    >>> smoothed_fractions(np.array([1, 0, 3])).tolist()
    [0.2727272727272727, 0.09090909090909091, 0.6363636363636364]
    """
    smoothed = np.asarray(counts, dtype=np.float64) + pseudo_count
    return smoothed / smoothed.sum()


def psi_of_fractions(p: np.ndarray, q: np.ndarray) -> float:
    """:func:`psi` from both sides' :func:`smoothed_fractions` (a reference's are the same every window)."""
    return float(np.sum((q - p) * np.log(q / p)))


class PopulationStabilityIndex(Estimator):
    """PSI over reference quantile bins (numeric) or category frequencies (categorical).

    Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major
    shift. The decision is on the statistic (drift if ``psi > threshold``).

    Parameters
    ----------
    threshold
        Drift when PSI exceeds it.
    pseudo_count
        Added to every bin count of both sides before normalising.

    Examples
    --------
    >>> from detectors.profile import FeatureProfile
    >>> rng = np.random.default_rng(0)
    >>> ref = FeatureProfile.from_values("x", rng.normal(size=2000))
    >>> test = PopulationStabilityIndex(threshold=0.1)
    >>> test.test(ref, rng.normal(size=1000)).drifted
    False
    >>> r = test.test(ref, rng.normal(loc=0.5, size=1000))
    >>> r.drifted, round(r.statistic, 2)
    (True, 0.3)
    """

    name = "psi"

    def __init__(self, threshold: float = 0.2, pseudo_count: float = 0.5):
        self.threshold = threshold
        self.pseudo_count = pseudo_count

    def test(self, feature_profile, values) -> DriftResult:
        labels, ref, cur = histograms(feature_profile, values)
        n_ref, n_cur = int(ref.sum()), int(cur.sum())
        bins = labels[:50]
        # Already what json_safe would make of it (bin labels and categories are str; the
        # fractions are finite floats): built as such instead of walked value by value.
        evidence = {"n_reference": n_ref, "n_current": n_cur,
                    "bins": bins if _STR.issuperset(map(type, bins)) else json_safe(bins),
                    "reference_fractions": (ref[:50] / max(n_ref, 1)).tolist(),
                    "current_fractions": (cur[:50] / max(n_cur, 1)).tolist()}
        if n_cur == 0 or n_ref == 0:
            return empty_result(self.name, feature_profile.name, self.threshold, "statistic", "no non-missing values", evidence)
        value = psi(ref, cur, self.pseudo_count)
        return DriftResult(self.name, feature_profile.name, value, None, self.threshold, "statistic",
                           bool(value > self.threshold), effect_size=value, effect_name="psi", evidence=evidence)
