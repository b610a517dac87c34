"""Input drift inside segment values: the p-values of every segment x feature test, computed lean.

Segment drift compares each tested segment value's window rows with the same value's reference
rows (its own :class:`~detectors.profile.ReferenceProfile`), every primary test (KS, chi-squared)
and missing-rate test of every feature in every tested value forming one family, corrected together.
Running :func:`~detectors.suite.evaluate_window` per value computed every distance, summary and
evidence dict of every test, although only the p-values decide (the family correction) and only
the few that fire are reported. :func:`segment_family` therefore

1. converts each window column once (not once per segment value) and counts, per feature, the
   missing values and the categories of all segment values in one pass (codes, ``bincount``);
2. computes each test's p-value with the same arithmetic as the test itself
   (:func:`~detectors.ks.ks_2samp_sorted`, :func:`~detectors.chi_squared.chi2_homogeneity`, the
   missing-rate z-test), so every p-value equals today's and scipy's bit for bit, except a KS
   p-value that provably exceeds ``alpha`` (see :func:`ks_p_value`): such a member is given a lower
   bound of its p-value instead, which no correction can tell apart from the exact value;
3. corrects them together, and builds the full result (evidence, effect size, the decision) with
   the suite's own code only for tests whose raw p-value is significant after the correction.

Why a bound is enough: Benjamini-Hochberg, Bonferroni and no correction reject only p-values at
most ``alpha``, and the adjusted p-values of the rejected members and the raw threshold depend
only on those p-values and on how many there are, never on the value of a p-value above ``alpha``.
scipy's exact KS p-value (``_attempt_exact_2kssamp``, ~0.3 ms for a segment of a few hundred rows
against its reference) was half the cost of segment drift; a window's 30 segment x numeric tests
now need about one exact computation per distinct ``(rows, reference rows)`` pair, kept across
windows.

The results are those of ``evaluate_window(sub, rows, replace(settings, correction="none"))``
filtered to the primary and missing-rate tests and decided by
:func:`~detectors.suite.decide_family`: ``tests/detectors/test_segment_drift_fast.py`` keeps that
computation as the oracle.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import special

from detectors.base import DriftResult
from detectors.chi_squared import chi2_p_values
from detectors.ks import MAX_EXACT_N, _exact_two_sided, ks_2samp_sorted, pooled_counts
from detectors.missing_rate import MissingRate
from detectors.multiple_testing import correct, raw_threshold
from detectors.profile import ReferenceProfile, WindowColumn, to_column
from detectors.suite import PRIMARY, WindowSettings, _decide, _feature_results
from detectors.window_buffer import BufferedColumn

__all__ = ["SegmentGroup", "SegmentTest", "segment_family", "ks_p_value"]


@dataclass(frozen=True)
class SegmentGroup:
    """One tested segment value: its key (``"region=eu"``), its window rows and its reference."""

    key: str
    rows: np.ndarray
    reference: ReferenceProfile


@dataclass(frozen=True)
class SegmentTest:
    """One member of the segment family: which test, of which feature, in which segment value."""

    key: str
    feature: str
    detector: str        # "ks" | "chi_squared" | "missing_rate"
    n_rows: int
    n_reference: int
    p_value: float       # exact (scipy's); when ``exact`` is False a lower bound above the family's alpha
    exact: bool = True


def _sorted_reference(sample: np.ndarray) -> np.ndarray:
    if sample.size > 1 and not (sample[:-1] <= sample[1:]).all():
        return np.sort(sample)  # profiles keep it sorted; one built by hand may not
    return sample


_KS_BOUNDS: "OrderedDict[tuple[int, int, float], tuple[int, float] | None]" = OrderedDict()
_KS_BOUNDS_SIZE = 4096
_BOUND_GUESSES = (1.25, 4.0, 32.0)   # the asymptotic tail at these multiples of alpha, tried in turn (see _ks_bound)


def _ks_bound(n1: int, n2: int, alpha: float) -> tuple[int, float] | None:
    """``(h0, p0)``: scipy's exact two-sided KS p-value at ``h0 = round(d * lcm(n1, n2))`` is
    ``p0 > alpha``, so any statistic with ``h <= h0`` has a p-value of at least ``p0``; None when
    no such ``h0`` was found. Memoised (bounded LRU) on ``(n1, n2, alpha)``.

    The exact p-value is ``P(D >= h / lcm)`` under the null, non-increasing in ``h``. ``h0`` is
    guessed from Kolmogorov's asymptotic tail ``2 exp(-2 n d^2)`` (``n = n1 n2 / (n1 + n2)``) at a
    multiple of ``alpha`` and then checked with the exact computation itself. The exact p-value
    there is about 0.9-1.05 times that tail (segments of 40 to 1,000 rows against references of
    twice as many), so the first guess, 1.25 alpha, certifies every p-value above ~1.15 alpha: a
    member left for the exact computation is then one whose p-value is near alpha or below it
    (at 4 alpha, the first guess before, 2 to 3 members of a 30-member family were left over per
    null window, each costing an exact computation). A guess whose exact p-value is not above
    ``alpha`` moves on to the next, larger one.

    >>> h0, p0 = _ks_bound(300, 700, 0.01)
    >>> bool(p0 > 0.01), 0 < h0 < 2100   # lcm(300, 700) = 2100
    (True, True)
    """
    key = (n1, n2, float(alpha))
    if key in _KS_BOUNDS:
        _KS_BOUNDS.move_to_end(key)
        return _KS_BOUNDS[key]
    if len(_KS_BOUNDS) >= _KS_BOUNDS_SIZE:
        del _KS_BOUNDS[next(iter(_KS_BOUNDS))]
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    n_eff = n1 * n2 / (n1 + n2)
    found = None
    for factor in _BOUND_GUESSES:
        tail = min(0.5, factor * alpha)
        h0 = math.floor(math.sqrt(math.log(2.0 / tail) / (2.0 * n_eff)) * lcm)
        if h0 < 1:
            break
        success, _, p0 = _exact_two_sided(n1, n2, g, h0 / lcm)
        if success and p0 > alpha:
            found = (h0, float(p0))
            break
    _KS_BOUNDS[key] = found
    return found


def ks_p_value(current_sorted: np.ndarray, reference_sorted: np.ndarray, alpha: float) -> tuple[float, bool]:
    """``(p, exact)``: scipy's ``ks_2samp(current, reference).pvalue`` (``exact`` True), or, when
    the statistic is small enough that this p-value is certainly above ``alpha``, a lower bound
    of it that is itself above ``alpha`` (``exact`` False). Sorted, non-empty, NaN-free samples.

    >>> from scipy import stats
    >>> rng = np.random.default_rng(1)
    >>> ref, same, moved = (np.sort(rng.normal(m, size=k)) for m, k in ((0, 700), (0, 300), (0.5, 300)))
    >>> p, exact = ks_p_value(same, ref, 0.01)
    >>> exact, bool(0.01 < p <= stats.ks_2samp(same, ref).pvalue)
    (False, True)
    >>> p, exact = ks_p_value(moved, ref, 0.01)
    >>> exact, bool(p == stats.ks_2samp(moved, ref).pvalue)
    (True, True)
    """
    n1, n2 = current_sorted.size, reference_sorted.size
    if max(n1, n2) > MAX_EXACT_N or np.isnan(reference_sorted[-1]):
        return float(ks_2samp_sorted(current_sorted, reference_sorted)[1]), True
    pooled = pooled_counts(current_sorted, reference_sorted)
    bound = _ks_bound(n1, n2, alpha)
    if bound is not None:
        differences = pooled[2] / n1 - pooled[3] / n2   # the ECDF differences ks_2samp_sorted takes its d from
        d = max(float(differences.max()), -float(differences.min()))
        g = math.gcd(n1, n2)
        if round(d * ((n1 // g) * n2)) <= bound[0]:     # as the exact computation rounds d
            return bound[1], False
    return float(ks_2samp_sorted(current_sorted, reference_sorted, pooled)[1]), True


def _missing_p(n_cur: int, x_cur: int, n_ref: int, missing_rate: float) -> float | None:
    """The missing-rate test's p-value (None when it has a reason not to run), as MissingRate.test."""
    if n_cur == 0 or n_ref == 0:
        return None
    x_ref = int(round(missing_rate * n_ref))
    p_ref = x_ref / n_ref
    p_cur = x_cur / n_cur
    pooled = (x_ref + x_cur) / (n_ref + n_cur)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_ref + 1.0 / n_cur))
    z = (p_cur - p_ref) / se if se > 0 else 0.0
    return float(2.0 * special.ndtr(-abs(z)))


def _categorical_counts(values: np.ndarray, groups: Sequence[SegmentGroup],
                        coded: tuple | None = None) -> tuple[list, np.ndarray, np.ndarray]:
    """The categories of a converted categorical column and, per group, their counts and missing count.

    The column is coded (code 0 is missing) from the window buffer's codes when ``coded`` gives
    them (:attr:`~detectors.window_buffer.BufferedColumn.coded`: one look-up per level, not per
    row), else by one dict lookup per row (in C, ``map``); then one ``bincount`` for all groups."""
    labels = (coded[1] if coded is not None else values).tolist()
    code_of = {value: code for code, value in enumerate(dict.fromkeys([None, *labels]))}
    codes = np.fromiter(map(code_of.__getitem__, labels), dtype=np.intp, count=len(labels))
    if coded is not None:
        codes = codes[coded[0]]    # level -> category code; the buffer's -1 (missing) is the table's last, None
    k = len(code_of)
    if not groups:
        return list(code_of)[1:], np.zeros((0, k - 1), dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows = np.concatenate([group.rows for group in groups])
    offsets = np.repeat(np.arange(len(groups)) * k, [group.rows.size for group in groups])
    counts = np.bincount(codes[rows] + offsets, minlength=len(groups) * k).reshape(len(groups), k)
    return list(code_of)[1:], counts[:, 1:], counts[:, 0]


def _chi2_table(reference_counts: dict, categories: list, window_counts: np.ndarray) -> np.ndarray | None:
    """ChiSquared.test's 2 x k table (reference categories in order, then the window's unseen ones
    sorted), or None when the test has a reason not to run."""
    present = np.flatnonzero(window_counts)
    current = [categories[i] for i in present.tolist()]
    unseen = sorted(c for c in current if c not in reference_counts)
    position = {c: i for i, c in enumerate([*reference_counts, *unseen])}
    table = np.zeros((2, len(position)), dtype=np.int64)
    table[0, :len(reference_counts)] = list(reference_counts.values())
    table[1, [position[c] for c in current]] = window_counts[present]
    if not present.size or not table[0].sum() or len(position) < 2:
        return None
    return table


def _chi2_ps(tables: list) -> list:
    """``chi2_homogeneity(table)[1]`` of each table (None stays None), tables of one shape at once."""
    out: list = [None] * len(tables)
    by_shape: dict[tuple, list[int]] = {}
    for i, table in enumerate(tables):
        if table is not None:
            by_shape.setdefault(table.shape, []).append(i)
    for members in by_shape.values():
        for i, p in zip(members, chi2_p_values(np.stack([tables[i] for i in members])).tolist()):
            out[i] = p
    return out


def segment_family(groups: Sequence[SegmentGroup], columns: Mapping[str, Sequence | np.ndarray],
                   settings: WindowSettings, skip: frozenset = frozenset()) -> tuple[list[SegmentTest], dict[int, DriftResult]]:
    """Every segment x feature test's p-value, and the decided result of those that drift.

    ``columns`` are the window's columns (all rows; raw values or :class:`WindowColumn`);
    each group's ``rows`` index them.
    ``skip`` names columns left out of the family (the model's outputs). Returns the family in
    the order :func:`~detectors.suite.evaluate_window` would list it (group, feature, primary
    then missing rate), and ``{index in the family: decided DriftResult}`` for the members that
    drifted (significant after ``settings.correction`` and at least ``min_effect_size``), equal
    to what :func:`~detectors.suite.decide_family` gives for them.
    """
    tests: list[SegmentTest] = []
    converted: dict[tuple[str, str], np.ndarray] = {}
    cat_counts: dict[tuple[str, str], tuple] = {}
    per_group_missing: dict[tuple[str, str], np.ndarray] = {}

    def column(name: str, value_type: str, n: int) -> np.ndarray:
        key = (name, value_type)
        if key not in converted:
            raw = columns.get(name)
            kind = "numeric" if value_type == "numeric" else "categorical"
            if isinstance(raw, WindowColumn) and raw.type == value_type:
                converted[key] = raw.values   # the window's conversion, shared with its other checks
            elif isinstance(raw, WindowColumn):
                converted[key] = to_column(raw.raw, value_type)
            elif raw is None:
                converted[key] = np.full(n, np.nan) if kind == "numeric" else np.full(n, None, dtype=object)
            else:
                converted[key] = to_column(raw, value_type)
        return converted[key]

    def categorical(name: str, value_type: str, n: int) -> tuple:
        """Every group's counts of a categorical column, missing counts and chi-squared p-values
        (None where a group does not test it), the p-values of all groups in one pass."""
        raw = columns.get(name)
        coded = raw.coded if isinstance(raw, BufferedColumn) and raw.type == value_type else None
        categories, counts, missing = _categorical_counts(None if coded is not None else column(name, value_type, n),
                                                          groups, coded)
        tables = []
        for g, group in enumerate(groups):
            fp = group.reference.features.get(name)
            tested = (fp is not None and fp.kind == "categorical" and fp.value_type == value_type
                      and PRIMARY["categorical"] in settings.categorical_tests)
            tables.append(_chi2_table(fp.category_counts, categories, counts[g]) if tested else None)
        return categories, counts, missing, _chi2_ps(tables)

    n_window = max((len(v) for v in columns.values()), default=0)
    for g, group in enumerate(groups):
        sub, rows = group.reference, group.rows
        n_rows = int(rows.size)
        for name, fp in sub.features.items():
            if name in skip:
                continue
            values = column(name, fp.value_type, n_window)
            tests_of_kind = settings.numeric_tests if fp.kind == "numeric" else settings.categorical_tests
            primary_p, exact = None, True
            if fp.kind == "numeric":
                x = values[rows]
                x = x[~np.isnan(x)]
                n_missing = n_rows - x.size
                if PRIMARY["numeric"] in tests_of_kind and x.size and fp.sample.size:
                    x.sort()
                    primary_p, exact = ks_p_value(x, _sorted_reference(fp.sample), settings.alpha)
            else:
                key = (name, fp.value_type)
                if key not in cat_counts:
                    cat_counts[key] = categorical(name, fp.value_type, n_window)
                categories, counts, missing, chi2_of = cat_counts[key]
                n_missing = int(missing[g])
                if PRIMARY["categorical"] in tests_of_kind:
                    primary_p = chi2_of[g]
            if primary_p is not None:
                tests.append(SegmentTest(group.key, name, PRIMARY[fp.kind], n_rows, sub.n, primary_p, exact))
            if settings.missing_rate:
                p = _missing_p(n_rows, n_missing, int(fp.n), fp.missing_rate)
                if p is not None:
                    tests.append(SegmentTest(group.key, name, "missing_rate", n_rows, sub.n, p))

    decided: dict[int, DriftResult] = {}
    if not tests:
        return tests, decided
    p_values = np.array([t.p_value for t in tests], dtype=np.float64)
    adjusted, reject = correct(p_values, settings.alpha, settings.correction)
    threshold = raw_threshold(p_values, settings.alpha, settings.correction)
    by_key = {group.key: group for group in groups}
    uncorrected = WindowSettings(**{**settings.__dict__, "correction": "none"})
    for i in np.flatnonzero(reject).tolist():
        t = tests[i]
        group = by_key[t.key]
        fp = group.reference.features[t.feature]
        raw = columns.get(t.feature)
        raw = raw.raw if isinstance(raw, WindowColumn) else raw
        rows = group.rows.tolist()
        subset = ([raw[i] for i in rows] if raw is not None else
                  column(t.feature, fp.value_type, n_window)[group.rows])   # as evaluate_window of the rows would see them
        window_column = WindowColumn(subset, fp.value_type)
        if t.detector == "missing_rate":
            result = MissingRate(uncorrected.alpha).test(fp, window_column)
        else:
            result = _feature_results(fp, window_column, uncorrected)[0]
        result = _decide(result, adjusted[i], True, threshold, settings)
        if result.drifted:
            decided[i] = result
    return tests, decided
