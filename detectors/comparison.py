"""Champion/challenger: is the new version's error rate different from the current one's?"""
from __future__ import annotations

import numpy as np
from scipy.stats import ttest_ind

from detectors.base import DriftResult
from detectors.fairness import two_proportion_p


def compare_versions(champion_errors, challenger_errors, task: str, min_n: int = 200,
                     alpha: float = 0.05) -> DriftResult | None:
    """Compare recent per-event errors (0/1 for classifiers, absolute error for regressors).

    Returns None until both sides have ``min_n`` labelled events. The
    recommendation is ``promote`` when the challenger's error is significantly
    lower, ``rollback`` when significantly higher, else ``keep``.

    >>> r = compare_versions([1] * 60 + [0] * 140, [1] * 20 + [0] * 180, "classification")
    >>> r.evidence["recommendation"], round(r.statistic, 2)
    ('promote', 0.2)
    >>> compare_versions([0, 1], [1, 0], "classification") is None
    True
    """
    a, b = np.asarray(champion_errors, float), np.asarray(challenger_errors, float)
    if a.size < min_n or b.size < min_n:
        return None
    ea, eb = float(a.mean()), float(b.mean())
    if task == "classification":
        p = two_proportion_p(int(a.sum()), a.size, int(b.sum()), b.size)
        detector = "comparison.two_proportion"
    else:
        p = float(ttest_ind(a, b, equal_var=False).pvalue) if a.std() + b.std() > 0 else 1.0
        detector = "comparison.welch_t"
    if p < alpha:
        recommendation = "promote" if eb < ea else "rollback"
    else:
        recommendation = "keep"
    return DriftResult(detector, None, ea - eb, p, alpha, "p_value", recommendation != "keep",
                       effect_size=ea - eb, effect_name="error_reduction",
                       evidence={"recommendation": recommendation, "error_champion": ea, "error_challenger": eb,
                                 "n_champion": int(a.size), "n_challenger": int(b.size)})
