"""Data-quality checks of one window against the reference profile.

Each check returns a :class:`~detectors.base.DriftResult` (detector
``"data_quality.<check>"``, decision on the statistic), so quality problems
travel the same path as drift:

* ``out_of_range``: rate of non-missing numeric values outside the reference [min, max];
* ``type_mismatch``: rate of values that are not finite real numbers (strings,
  infinities; a bool is 1/0, see :mod:`detectors.values`) in a numeric feature; such values count as missing in the
  drift tests, so this check is what names them;
* ``unseen_categories``: rate of categorical values absent from the reference;
* ``new_feature``: a feature in the window that the reference does not know;
* ``missing_feature``: a reference feature absent from the window.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from detectors.base import DriftResult, Estimator, json_safe
from detectors.profile import _PLAIN_NUMBERS, ReferenceProfile, WindowColumn, _is_missing, _is_number

__all__ = ["DataQuality", "type_mismatch_count"]

MAX_EXAMPLES = 5


def type_mismatch_count(values) -> tuple[int, list]:
    """Values of a numeric feature that are neither missing nor finite real numbers, and a few examples.

    >>> type_mismatch_count([1, None, "3", True, float("inf"), float("nan")])
    (2, ['3', inf])
    >>> type_mismatch_count([1, None, 2.5])
    (0, [])
    """
    if isinstance(values, WindowColumn):
        values = values.raw
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        bad = values[np.isinf(values)] if values.dtype.kind == "f" else values[:0]
        return int(bad.size), bad[:MAX_EXAMPLES].tolist()
    seq = values.tolist() if isinstance(values, np.ndarray) else values
    if _PLAIN_NUMBERS.issuperset(map(type, seq)) and math.inf not in seq and -math.inf not in seq:
        return 0, []  # the usual window, checked at C speed: only floats, ints and None, none infinite
    bad = [v for v in seq if not _is_missing(v) and not isinstance(v, (bool, np.bool_))
           and not (_is_number(v) and math.isfinite(v))]
    return len(bad), bad[:MAX_EXAMPLES]


class DataQuality(Estimator):
    """Data-quality checks of a window (as columns) against a reference profile.

    Parameters
    ----------
    max_out_of_range_rate
        ``out_of_range`` fires when the rate exceeds it.
    max_type_mismatch_rate
        ``type_mismatch`` fires when the rate exceeds it (default: any mismatch).
    max_unseen_rate
        ``unseen_categories`` fires when the rate exceeds it.

    Examples
    --------
    >>> ref = ReferenceProfile.from_columns({"age": list(range(20, 60)), "plan": ["a", "b"] * 20})
    >>> window = {"age": [25, 35, 45] * 10 + [99] * 10 + ["n/a"], "plan": ["a"] * 31 + ["c"] * 10,
    ...           "zip": list(range(41))}
    >>> [(r.detector, r.feature, round(r.statistic, 3)) for r in DataQuality().check(ref, window) if r.drifted]
    [('data_quality.out_of_range', 'age', 0.25), ('data_quality.type_mismatch', 'age', 0.024), ('data_quality.unseen_categories', 'plan', 0.244), ('data_quality.new_feature', 'zip', 1.0)]
    """

    def __init__(self, max_out_of_range_rate: float = 0.01, max_type_mismatch_rate: float = 0.0,
                 max_unseen_rate: float = 0.01):
        self.max_out_of_range_rate = max_out_of_range_rate
        self.max_type_mismatch_rate = max_type_mismatch_rate
        self.max_unseen_rate = max_unseen_rate

    def _result(self, check: str, feature: str, statistic: float, threshold: float, evidence: dict) -> DriftResult:
        return DriftResult(f"data_quality.{check}", feature, float(statistic), None, float(threshold), "statistic",
                           bool(statistic > threshold), evidence=json_safe(evidence))

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
                    outside = (present < lo) | (present > hi)
                    rate = float(outside.mean())
                    # A sample from the reference's own distribution falls outside the
                    # reference's [min, max] with probability ~2/(n+1); allow that plus
                    # 3 standard errors, so small references don't cry wolf.
                    expected = 2.0 / (fp.n_present + 1)
                    allowed = max(self.max_out_of_range_rate,
                                  expected + 3 * math.sqrt(expected * (1 - expected) / present.size))
                    results.append(self._result("out_of_range", name, rate, allowed, {
                        "expected_rate": expected,
                        "n_outside": int(outside.sum()), "n_present": int(present.size),
                        "reference_range": [lo, hi], "current_range": [float(present.min()), float(present.max())],
                        "below": int((present < lo).sum()), "above": int((present > hi).sum())}))
                bad, examples = type_mismatch_count(column.raw)
                results.append(self._result("type_mismatch", name, bad / n if n else 0.0, self.max_type_mismatch_rate,
                                            {"n_mismatch": bad, "n": n, "examples": [repr(v) for v in examples]}))
            else:
                # per distinct category (counted once per window), not per value
                counts = {v: c for v, c in column.counts.items() if v not in fp.category_counts}
                n_present = int(sum(column.counts.values()))
                unseen = sum(counts.values())
                top = sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_EXAMPLES]
                results.append(self._result("unseen_categories", name, unseen / n_present if n_present else 0.0,
                                            self.max_unseen_rate, {"n_unseen": unseen, "n_present": n_present,
                                                                   "n_unseen_categories": len(counts), "top_unseen": top}))
        for name in window:
            if name not in reference.features:
                results.append(self._result("new_feature", name, 1.0, 0.0, {"reason": "feature absent from reference",
                                                                           "n": len(window[name])}))
        return results
