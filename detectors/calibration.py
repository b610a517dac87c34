"""Calibrate the per-window alarm threshold to an expected run time (ERT) between false alarms.

A stream of windows tested at a fixed ``alpha`` raises false alarms at a rate
that depends on the number of features, their kinds, ties, the correction...
:func:`calibrate` instead picks the threshold from the data: it draws
``n_bootstrap`` pairs of independent bootstrap samples from the reference
columns (a reference-sized sample, capped at ``max_sample``, and a window of
``window_size`` rows), runs the suite's primary tests on each pair (KS,
chi-squared and missing rate, vectorised over all pairs), corrects each pair's
p-values as the suite does, and takes the ``1 / ert`` quantile of the
per-window minimum adjusted p-value. Using it as the suite's ``alpha``
(:meth:`Calibration.settings`) makes a stationary stream alarm about once per
``ert`` windows. Two bootstrap samples (not a window resampled from the
profile's own reference) are used so the null spread includes the reference's
own sampling noise, as it does in production.

Approximations, stated: KS p-values here are scipy's asymptotic ones
(``kstwo.sf(D, round(n m / (n + m)))``, as ``ks_2samp(method="asymp")``) while
the suite uses scipy's exact ones for samples up to 10,000; bootstrap
reference samples are capped at 10,000 rows (the profile keeps up to 100,000); the effect-size gate
is ignored (it can only remove alarms); with ``ert > n_bootstrap`` the quantile
is extrapolated from the few smallest values (flagged in ``extrapolated``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from detectors.base import json_safe
from detectors.profile import ReferenceProfile, to_column
from detectors.suite import WindowSettings

__all__ = ["Calibration", "calibrate", "calibrate_family", "bootstrap_min_p_values"]

# Bootstrap reference samples are capped here (not at the profile's 100,000): 200 samples of
# a 100,000-row reference would take 160 MB, and the null p-values barely depend on it.
CALIBRATION_SAMPLE = 10_000


@dataclass(frozen=True)
class Calibration:
    """A window threshold calibrated to an ERT; report it with every alert.

    ``threshold`` is on the window's minimum adjusted p-value (the suite's ``alpha``).

    >>> c = Calibration(threshold=0.004, ert=100, n_bootstrap=200, window_size=1000)
    >>> c.settings(WindowSettings()).alpha, c.to_dict()["statistic"]
    (0.004, 'min_adjusted_p_value')
    """

    threshold: float
    ert: float
    n_bootstrap: int
    window_size: int
    correction: str = "bh"
    statistic: str = "min_adjusted_p_value"
    extrapolated: bool = False
    seed: int = 0

    def settings(self, base: WindowSettings = WindowSettings()) -> WindowSettings:
        """``base`` with ``alpha`` set to the calibrated threshold (and the calibrated correction)."""
        return replace(base, alpha=float(min(max(self.threshold, 1e-300), 0.5)), correction=self.correction)

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


def _codes(column: np.ndarray, kind: str) -> tuple[np.ndarray, int]:
    """Integer codes (sorted unique values / categories), missing -> K; and K."""
    if kind == "numeric":
        missing = np.isnan(column)
        uniq, inverse = np.unique(column[~missing], return_inverse=True)
    else:
        missing = np.equal(column, None)
        uniq, inverse = np.unique(column[~missing].astype(str), return_inverse=True)
    codes = np.full(column.size, uniq.size, dtype=np.int64)
    codes[~missing] = inverse.ravel()
    return codes, int(uniq.size)


def _batched_counts(codes: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    b = idx.shape[0]
    flat = (codes[idx] + (np.arange(b)[:, None] * (k + 1))).ravel()
    return np.bincount(flat, minlength=b * (k + 1)).reshape(b, k + 1)


class KstwoCache:
    """``scipy.stats.kstwo.sf(D, n)`` remembered by its exact arguments: a pure function, so a value
    looked up is the value computed.

    One value costs 0.1-2.3 ms (scipy's Pomeranz recursion for the small ``n`` of windows of a few
    hundred rows), and a calibration asks for several hundred distinct ones. Model versions with the
    same reference and window sizes draw their null statistics on the same lattice
    (``|i / n_ref - j / n_window|``), so after the first version most values are known: the warm-up
    of the next ones is the bootstrap's counting. Bounded: cleared when it holds ``max_size`` values.
    """

    def __init__(self, max_size: int = 50_000):   # ~1,000 values per (reference, window) sizes; ~10 MB full
        self.max_size = max_size
        self.values: dict[tuple[float, float], float] = {}
        self.computed = 0   # values scipy was asked for (misses)

    def sf(self, d: np.ndarray, n: np.ndarray) -> np.ndarray:
        """``kstwo.sf(d, n)`` elementwise, each distinct pair looked up or computed once."""
        pairs, inverse = np.unique(np.column_stack([d, n]), axis=0, return_inverse=True)
        keys = list(map(tuple, pairs.tolist()))
        values = self.values
        missing = [i for i, key in enumerate(keys) if key not in values]
        if missing:
            if len(values) + len(missing) > self.max_size:   # full: start again with this call's values
                values.clear()
                missing = list(range(len(keys)))
            computed = stats.kstwo.sf(pairs[missing, 0], pairs[missing, 1])
            values.update(zip((keys[i] for i in missing), computed.tolist()))
            self.computed += len(missing)
        return np.array([values[key] for key in keys], dtype=np.float64)[inverse.ravel()]


KSTWO = KstwoCache()   # one per process: every model version's calibration shares it


def _ks_p(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    n1, n2 = ref.sum(1), cur.sum(1)
    ok = (n1 > 0) & (n2 > 0)
    f1 = np.cumsum(ref, 1) / np.maximum(n1, 1)[:, None]
    f2 = np.cumsum(cur, 1) / np.maximum(n2, 1)[:, None]
    d = np.abs(f1 - f2).max(1) if ref.shape[1] else np.zeros(ref.shape[0])
    en = np.maximum(np.round(n1 * n2 / np.maximum(n1 + n2, 1)), 1)
    # the null windows share few distinct (D, n) pairs, and versions of the same sizes share them
    # too: each distinct pair is evaluated once per process (the same values as evaluating every pair)
    return np.where(ok, KSTWO.sf(d, en), 1.0)


def _chi2_p(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    n1, n2 = ref.sum(1, keepdims=True), cur.sum(1, keepdims=True)
    col = ref + cur
    total = np.maximum(n1 + n2, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1, e2 = n1 * col / total, n2 * col / total
        terms = np.where(col > 0, (ref - e1) ** 2 / e1 + (cur - e2) ** 2 / e2, 0.0)
    stat = terms.sum(1)
    dof = (col > 0).sum(1) - 1
    ok = (n1[:, 0] > 0) & (n2[:, 0] > 0) & (dof > 0)
    return np.where(ok, stats.chi2.sf(stat, np.maximum(dof, 1)), 1.0)


def _missing_p(x1: np.ndarray, n1: int, x2: np.ndarray, n2: int) -> np.ndarray:
    pooled = (x1 + x2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (x2 / n2 - x1 / n1) / se, 0.0)
    return 2 * stats.norm.sf(np.abs(z))


def _null_p_values(reference_columns: Mapping[str, Sequence | np.ndarray], window_size: int,
                   settings: WindowSettings, n_bootstrap: int, rng: np.random.Generator,
                   kinds: Mapping[str, str] | None, max_sample: int,
                   profile: ReferenceProfile | None = None) -> list[np.ndarray]:
    """Primary and missing-rate p-values of ``n_bootstrap`` null windows, one array per test.

    ``profile``, when the caller has one of these columns already, gives each feature's kind and
    value type (building it again costs more than the bootstrap's counting).
    """
    if profile is None:
        profile = ReferenceProfile.from_columns(reference_columns, kinds=kinds, joint_sample_size=0)
    n = profile.n
    n_ref = min(n, max_sample)
    p_values = []
    for name, fp in profile.features.items():
        codes, k = _codes(to_column(reference_columns[name], fp.value_type), fp.kind)
        ref = _batched_counts(codes, rng.integers(0, n, size=(n_bootstrap, n_ref)), k)
        cur = _batched_counts(codes, rng.integers(0, n, size=(n_bootstrap, window_size)), k)
        tests = settings.numeric_tests if fp.kind == "numeric" else settings.categorical_tests
        if fp.kind == "numeric" and "ks" in tests:
            p_values.append(_ks_p(ref[:, :k], cur[:, :k]))
        elif fp.kind == "categorical" and "chi_squared" in tests:
            p_values.append(_chi2_p(ref[:, :k], cur[:, :k]))
        if settings.missing_rate:
            p_values.append(_missing_p(ref[:, k], n_ref, cur[:, k], window_size))
    return p_values


def _min_adjusted(p_values: list[np.ndarray], n_bootstrap: int, correction: str) -> np.ndarray:
    """Each null window's minimum adjusted p-value, the family corrected as the suite does."""
    if not p_values:
        return np.ones(n_bootstrap)
    p = np.sort(np.column_stack(p_values), axis=1)
    m = p.shape[1]
    if correction == "bh":
        return np.minimum(1.0, (p * m / np.arange(1, m + 1)).min(1))
    if correction == "bonferroni":
        return np.minimum(1.0, p[:, 0] * m)
    return p[:, 0]


def bootstrap_min_p_values(reference_columns: Mapping[str, Sequence | np.ndarray], window_size: int,
                           settings: WindowSettings = WindowSettings(), n_bootstrap: int = 200, seed: int = 0,
                           kinds: Mapping[str, str] | None = None, max_sample: int = CALIBRATION_SAMPLE,
                           profile: ReferenceProfile | None = None) -> np.ndarray:
    """Minimum adjusted primary p-value of each of ``n_bootstrap`` null windows."""
    rng = np.random.default_rng(seed)
    p_values = _null_p_values(reference_columns, window_size, settings, n_bootstrap, rng, kinds, max_sample, profile)
    return _min_adjusted(p_values, n_bootstrap, settings.correction)


def calibrate_family(groups: Sequence[tuple[Mapping[str, Sequence | np.ndarray], int]], ert: float,
                     settings: WindowSettings = WindowSettings(), n_bootstrap: int = 200, seed: int = 0,
                     kinds: Mapping[str, str] | None = None, max_sample: int = CALIBRATION_SAMPLE) -> Calibration:
    """As :func:`calibrate`, for a family made of several groups tested in the same window.

    Each group is ``(reference columns, window rows)``: segment drift tests every segment
    value's window rows against that value's reference rows, and corrects all those tests
    as one family, so the null windows are drawn per group and corrected together.

    >>> rng = np.random.default_rng(0)
    >>> groups = [({"x": rng.normal(size=600)}, 300), ({"x": rng.normal(2, size=400)}, 200)]
    >>> cal = calibrate_family(groups, ert=50)
    >>> cal.window_size, 0.0 < cal.threshold < 0.1
    (500, True)
    """
    if ert <= 1:
        raise ValueError("ert is in windows and must be > 1")
    rng = np.random.default_rng(seed)
    p_values = [p for columns, rows in groups
                for p in _null_p_values(columns, rows, settings, n_bootstrap, rng, kinds, max_sample)]
    min_p = _min_adjusted(p_values, n_bootstrap, settings.correction)
    return Calibration(threshold=float(np.quantile(min_p, 1.0 / ert)), ert=ert, n_bootstrap=n_bootstrap,
                       window_size=int(sum(rows for _, rows in groups)), correction=settings.correction,
                       extrapolated=bool(ert > n_bootstrap), seed=seed)


def calibrate(reference_columns: Mapping[str, Sequence | np.ndarray], window_size: int, ert: float,
              settings: WindowSettings = WindowSettings(), n_bootstrap: int = 200, seed: int = 0,
              kinds: Mapping[str, str] | None = None, max_sample: int = CALIBRATION_SAMPLE,
              profile: ReferenceProfile | None = None) -> Calibration:
    """Threshold on the min adjusted p-value so a stationary stream alarms about once per ``ert`` windows.

    ``profile``: the reference profile of ``reference_columns``, if built already (same result, cheaper).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> columns = {"x": rng.normal(size=2000), "c": rng.choice(["a", "b", "c"], size=2000)}
    >>> cal = calibrate(columns, window_size=500, ert=50)
    >>> cal.ert, cal.window_size, cal.n_bootstrap, 0.0 < cal.threshold < 0.1
    (50, 500, 200, True)
    """
    if ert <= 1:
        raise ValueError("ert is in windows and must be > 1")
    min_p = bootstrap_min_p_values(reference_columns, window_size, settings, n_bootstrap, seed, kinds, max_sample,
                                   profile)
    threshold = float(np.quantile(min_p, 1.0 / ert))
    return Calibration(threshold=threshold, ert=ert, n_bootstrap=n_bootstrap, window_size=window_size,
                       correction=settings.correction, extrapolated=bool(ert > n_bootstrap), seed=seed)
