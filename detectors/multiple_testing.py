"""Multiple-testing corrections for the p-values of one window.

Every function returns ``(adjusted_p_values, reject)``; ``reject`` is
``adjusted <= alpha``. :func:`raw_threshold` gives the equivalent threshold on
the raw p-values, which is what :class:`~detectors.base.DriftResult` reports.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bonferroni", "benjamini_hochberg", "correct", "raw_threshold", "CORRECTIONS"]

CORRECTIONS = ("bh", "bonferroni", "none")


def bonferroni(p_values, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Bonferroni: ``min(1, m * p)``; controls the family-wise error rate.

    >>> adjusted, reject = bonferroni([0.01, 0.02, 0.5], alpha=0.05)
    >>> adjusted.tolist(), reject.tolist()
    ([0.03, 0.06, 1.0], [True, False, False])
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.minimum(1.0, p * p.size)
    return adjusted, adjusted <= alpha


def benjamini_hochberg(p_values, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg step-up: controls the false discovery rate (independent or PRDS tests).

    Adjusted p-values are those of ``scipy.stats.false_discovery_control(p, method="bh")``.

    >>> adjusted, reject = benjamini_hochberg([0.01, 0.02, 0.5], alpha=0.05)
    >>> adjusted.round(12).tolist(), reject.tolist()
    ([0.03, 0.03, 0.5], [True, True, False])
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy(), np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted, adjusted <= alpha


def correct(p_values, alpha: float, method: str = "bh") -> tuple[np.ndarray, np.ndarray]:
    """Dispatch on ``method`` in ``("bh", "bonferroni", "none")``."""
    if method == "bh":
        return benjamini_hochberg(p_values, alpha)
    if method == "bonferroni":
        return bonferroni(p_values, alpha)
    if method == "none":
        p = np.asarray(p_values, dtype=np.float64)
        return p.copy(), p <= alpha
    raise ValueError(f"unknown correction {method!r}; expected one of {CORRECTIONS}")


def raw_threshold(p_values, alpha: float, method: str = "bh") -> float:
    """The threshold on raw p-values equivalent to the correction (reject iff ``p <= threshold``).

    BH: ``k * alpha / m`` for the largest ``k`` with ``p_(k) <= k * alpha / m``
    (``alpha / m`` when nothing is rejected); Bonferroni: ``alpha / m``.

    >>> raw_threshold([0.01, 0.02, 0.5], 0.05, "bh"), raw_threshold([0.01, 0.02, 0.5], 0.05, "bonferroni")
    (0.03333333333333333, 0.016666666666666666)
    """
    p = np.sort(np.asarray(p_values, dtype=np.float64))
    m = p.size
    if method == "none" or m == 0:
        return float(alpha)
    if method == "bonferroni":
        return alpha / m
    if method == "bh":
        below = np.nonzero(p <= np.arange(1, m + 1) * alpha / m)[0]
        k = below[-1] + 1 if below.size else 1
        return float(k * alpha / m)
    raise ValueError(f"unknown correction {method!r}; expected one of {CORRECTIONS}")
