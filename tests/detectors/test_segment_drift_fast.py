"""segment_family against the computation it replaced: evaluate_window per segment value.

The oracle is VersionMonitor._segment_drift's loop before the change (one ``evaluate_window``
per tested segment value with the correction off, the primary and missing-rate results kept,
then ``decide_family`` over all of them). Every p-value of the family and every drifted result
(statistic, p-value, threshold, effect size, evidence) must be the oracle's; the p-values are
also checked against scipy's own tests.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from detectors.profile import ReferenceProfile, WindowColumn, to_column
from detectors.segment_drift import SegmentGroup, segment_family
from detectors.suite import PREDICTION_COLUMNS, WindowSettings, decide_family, evaluate_window

REGIONS = ["us", "eu", "apac", "latam", "tiny"]


def oracle(groups, columns, settings):
    """Today's segment drift family (before segment_family): evaluate_window per value."""
    uncorrected = dataclasses.replace(settings, correction="none")
    family = []
    for group in groups:
        sub = group.reference
        subset = {name: [columns[name][i] for i in group.rows] for name in sub.features if name in columns}
        for result in evaluate_window(sub, subset, uncorrected).results:
            if (result.feature not in PREDICTION_COLUMNS and result.p_value is not None
                    and "reason" not in result.evidence
                    and result.detector in ("ks", "chi_squared", "missing_rate")):
                family.append((group.key, result))
    decided = decide_family([r for _, r in family], settings)
    return [(k, r) for (k, _), r in zip(family, decided)]


def traffic(n, rng, shift=False):
    """Segments that correlate with the features, correlated numeric features, missing values,
    mixed types (ints, floats, numeric strings, bools, junk), a region with a handful of rows."""
    regions = rng.choice(REGIONS, size=n, p=[0.45, 0.3, 0.17, 0.07, 0.01])
    base = rng.normal(size=n)
    offset = np.array([{"us": 0.5, "eu": 0.0, "apac": -0.5, "latam": 1.0, "tiny": 0.0}[r] for r in regions])
    amount = np.exp(2.5 + offset + 0.5 * base + 0.2 * rng.normal(size=n))
    tenure = 3 + 2 * offset + base + rng.normal(size=n)
    if shift:   # eu: amount up, plan mix changes; apac: more missing tenure
        amount = np.where(regions == "eu", amount * 1.5, amount)
    columns = {"amount": [], "tenure": [], "age": [], "plan": [], "country": [], "member": [], "__score__": []}
    for i in range(n):
        r = regions[i]
        columns["amount"].append(float(amount[i]) if rng.random() > 0.03 else None)
        missing_tenure = rng.random() < (0.3 if shift and r == "apac" else 0.05)
        columns["tenure"].append(None if missing_tenure else (int(round(tenure[i])) if i % 7 == 0 else float(tenure[i])))
        age = rng.integers(18, 80)
        columns["age"].append(str(age) if i % 11 == 0 else ("junk" if i % 97 == 0 else int(age)))
        plans = ["basic", "pro", "team"] if not (shift and r == "eu") else ["pro", "team", "team", "enterprise"]
        columns["plan"].append(str(rng.choice(plans)) if rng.random() > 0.02 else None)
        columns["country"].append({"us": "US", "eu": str(rng.choice(["DE", "FR"])), "apac": str(rng.choice(["JP", "AU"])),
                                   "latam": "BR", "tiny": "NZ"}[r])
        columns["member"].append(bool(rng.random() < 0.3 + 0.1 * (r == "us")))
        columns["__score__"].append(float(1 / (1 + math.exp(-base[i]))))
    return columns, [{"region": str(r)} for r in regions]


def groups_of(window_segments, reference, min_size):
    rows: dict = {}
    for i, segment in enumerate(window_segments):
        for key in segment.items():
            rows.setdefault(key, []).append(i)
    out = []
    for (attr, value), r in sorted(rows.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        key = f"{attr}={value}"
        if len(r) >= min_size and key in reference.segments:
            out.append(SegmentGroup(key, np.asarray(r, dtype=np.intp), reference.segments[key]))
    return out


@pytest.mark.parametrize("converted", [False, True])
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("settings", [WindowSettings(), WindowSettings(correction="bonferroni", alpha=0.05),
                                      WindowSettings(correction="none", min_effect_size=0.0, alpha=0.2)])
def test_segment_family_equals_evaluate_window_per_segment(converted, shift, seed, settings):
    rng = np.random.default_rng(seed)
    ref_columns, ref_segments = traffic(4000, rng)
    reference = ReferenceProfile.from_columns(ref_columns, segments=ref_segments, segment_min_size=30)
    window, window_segments = traffic(1500, rng, shift=shift)
    groups = groups_of(window_segments, reference, min_size=10)
    assert any(g.rows.size < 40 for g in groups), "a tiny segment value is part of the test"

    expected = oracle(groups, window, settings)
    given = window
    if converted:   # as the monitor passes them: converted once for every check of the window
        given = {name: WindowColumn(values, reference.features[name].value_type) for name, values in window.items()}
    family, drifted = segment_family(groups, given, settings, skip=frozenset(PREDICTION_COLUMNS))

    assert [(t.key, t.feature, t.detector) for t in family] == [(k, r.feature, r.detector) for k, r in expected]
    # Bit for bit, but for KS p-values certified above alpha: a lower bound, itself above alpha,
    # stands for them (the family's decisions, adjusted p-values and threshold cannot tell).
    oracle_p = [r.p_value for _, r in expected]
    assert [t.p_value for t in family if t.exact] == [p for t, p in zip(family, oracle_p) if t.exact]
    bounded = [(t.p_value, p) for t, p in zip(family, oracle_p) if not t.exact]
    assert all(settings.alpha < bound <= p for bound, p in bounded)
    assert all(t.detector == "ks" for t in family if not t.exact)
    if settings.alpha < 0.1:
        assert len(bounded) >= sum(t.detector == "ks" for t in family) // 2, "most KS members are certified"
    assert sorted(drifted) == [i for i, (_, r) in enumerate(expected) if r.drifted]
    for i, result in drifted.items():
        assert result == expected[i][1]
    if shift and settings.correction == "bh":
        assert {(family[i].key, family[i].feature) for i in drifted} >= {("region=eu", "amount"), ("region=eu", "plan")}
    if not shift and settings.correction != "none":
        assert not drifted


def test_segment_family_p_values_are_scipys():
    rng = np.random.default_rng(5)
    ref_columns, ref_segments = traffic(3000, rng)
    reference = ReferenceProfile.from_columns(ref_columns, segments=ref_segments, segment_min_size=30)
    window, window_segments = traffic(1200, rng, shift=True)
    groups = groups_of(window_segments, reference, min_size=10)
    family, _ = segment_family(groups, window, WindowSettings(), skip=frozenset(PREDICTION_COLUMNS))
    by_key = {g.key: g for g in groups}
    checked = set()
    for t in family:
        if t.detector not in ("ks", "chi_squared"):
            continue
        group = by_key[t.key]
        fp = group.reference.features[t.feature]
        values = to_column([window[t.feature][i] for i in group.rows], fp.value_type)   # the suite's conversion
        if t.detector == "ks":
            expected = stats.ks_2samp(values[~np.isnan(values)], fp.sample).pvalue
        else:
            values = [v for v in values.tolist() if v is not None]
            categories = list(fp.category_counts) + sorted(set(values) - set(fp.category_counts))
            table = [[fp.category_counts.get(c, 0) for c in categories], [values.count(c) for c in categories]]
            expected = stats.chi2_contingency(table, correction=False).pvalue
        if t.exact:
            assert t.p_value == pytest.approx(expected, rel=1e-12, abs=1e-300)
        else:   # a lower bound certified above alpha
            assert WindowSettings().alpha < t.p_value <= expected * (1 + 1e-12)
        checked.add((t.feature, t.detector))
    assert {("amount", "ks"), ("tenure", "ks"), ("plan", "chi_squared"), ("country", "chi_squared")} <= checked


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("seed", [0, 3])
def test_segment_family_from_window_buffer_codes_equals_evaluate_window(shift, seed):
    """The monitor's columns come from the window buffer: categorical counts are taken from its
    codes (a level -> category table, levels such as True and "true" sharing a category), not
    from the converted values; the family must still be the oracle's."""
    from detectors.window_buffer import BufferedColumn, WindowBuffer

    rng = np.random.default_rng(seed)
    ref_columns, ref_segments = traffic(4000, rng)
    reference = ReferenceProfile.from_columns(ref_columns, segments=ref_segments, segment_min_size=30)
    window, window_segments = traffic(1500, rng, shift=shift)
    window["member"] = [("true" if v else "False") if i % 5 == 0 else v for i, v in enumerate(window["member"])]
    window["plan"] = [("unseen" if i % 41 == 0 else float("nan") if i % 43 == 0 else v)
                      for i, v in enumerate(window["plan"])]
    buffer = WindowBuffer(reference, limit=1500)
    for start in range(0, 1500, 500):
        buffer.extend({name: values[start:start + 500] for name, values in window.items()}, 500)
    given = buffer.window_columns()
    assert isinstance(given["plan"], BufferedColumn) and given["plan"].coded is not None
    groups = groups_of(window_segments, reference, min_size=10)
    for settings in (WindowSettings(), WindowSettings(correction="none", min_effect_size=0.0, alpha=0.2)):
        expected = oracle(groups, window, settings)
        family, drifted = segment_family(groups, given, settings, skip=frozenset(PREDICTION_COLUMNS))
        assert [(t.key, t.feature, t.detector) for t in family] == [(k, r.feature, r.detector) for k, r in expected]
        assert [t.p_value for t in family if t.exact] == [r.p_value for t, (_, r) in zip(family, expected) if t.exact]
        assert sorted(drifted) == [i for i, (_, r) in enumerate(expected) if r.drifted]
        for i, result in drifted.items():
            assert result == expected[i][1]


def test_chi2_p_values_equal_chi2_homogeneity_table_by_table():
    """The stacked p-values are each table's own, bit for bit: small and large k (numpy's
    pairwise sums start at 8 terms), counts of any size, zero window counts."""
    from detectors.chi_squared import chi2_homogeneity, chi2_p_values

    rng = np.random.default_rng(11)
    for k in (2, 3, 4, 7, 8, 9, 15, 16, 17, 40, 130, 300):
        reference = rng.integers(1, 5000, size=(25, 1, k))
        window = rng.binomial(rng.integers(1, 400, size=(25, 1, 1)), rng.dirichlet(np.ones(k), size=(25, 1)))
        window[:, :, 0] += 1   # a window row of zeros is scipy's error, in both
        tables = np.concatenate([reference, window], axis=1)
        got = chi2_p_values(tables)
        assert got.tolist() == [chi2_homogeneity(t)[1] for t in tables], k


@pytest.mark.parametrize("n1, n2, alpha", [(40, 120, 0.01), (310, 678, 0.02), (987, 2000, 0.001), (330, 663, 0.2)])
def test_ks_bound_is_scipys_p_value_just_above_alpha(n1, n2, alpha):
    """The certified bound is scipy's own exact p-value at h0, above alpha and close to it, so
    only members with a p-value near alpha or below it need their exact computation."""
    from detectors.segment_drift import _ks_bound

    h0, p0 = _ks_bound(n1, n2, alpha)
    lcm = math.lcm(n1, n2)
    assert p0 == stats._stats_py._attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), h0 / lcm, "two-sided")[2]
    assert alpha < p0 < 1.5 * alpha
    assert stats._stats_py._attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), (h0 + 1) / lcm, "two-sided")[2] <= p0
