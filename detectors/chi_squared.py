"""Chi-squared test of a categorical window's counts against the reference counts."""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from detectors.base import DriftResult, Estimator, empty_result, json_safe
from detectors.profile import FeatureProfile, WindowColumn, safe_evidence

__all__ = ["ChiSquared", "contingency_table", "chi2_homogeneity", "chi2_p_values"]

MAX_LISTED = 10


def contingency_table(reference_counts: dict, current_counts: dict) -> tuple[list[str], np.ndarray]:
    """Categories (reference order, then unseen ones sorted) and the 2 x k count table."""
    categories = list(reference_counts) + sorted(c for c in current_counts if c not in reference_counts)
    table = np.array(
        [[reference_counts.get(c, 0) for c in categories], [current_counts.get(c, 0) for c in categories]],
        dtype=np.int64,
    )
    return categories, table


def chi2_homogeneity(table: np.ndarray) -> tuple[float, float, int, np.ndarray]:
    """Statistic, p-value, degrees of freedom and expected counts of a 2 x k table (k >= 2).

    The same arithmetic, in the same order, as
    ``scipy.stats.chi2_contingency(table, correction=False)`` (so the same
    numbers), without its generic input handling, which costs more than the
    test itself on a small table.

    >>> table = np.array([[600, 300, 100], [30, 30, 40]])
    >>> ours, theirs = chi2_homogeneity(table), stats.chi2_contingency(table, correction=False)
    >>> ours[:3] == (theirs.statistic, theirs.pvalue, theirs.dof), np.array_equal(ours[3], theirs.expected_freq)
    (True, True)
    """
    observed = np.asarray(table, dtype=np.float64)
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0, keepdims=True) / observed.sum()
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    if observed.shape[0] != 2 or dof < 1 or not (expected > 0).all() or (observed < 0).any():
        res = stats.chi2_contingency(table, correction=False)  # scipy's own errors and degenerate cases
        return res.statistic, res.pvalue, res.dof, res.expected_freq
    statistic = np.sum(((observed - expected) ** 2 / expected).ravel())
    return statistic, special.chdtrc(float(dof), statistic), dof, expected


def chi2_p_values(tables: np.ndarray) -> np.ndarray:
    """``chi2_homogeneity(table)[1]`` of every 2 x k table of an ``(m, 2, k)`` stack, the same numbers.

    The same element-wise arithmetic, each table's sums taken along its own contiguous row (so
    in the order a single table's are); a table that function hands to scipy (a zero expected
    count, a single category) is handed to it here too. One pass instead of one per table: segment
    drift tests a feature's tables of all segment values at once.

    >>> tables = np.array([[[600, 300, 100], [30, 30, 40]], [[50, 49, 1], [10, 0, 3]]])
    >>> [bool(p == chi2_homogeneity(t)[1]) for p, t in zip(chi2_p_values(tables), tables)]
    [True, True]
    """
    observed = np.asarray(tables, dtype=np.float64)
    m, rows, k = observed.shape
    if m == 0:
        return np.empty(0)
    expected = observed.sum(axis=2, keepdims=True) * observed.sum(axis=1, keepdims=True) / \
        observed.reshape(m, -1).sum(axis=1)[:, None, None]
    dof = (rows - 1) * (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = ((observed - expected) ** 2 / expected).reshape(m, -1).sum(axis=1)
    plain = (expected > 0).reshape(m, -1).all(axis=1) & (observed >= 0).reshape(m, -1).all(axis=1)
    if rows != 2 or dof < 1:
        plain[:] = False
    p = special.chdtrc(float(max(dof, 1)), statistic)
    for i in np.flatnonzero(~plain).tolist():
        p[i] = chi2_homogeneity(tables[i])[1]
    return p


class ChiSquared(Estimator):
    """Chi-squared test of homogeneity: reference counts vs window counts.

    The 2 x k table (reference row, window row) over the union of categories is
    passed to ``scipy.stats.chi2_contingency(table, correction=False)``, whose
    statistic and p-value are returned. Because the reference is a sample too,
    this two-sample test is used rather than a goodness-of-fit test against
    fixed reference proportions (which over-alarms with small references).
    Categories unseen in the reference are not an error: they enter the table
    with a reference count of 0 and are evidence of drift (listed in
    ``evidence["unseen_categories"]``). Missing values are excluded
    (:class:`~detectors.missing_rate.MissingRate` tests those). An empty window
    or a single category overall gives statistic 0, p-value 1, no drift.

    Parameters
    ----------
    alpha
        Drift when ``p_value <= alpha``.

    Examples
    --------
    >>> from detectors.profile import FeatureProfile
    >>> ref = FeatureProfile.from_values("plan", ["a"] * 600 + ["b"] * 300 + ["c"] * 100)
    >>> test = ChiSquared(alpha=0.01)
    >>> test.test(ref, ["a"] * 59 + ["b"] * 31 + ["c"] * 10).drifted
    False
    >>> r = test.test(ref, ["a"] * 30 + ["b"] * 30 + ["c"] * 30 + ["new"] * 10)
    >>> r.drifted, r.evidence["unseen_categories"]
    (True, ['new'])
    """

    name = "chi_squared"

    def __init__(self, alpha: float = 0.05):
        self.alpha = alpha

    def test(self, feature_profile: FeatureProfile, values, detector: str | None = None) -> DriftResult:
        detector = detector or self.name
        if feature_profile.kind != "categorical":
            raise ValueError(f"chi-squared needs a categorical feature; {feature_profile.name!r} is {feature_profile.kind}")
        column = WindowColumn.of(values, "categorical")
        current_counts = column.counts
        reference_counts = feature_profile.category_counts
        categories, table = contingency_table(reference_counts, current_counts)
        unseen = categories[len(reference_counts):]
        n_ref, n_cur = int(table[0].sum()), int(table[1].sum())
        evidence = {
            "n_reference": n_ref,
            "n_current": n_cur,
            "reference": feature_profile.summary,
            "current": column.summary,
            "n_unseen_categories": len(unseen),
            "unseen_categories": unseen[:MAX_LISTED],
            "unseen_rate": float(table[1, len(reference_counts):].sum()) / n_cur if n_cur else 0.0,
        }
        if n_cur == 0:
            return empty_result(detector, feature_profile.name, self.alpha, "p_value", "no non-missing values in window", evidence)
        if n_ref == 0:
            return empty_result(detector, feature_profile.name, self.alpha, "p_value", "no non-missing values in reference", evidence)
        if len(categories) < 2:
            return empty_result(detector, feature_profile.name, self.alpha, "p_value", "a single category in reference and window", evidence)
        statistic, p_value, dof, expected_freq = chi2_homogeneity(table)
        expected = expected_freq[1]
        contribution = (table[1] - expected) ** 2 / expected + (table[0] - expected_freq[0]) ** 2 / expected_freq[0]
        order = np.argsort(-contribution)[:MAX_LISTED]
        evidence["dof"] = int(dof)
        reference_row, window_row = table.tolist()  # Python ints: int / int is the same float as numpy's, and cheaper
        evidence["largest_changes"] = [
            [categories[i], reference_row[i] / n_ref, window_row[i] / n_cur] for i in order.tolist()
        ]  # [category, reference fraction, window fraction]
        p_value = float(p_value)
        return DriftResult(detector, feature_profile.name, float(statistic), p_value, self.alpha, "p_value",
                           bool(p_value <= self.alpha), evidence=safe_evidence(evidence, feature_profile, column))
