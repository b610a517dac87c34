"""Is the rolling metric's drop from the baseline real? A test that sees both sample sizes.

The baseline and the rolling metric are each estimated from a few hundred labels:
a 0.05 accuracy gap between two estimates from 500 labels each is within their
noise (the difference's standard error is about 0.025 at accuracy 0.8). A
performance finding therefore needs the gap to exceed the tolerance *and* a
one-sided test of "no drop" to reject at ``alpha``:

* classification (accuracy): pooled two-proportion z-test of the correct counts,
  ``norm.sf((p_baseline - p_rolling) / se)``;
* regression (MAE): Welch's t-test of the absolute errors, as
  ``scipy.stats.ttest_ind(rolling, baseline, equal_var=False, alternative="greater")``
  (one-sample against the baseline value when its errors were not kept).

The check runs once per window and every 25 labels while the concept detector
suspects a change, on heavily overlapping rolling windows: ``alpha`` (default
0.001) is set low for those repeated looks, as the drift tests' ERT calibration
is. The baseline's own standard error and 95% interval are reported with it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["DropTest", "drop_test"]


@dataclass(frozen=True)
class DropTest:
    """The outcome of :func:`drop_test`; ``gap`` is in the metric's units (relative for MAE)."""

    metric: str
    baseline: float
    rolling: float
    gap: float
    p_value: float
    tolerance: float
    alpha: float
    n_baseline: int
    n_rolling: int
    baseline_se: float
    test: str

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def drifted(self) -> bool:
        return self.gap > self.tolerance and self.significant

    def evidence(self) -> dict:
        half = 1.959963984540054 * self.baseline_se
        return {"test": self.test, "p_value": self.p_value, "alpha": self.alpha, "significant": self.significant,
                "n_baseline": self.n_baseline, "n_rolling": self.n_rolling, "baseline_se": self.baseline_se,
                "baseline_ci95": [self.baseline - half, self.baseline + half]}


def drop_test(metric: str, baseline_errors, rolling_errors, tolerance: float, alpha: float,
              baseline: float | None = None, n_baseline: int | None = None) -> DropTest:
    """Test the rolling window's errors against the baseline period's.

    ``metric`` is ``"accuracy"`` (errors are 0/1, 1 = wrong) or ``"mae"`` (absolute errors).
    ``baseline_errors`` may be None for a baseline known only as a value (``baseline``,
    from ``n_baseline`` labels).

    >>> t = drop_test("accuracy", [0] * 400 + [1] * 100, [0] * 370 + [1] * 130, 0.05, 0.001)
    >>> round(t.baseline, 3), round(t.rolling, 3), round(t.gap, 3), round(t.p_value, 4), t.drifted
    (0.8, 0.74, 0.06, 0.0121, False)
    >>> drop_test("accuracy", [0] * 400 + [1] * 100, [0] * 300 + [1] * 200, 0.05, 0.001).drifted
    True
    """
    rolling_errors = np.asarray(rolling_errors, dtype=np.float64)
    n_r = int(rolling_errors.size)
    if baseline_errors is not None:
        baseline_errors = np.asarray(baseline_errors, dtype=np.float64)
        n_b = int(baseline_errors.size)
    else:
        n_b = int(n_baseline or 0)
    if metric == "accuracy":
        correct_r = n_r - float(rolling_errors.sum())
        if baseline_errors is not None:
            correct_b = n_b - float(baseline_errors.sum())
        else:
            correct_b = round(baseline * n_b)
        p_b, p_r = correct_b / n_b, correct_r / n_r
        pooled = (correct_b + correct_r) / (n_b + n_r)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_b + 1 / n_r))
        p_value = float(stats.norm.sf((p_b - p_r) / se)) if se > 0 else (0.0 if p_r < p_b else 1.0)
        return DropTest(metric, p_b, p_r, p_b - p_r, p_value, tolerance, alpha, n_b, n_r,
                        math.sqrt(p_b * (1 - p_b) / n_b), "two_proportion_z")
    rolling = float(rolling_errors.mean())
    if baseline_errors is not None:
        base = float(baseline_errors.mean())
        result = stats.ttest_ind(rolling_errors, baseline_errors, equal_var=False, alternative="greater")
        base_se = float(baseline_errors.std(ddof=1) / math.sqrt(n_b)) if n_b > 1 else float("nan")
        test = "welch_t"
    else:
        base = float(baseline)
        result = stats.ttest_1samp(rolling_errors, base, alternative="greater")
        base_se, test = float("nan"), "one_sample_t"
    p_value = float(result.pvalue) if np.isfinite(result.pvalue) else 1.0
    gap = (rolling - base) / max(abs(base), 1e-12)
    return DropTest(metric, base, rolling, gap, p_value, tolerance, alpha, n_b, n_r, base_se, test)
