"""Two-sample Kolmogorov-Smirnov test of a numeric window against the reference."""

from __future__ import annotations

import math
from collections import OrderedDict
import warnings

import numpy as np
from scipy import stats

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import FeatureProfile, WindowColumn, safe_evidence

try:  # the exact two-sample p-value scipy's ks_2samp computes; see ks_2samp_sorted
    from scipy.stats._stats_py import _attempt_exact_2kssamp
except ImportError:  # pragma: no cover - another scipy: use ks_2samp itself
    _attempt_exact_2kssamp = None

__all__ = ["KolmogorovSmirnov", "ks_statistic", "ks_2samp_sorted", "ks_from_differences", "pooled_counts"]

MAX_EXACT_N = 10_000  # scipy's method="auto": exact p-value when both samples are at most this big
_EXACT_CACHE: "OrderedDict[tuple[int, int, int], tuple]" = OrderedDict()
_EXACT_CACHE_SIZE = 8192   # ~3 MB at most: the (window or segment size, reference size, h) a stream keeps meeting


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


def pooled_counts(current_sorted: np.ndarray, reference_sorted: np.ndarray) -> tuple[np.ndarray, ...]:
    """Both samples merged, and how many values of each are <= every merged value.

    Returns ``(order, merged, n_current_le, n_reference_le)``: ``merged`` is
    ``concatenate([current, reference])[order]`` sorted stably, and the counts
    are what ``searchsorted(sample, merged, side="right")`` gives, from one
    merge of two sorted runs instead of two binary searches per value. KS and
    Wasserstein both start from it.

    >>> order, merged, n_cur, n_ref = pooled_counts(np.array([2.0, 5.0]), np.array([1.0, 2.0, 2.0, 3.0]))
    >>> merged.tolist(), n_cur.tolist(), n_ref.tolist()
    ([1.0, 2.0, 2.0, 2.0, 3.0, 5.0], [0, 1, 1, 1, 1, 2], [1, 3, 3, 3, 4, 4])
    """
    pooled = np.concatenate([current_sorted, reference_sorted])
    order = np.argsort(pooled, kind="stable")
    merged = pooled[order]
    new_value = merged[1:] != merged[:-1]
    n_current_le = np.cumsum(order < current_sorted.size)
    if new_value.all():  # no ties: every merged value ends its own run
        return order, merged, n_current_le, np.arange(1, merged.size + 1) - n_current_le
    ends = np.append(np.flatnonzero(new_value), merged.size - 1)  # last index of each run of equal values
    run = np.concatenate([[0], np.cumsum(new_value)])
    n_current_le = n_current_le[ends]
    n_reference_le = ends + 1 - n_current_le
    return order, merged, n_current_le[run], n_reference_le[run]


def _exact_two_sided(n1: int, n2: int, g: int, d: float) -> tuple:
    """scipy's exact two-sided ``(success, d, p)``, memoised on what it depends on.

    It depends on ``d`` only through ``h = round(d * lcm(n1, n2))``, and a
    stream's windows keep meeting the same few ``(n1, n2, h)``; computing it is
    most of the cost of a KS test on a window of a thousand values.
    """
    h = round(float(d) * ((n1 // g) * n2))  # as scipy's int(np.round(d * lcm)): both round half to even
    key = (n1, n2, h)
    result = _EXACT_CACHE.get(key)
    if result is None:
        if len(_EXACT_CACHE) >= _EXACT_CACHE_SIZE:
            del _EXACT_CACHE[next(iter(_EXACT_CACHE))]   # the least recently used: a bounded LRU, not a reset
        result = _EXACT_CACHE[key] = _attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
    else:
        _EXACT_CACHE.move_to_end(key)
    return result


def ks_2samp_sorted(current_sorted: np.ndarray, reference_sorted: np.ndarray, pooled: tuple | None = None) -> tuple[float, float, float, int]:
    """``scipy.stats.ks_2samp(current, reference)`` (two-sided, ``method="auto"``) on sorted, non-empty, NaN-free samples.

    Returns statistic, p-value, statistic location and sign. It follows
    ks_2samp's own steps (scipy 1.17) without its generic input handling, which
    costs about as much as the test: the same ECDF differences, exact p-value
    when both samples have at most 10,000 values, else Smirnov's asymptotic
    one (``kstwo``). Anything else (NaN, an scipy without the exact helper)
    goes to ks_2samp itself. ``pooled`` is :func:`pooled_counts` of the two
    samples, if already computed.

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
    order, merged, n_current_le, n_reference_le = pooled or pooled_counts(current_sorted, reference_sorted)
    # ks_2samp's ECDF differences at every value of concatenate([current, reference]), in that order
    # (argmin/argmax pick the first of equal differences in that order).
    cddiffs = np.empty(merged.size)
    cddiffs[order] = n_current_le / n1 - n_reference_le / n2
    return ks_from_differences(cddiffs, current_sorted, reference_sorted)


def ks_from_differences(cddiffs: np.ndarray, current_sorted: np.ndarray, reference_sorted: np.ndarray) -> tuple[float, float, float, int]:
    """:func:`ks_2samp_sorted` from the ECDF differences it starts from.

    ``cddiffs`` is ``ecdf_current(x) - ecdf_reference(x)`` at every ``x`` of
    ``concatenate([current_sorted, reference_sorted])``, in that order (both
    ECDFs right-continuous, so an integer count over a sample size each); the
    counts may come from any computation that gives them, e.g. binary searches
    against a reference whose own counts are kept (:mod:`detectors.window_block`).

    >>> cur, ref = np.array([1.0, 2.0, 2.0]), np.array([2.0, 3.0])
    >>> cddiffs = np.searchsorted(cur, np.r_[cur, ref], "right") / 3 - np.searchsorted(ref, np.r_[cur, ref], "right") / 2
    >>> ks_from_differences(cddiffs, cur, ref) == ks_2samp_sorted(cur, ref)
    True
    """
    n1, n2 = current_sorted.shape[0], reference_sorted.shape[0]
    arg_min, arg_max = int(np.argmin(cddiffs)), int(np.argmax(cddiffs))
    min_s = -cddiffs[arg_min]
    if not 0 <= min_s <= 1:  # np.clip(x, 0, 1) is x itself inside [0, 1], and costs more than the rest
        min_s = np.clip(min_s, 0, 1)
    max_s = cddiffs[arg_max]
    if min_s > max_s:
        d, arg, sign = min_s, arg_min, -1
    else:
        d, arg, sign = max_s, arg_max, 1
    location = current_sorted[arg] if arg < n1 else reference_sorted[arg - n1]
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
    prob = np.float64(prob) if 0 <= prob <= 1 else np.clip(prob, 0, 1)
    return np.float64(d), prob, location, np.int8(sign)


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
        pooled = column.shared("pooled", reference, lambda: pooled_counts(current, reference))
        statistic, p_value, location, sign = ks_2samp_sorted(current, reference, pooled)
        evidence["statistic_location"] = float(location)
        # +1: the window's ECDF is above the reference's there (window shifted to smaller values).
        evidence["statistic_sign"] = int(sign)
        p_value = float(p_value)
        return DriftResult(detector, feature_profile.name, float(statistic), p_value, self.alpha, "p_value",
                           bool(p_value <= self.alpha), evidence=safe_evidence(evidence, feature_profile, column))
