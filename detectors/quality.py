"""Data-quality checks of one window against the reference profile.

Each check returns a :class:`~detectors.base.DriftResult` (detector
``"data_quality.<check>"``, decision on the statistic), so quality problems
travel the same path as drift:

* ``out_of_range``: rate of non-missing numeric values outside the reference [min, max],
  judged against the exact null distribution of that count (see :func:`out_of_range_p_value`);
* ``type_mismatch``: rate of values that are not finite real numbers (strings,
  infinities; a bool is 1/0, see :mod:`detectors.values`) in a numeric feature; such values count as missing in the
  drift tests, so this check is what names them;
* ``unseen_categories``: rate of categorical values absent from the reference, judged against
  what the same split of the pooled values gives by chance (see :func:`unseen_p_value_bound`);
* ``new_feature``: a feature in the window that the reference does not know;
* ``missing_feature``: a reference feature absent from the window.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import gammaln
from scipy.stats import betabinom

from detectors.base import DriftResult, Estimator, json_safe
from detectors.profile import _PLAIN_NUMBERS, ReferenceProfile, WindowColumn, _is_missing, _is_number

__all__ = ["DataQuality", "out_of_range_p_value", "type_mismatch_count", "unseen_p_value_bound"]

MAX_EXAMPLES = 5


def type_mismatch_count(values) -> tuple[int, list]:
    """Values of a numeric feature that are neither missing nor finite real numbers, and a few examples.

    >>> type_mismatch_count([1, None, "3", True, float("inf"), float("nan")])
    (2, ['3', inf])
    >>> type_mismatch_count([1, None, 2.5])
    (0, [])
    >>> type_mismatch_count(WindowColumn(["x", 2.0, None, True, float("-inf")], "numeric"))
    (2, ['x', -inf])
    """
    column = values if isinstance(values, WindowColumn) and values.kind == "numeric" else None
    if isinstance(values, WindowColumn):
        values = values.raw
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        bad = values[np.isinf(values)] if values.dtype.kind == "f" else values[:0]
        return int(bad.size), bad[:MAX_EXAMPLES].tolist()
    seq = values.tolist() if isinstance(values, np.ndarray) else values
    if _PLAIN_NUMBERS.issuperset(map(type, seq)) and math.inf not in seq and -math.inf not in seq:
        return 0, []  # the usual window, checked at C speed: only floats, ints and None, none infinite
    if column is not None and len(column.values) == len(seq):
        # the converted column is NaN wherever a value is not a finite number (to_column): only
        # those rows can hold a mismatch, in the same order
        seq = list(map(seq.__getitem__, np.flatnonzero(np.isnan(column.values)).tolist()))
    bad = [v for v in seq if not _is_missing(v) and not isinstance(v, (bool, np.bool_))
           and not (_is_number(v) and math.isfinite(v))]
    return len(bad), bad[:MAX_EXAMPLES]


def out_of_range_p_value(n_outside: int, n_window: int, n_reference: int) -> float:
    """P(at least ``n_outside`` of ``n_window`` new values fall outside the [min, max] of
    ``n_reference`` values), all drawn from one continuous distribution.

    The probability mass outside the reference's extremes is the sum of two of its n+1
    spacings, Beta(2, n-1); given it, the count is binomial, so the count is
    beta-binomial(m, 2, n-1), whatever the distribution. The windows of one reference share
    its extremes, which is why a binomial with p = 2/(n+1) understates the spread: with a
    reference of 500 and windows of 250 it called 4 values outside significant, which a
    stationary feature shows in 4.5% of windows. Ties (discrete values) only make the count
    smaller, so the test is conservative there.

    >>> round(out_of_range_p_value(0, 250, 500), 3), round(out_of_range_p_value(4, 250, 500), 4)
    (1.0, 0.0447)
    """
    if n_outside <= 0:
        return 1.0
    if n_outside > n_window:
        return 0.0
    return float(_out_of_range_tail(n_window, n_reference)[n_outside])


@functools.lru_cache(maxsize=1024)
def _out_of_range_tail(n_window: int, n_reference: int) -> np.ndarray:
    """P(count >= k) for k = 0..n_window, kept per window size (a window with missing values has
    fewer present ones: sizes vary).

    Exactly what ``betabinom.sf(np.arange(-1, n_window), n_window, 2, n_reference - 1)`` gives, but
    with the pmf computed once: scipy's generic sf is ``1 - sum(pmf(0..k))`` with the pmf of
    ``0..k`` recomputed for every k (three ``betaln`` a value, O(n_window^2): ~0.2 s for a window
    of 1,000). The same prefix sums (``np.sum`` of each prefix, the same pairwise order), clipped
    to [0, 1] as scipy clips them, are bit-identical.

    >>> n_window, n_reference = 250, 500
    >>> bool(np.array_equal(_out_of_range_tail(n_window, n_reference),
    ...                     betabinom.sf(np.arange(-1, n_window), n_window, 2, n_reference - 1)))
    True
    """
    pmf = betabinom.pmf(np.arange(n_window, dtype=np.float64), n_window, 2, max(1, n_reference - 1))
    tail = np.empty(n_window + 1)
    tail[0] = 1.0                    # P(count >= 0)
    tail[1:] = [1.0 - np.sum(pmf[:k + 1]) for k in range(n_window)]
    np.clip(tail, 0.0, 1.0, out=tail)
    tail.flags.writeable = False
    return tail


def unseen_p_value_bound(n_unseen: int, reference_counts, window_counts) -> float:
    """An upper bound on P(at least ``n_unseen`` window values of categories the reference lacks)
    when reference and window are drawn from one distribution.

    Conditional on the pooled values (N = n + m of them), a stationary stream splits them at
    random into a reference of n and a window of m. A window value is unseen exactly when every
    one of its category's c pooled copies fell in the window, with probability
    q_c = C(m, c) / C(N, c); the count is the sum over categories of c times that indicator.
    The indicators are negatively associated (disjoint parts of one sample without
    replacement), so the Chernoff bound of independent ones holds:
    ``P(K >= k) <= min_t exp(-t k) prod_v (1 - q_v + q_v e^(t c_v))``. A high-cardinality
    feature keeps showing categories its reference never saw (about the reference's share of
    categories seen once, Good-Turing): the bound knows that, a fixed rate does not.

    >>> reference = {"a": 500, "b": 300, "c": 200}
    >>> round(unseen_p_value_bound(0, reference, {"a": 50}), 3), unseen_p_value_bound(20, reference, {"a": 80, "z": 20}) < 1e-9
    (1.0, True)
    """
    if n_unseen <= 0:
        return 1.0
    pooled: dict = dict(reference_counts)
    for value, count in window_counts.items():
        pooled[value] = pooled.get(value, 0) + count
    n = sum(reference_counts.values())
    m = sum(window_counts.values())
    total = n + m
    if n == 0 or m == 0:
        return 1.0      # no reference values to have missed, or nothing in the window
    c, groups = np.unique(np.fromiter(pooled.values(), dtype=np.int64), return_counts=True)
    c, groups = c[c <= m], groups[c <= m]
    if not c.size:
        return 1.0
    # log q_c = log C(m, c) - log C(N, c)
    log_q = (gammaln(m + 1) - gammaln(m - c + 1)) - (gammaln(total + 1) - gammaln(total - c + 1))
    log_stay = np.log1p(-np.exp(log_q))

    def log_bound(t: float) -> float:
        return float(-t * n_unseen + (groups * np.logaddexp(log_stay, log_q + t * c)).sum())

    best = minimize_scalar(log_bound, bounds=(0.0, 50.0), method="bounded", options={"xatol": 1e-6})
    return float(min(1.0, math.exp(min(best.fun, 0.0))))


class DataQuality(Estimator):
    """Data-quality checks of a window (as columns) against a reference profile.

    Parameters
    ----------
    max_out_of_range_rate
        ``out_of_range`` fires when the rate exceeds it and the count is unlikely under the
        reference's own distribution (``out_of_range_alpha``).
    out_of_range_alpha
        Per feature and window: ``out_of_range`` needs its count's p-value
        (:func:`out_of_range_p_value`) at most this; 20 stationary numeric features give at most
        one such window in 500.
    max_type_mismatch_rate
        ``type_mismatch`` fires when the rate exceeds it (default: any mismatch).
    max_unseen_rate
        ``unseen_categories`` fires when the rate exceeds it and the count is unlikely by chance
        (``unseen_alpha``).
    unseen_alpha
        Per feature and window: ``unseen_categories`` needs the bound on its count's p-value
        (:func:`unseen_p_value_bound`) at most this.

    Examples
    --------
    >>> ref = ReferenceProfile.from_columns({"age": list(range(20, 60)) * 2, "plan": ["a", "b"] * 40})
    >>> window = {"age": [25, 35, 45] * 10 + [99] * 20 + ["n/a"], "plan": ["a"] * 41 + ["c"] * 10,
    ...           "zip": list(range(51))}
    >>> [(r.detector, r.feature, round(r.statistic, 3)) for r in DataQuality().check(ref, window) if r.drifted]
    [('data_quality.out_of_range', 'age', 0.4), ('data_quality.type_mismatch', 'age', 0.02), ('data_quality.unseen_categories', 'plan', 0.196), ('data_quality.new_feature', 'zip', 1.0)]
    """

    out_of_range_alpha = 1e-4    # what a checkpoint pickled before these parameters existed restores with
    unseen_alpha = 1e-4

    def __init__(self, max_out_of_range_rate: float = 0.01, max_type_mismatch_rate: float = 0.0,
                 max_unseen_rate: float = 0.01, out_of_range_alpha: float = 1e-4, unseen_alpha: float = 1e-4):
        self.max_out_of_range_rate = max_out_of_range_rate
        self.out_of_range_alpha = out_of_range_alpha
        self.max_type_mismatch_rate = max_type_mismatch_rate
        self.max_unseen_rate = max_unseen_rate
        self.unseen_alpha = unseen_alpha

    def _result(self, check: str, feature: str, statistic: float, threshold: float, evidence: dict,
                p_value: float | None = None) -> DriftResult:
        return DriftResult(f"data_quality.{check}", feature, float(statistic), p_value, float(threshold), "statistic",
                           bool(statistic > threshold), evidence=json_safe(evidence))

    def _allowed_outside(self, n_window: int, n_reference: int) -> int:
        """The largest count of values outside the range that does not alert: the count whose
        p-value is above ``out_of_range_alpha``, or the rate tolerance, whichever is larger."""
        by_rate = math.floor(self.max_out_of_range_rate * n_window)
        tail = _out_of_range_tail(n_window, n_reference)
        by_chance = int((tail[1:] > self.out_of_range_alpha).sum())   # tail decreases: the last k above alpha
        return max(by_rate, by_chance)

    def check(self, reference: ReferenceProfile, window: Mapping[str, Sequence | np.ndarray]) -> list[DriftResult]:
        """All checks for every feature; results in reference feature order, then new features."""
        results: list[DriftResult] = []
        for name, fp in reference.features.items():
            raw = window.get(name)
            if raw is None:
                results.append(self._result("missing_feature", name, 1.0, 0.0, {"reason": "feature absent from window"}))
                continue
            n = len(raw)
            column = WindowColumn.of(raw, fp.value_type)  # shared with the drift tests when the caller built it
            if fp.kind == "numeric":
                present = column.present
                lo, hi = fp.summary.get("min"), fp.summary.get("max")
                if lo is not None and present.size:
                    below, above = int((present < lo).sum()), int((present > hi).sum())
                    m, outside = int(present.size), below + above
                    # allowed as a rate, so that "statistic > threshold" is "outside > allowed"
                    allowed = (self._allowed_outside(m, fp.n_present) + 0.5) / m
                    results.append(self._result("out_of_range", name, outside / m, allowed, {
                        "expected_rate": 2.0 / (fp.n_present + 1), "n_reference": fp.n_present,
                        "alpha": self.out_of_range_alpha, "max_rate": self.max_out_of_range_rate,
                        "n_outside": outside, "n_present": m,
                        "reference_range": [lo, hi], "current_range": [float(present.min()), float(present.max())],
                        "below": below, "above": above},
                        p_value=out_of_range_p_value(outside, m, fp.n_present)))
                bad, examples = type_mismatch_count(column)   # its NaN rows are the only candidates
                results.append(self._result("type_mismatch", name, bad / n if n else 0.0, self.max_type_mismatch_rate,
                                            {"n_mismatch": bad, "n": n, "examples": [repr(v) for v in examples]}))
            else:
                # per distinct category (counted once per window), not per value
                counts = {v: c for v, c in column.counts.items() if v not in fp.category_counts}
                n_present = int(sum(column.counts.values()))
                unseen = sum(counts.values())
                top = sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_EXAMPLES]
                rate = unseen / n_present if n_present else 0.0
                p_bound = None
                if rate > self.max_unseen_rate:   # the bound only matters past the rate tolerance
                    p_bound = unseen_p_value_bound(unseen, fp.category_counts, column.counts)
                allowed = self.max_unseen_rate if p_bound is None or p_bound <= self.unseen_alpha else 1.0
                results.append(self._result("unseen_categories", name, rate, allowed, {
                    "n_unseen": unseen, "n_present": n_present, "n_unseen_categories": len(counts), "top_unseen": top,
                    "alpha": self.unseen_alpha, "max_rate": self.max_unseen_rate}, p_value=p_bound))
        for name in window:
            if name not in reference.features:
                results.append(self._result("new_feature", name, 1.0, 0.0, {"reason": "feature absent from reference",
                                                                           "n": len(window[name])}))
        return results
