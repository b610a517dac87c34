"""Two-sample Kolmogorov-Smirnov test of a numeric window against the reference."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import FeatureProfile, WindowColumn

try:  # the exact two-sample p-value scipy's ks_2samp computes; see ks_2samp_sorted
    from scipy.stats._stats_py import _attempt_exact_2kssamp
except ImportError:  # pragma: no cover - another scipy: use ks_2samp itself
    _attempt_exact_2kssamp = None

__all__ = ["KolmogorovSmirnov", "ks_statistic", "ks_2samp_sorted"]

MAX_EXACT_N = 10_000  # scipy's method="auto": exact p-value when both samples are at most this big
_EXACT_CACHE: dict[tuple[int, int, int], tuple] = {}
_EXACT_CACHE_SIZE = 4096


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


def _exact_two_sided(n1: int, n2: int, g: int, d: float) -> tuple:
    """scipy's exact two-sided ``(success, d, p)``, memoised on what it depends on.

    It depends on ``d`` only through ``h = round(d * lcm(n1, n2))``, and a
    stream's windows keep meeting the same few ``(n1, n2, h)``; computing it is
    most of the cost of a KS test on a window of a thousand values.
    """
    h = int(np.round(d * ((n1 // g) * n2)))
    key = (n1, n2, h)
    result = _EXACT_CACHE.get(key)
    if result is None:
        if len(_EXACT_CACHE) >= _EXACT_CACHE_SIZE:
            _EXACT_CACHE.clear()
        result = _EXACT_CACHE[key] = _attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
    return result


def ks_2samp_sorted(current_sorted: np.ndarray, reference_sorted: np.ndarray) -> tuple[float, float, float, int]:
    """``scipy.stats.ks_2samp(current, reference)`` (two-sided, ``method="auto"``) on sorted, non-empty, NaN-free samples.

    Returns statistic, p-value, statistic location and sign. It follows
    ks_2samp's own steps (scipy 1.17) without its generic input handling, which
    costs about as much as the test: the same ECDF differences, exact p-value
    when both samples have at most 10,000 values, else Smirnov's asymptotic
    one (``kstwo``). Anything else (NaN, an scipy without the exact helper)
    goes to ks_2samp itself.

    >>> rng = np.random.default_rng(0)
    >>> a, b = np.sort(rng.normal(size=300)), np.sort(rng.normal(0.2, size=500))
    >>> res = stats.ks_2samp(a, b)
    >>> ks_2samp_sorted(a, b) == (res.statistic, res.pvalue, res.statistic_location, res.statistic_sign)
    True
    """
    n1, n2 = current_sorted.shape[0], reference_sorted.shape[0]
    if _attempt_exact_2kssamp is None or np.isnan(current_sorted[-1]) or np.isnan(reference_sorted[-1]):
        res = stats.ks_2samp(current_sorted, reference_sorted)
        return res.statistic, res.pvalue, res.statistic_location, res.statistic_sign
    data_all = np.concatenate([current_sorted, reference_sorted])
    cdf1 = np.searchsorted(current_sorted, data_all, side="right") / n1
    cdf2 = np.searchsorted(reference_sorted, data_all, side="right") / n2
    cddiffs = cdf1 - cdf2
    arg_min, arg_max = np.argmin(cddiffs), np.argmax(cddiffs)
    min_s = np.clip(-cddiffs[arg_min], 0, 1)
    max_s = cddiffs[arg_max]
    if min_s > max_s:
        d, location, sign = min_s, data_all[arg_min], -1
    else:
        d, location, sign = max_s, data_all[arg_max], 1
    g = math.gcd(n1, n2)
    asymptotic = max(n1, n2) > MAX_EXACT_N
    if not asymptotic:
        success, d, prob = _exact_two_sided(n1, n2, g, d)
        if not success:
            asymptotic = True
            warnings.warn("ks_2samp: Exact calculation unsuccessful. Switching to method=asymp.", RuntimeWarning, stacklevel=2)
    if asymptotic:
        m, n = sorted([float(n1), float(n2)], reverse=True)
        prob = stats.kstwo.sf(d, np.round(m * n / (m + n)))
    return np.float64(d), np.clip(prob, 0, 1), location, np.int8(sign)


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
        column = WindowColumn.of(values, "numeric")
        current = column.sorted_present
        reference = feature_profile.sample
        if reference.size > 1 and not (reference[:-1] <= reference[1:]).all():
            reference = np.sort(reference)  # profiles keep it sorted; one built by hand may not
        evidence = {
            "n_reference": int(reference.size),
            "n_current": int(current.size),
            "reference": feature_profile.summary,
            "current": column.summary,
        }
        if current.size == 0:
            return empty_result(detector, feature_profile.name, self.alpha, "p_value", "no non-missing values in window", evidence)
        if reference.size == 0:
            return empty_result(detector, feature_profile.name, self.alpha, "p_value", "no non-missing values in reference", evidence)
        statistic, p_value, location, sign = ks_2samp_sorted(current, reference)
        evidence["statistic_location"] = float(location)
        # +1: the window's ECDF is above the reference's there (window shifted to smaller values).
        evidence["statistic_sign"] = int(sign)
        p_value = float(p_value)
        return DriftResult(detector, feature_profile.name, float(statistic), p_value, self.alpha, "p_value",
                           bool(p_value <= self.alpha), evidence=json_safe(evidence))
