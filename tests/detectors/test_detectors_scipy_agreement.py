"""KS and chi-squared agree with scipy to 1e-9, including ties, constants, empty and all-null windows."""

import numpy as np
import pytest
from scipy import stats

from detectors import ChiSquared, FeatureProfile, KolmogorovSmirnov, MissingRate, ks_statistic

TOL = 1e-9


def _numeric_cases():
    rng = np.random.default_rng(1234)
    yield "normal", rng.normal(size=2000), rng.normal(0.1, size=700)
    yield "ties", rng.integers(0, 5, size=2000).astype(float), rng.integers(0, 6, size=1000).astype(float)
    yield "heavy_ties_small", rng.integers(0, 3, size=60).astype(float), rng.integers(0, 3, size=40).astype(float)
    yield "constant_both", np.full(500, 3.0), np.full(200, 3.0)
    yield "constant_ref", np.full(500, 3.0), rng.normal(3.0, size=200)
    yield "constant_window", rng.normal(size=500), np.full(200, 0.0)
    yield "with_nans", np.where(rng.random(2000) < 0.1, np.nan, rng.normal(size=2000)), np.where(rng.random(800) < 0.3, np.nan, rng.normal(size=800))
    yield "single_value_window", rng.normal(size=300), np.array([0.25])
    yield "large_asymptotic", rng.normal(size=10_000), rng.normal(0.02, size=12_000)


@pytest.mark.parametrize("name, reference, window", list(_numeric_cases()), ids=lambda x: x if isinstance(x, str) else "")
def test_ks_agrees_with_scipy(name, reference, window):
    fp = FeatureProfile.from_values("x", reference)
    result = KolmogorovSmirnov(alpha=0.05).test(fp, window)
    ref, cur = reference[~np.isnan(reference)], window[~np.isnan(window)]
    expected = stats.ks_2samp(cur, ref)
    assert result.statistic == pytest.approx(float(expected.statistic), abs=TOL)
    assert result.p_value == pytest.approx(float(expected.pvalue), abs=TOL)
    assert ks_statistic(np.sort(ref), cur) == pytest.approx(float(expected.statistic), abs=TOL)
    assert result.drifted == (expected.pvalue <= 0.05)
    assert result.threshold == 0.05 and result.threshold_on == "p_value"


@pytest.mark.parametrize("window", [[], [None, None], [np.nan] * 5, ["junk", None]])
def test_ks_empty_or_all_null_window_does_not_drift(window):
    fp = FeatureProfile.from_values("x", np.random.default_rng(0).normal(size=100))
    result = KolmogorovSmirnov().test(fp, window)
    assert (result.statistic, result.p_value, result.drifted) == (0.0, 1.0, False)
    assert "reason" in result.evidence


def test_ks_rejects_categorical_profile():
    with pytest.raises(ValueError):
        KolmogorovSmirnov().test(FeatureProfile.from_values("c", ["a", "b"]), ["a"])


def _categorical_cases():
    rng = np.random.default_rng(99)
    cats = np.array(list("abcde"))
    yield "stationary", rng.choice(cats, p=[.4, .3, .15, .1, .05], size=2000), rng.choice(cats, p=[.4, .3, .15, .1, .05], size=1000)
    yield "shifted", rng.choice(cats, p=[.4, .3, .15, .1, .05], size=2000), rng.choice(cats, p=[.2, .3, .15, .1, .25], size=1000)
    yield "unseen", rng.choice(cats, size=2000), np.concatenate([rng.choice(cats, size=950), np.array(["zz"] * 30 + ["yy"] * 20)])
    yield "missing_category_in_window", rng.choice(cats, size=2000), rng.choice(cats[:3], size=500)
    yield "with_nulls", np.where(rng.random(2000) < 0.1, None, rng.choice(cats, size=2000)), np.where(rng.random(600) < 0.2, None, rng.choice(cats, size=600))


@pytest.mark.parametrize("name, reference, window", list(_categorical_cases()), ids=lambda x: x if isinstance(x, str) else "")
def test_chi_squared_agrees_with_scipy(name, reference, window):
    fp = FeatureProfile.from_values("c", list(reference), kind="categorical")
    result = ChiSquared(alpha=0.05).test(fp, list(window))
    ref = [v for v in reference if v is not None]
    cur = [v for v in window if v is not None]
    categories = sorted(set(ref) | set(cur))
    table = np.array([[ref.count(c) for c in categories], [cur.count(c) for c in categories]])
    expected = stats.chi2_contingency(table, correction=False)
    assert result.statistic == pytest.approx(float(expected.statistic), abs=TOL)
    assert result.p_value == pytest.approx(float(expected.pvalue), abs=TOL)
    assert result.drifted == (expected.pvalue <= 0.05)


def test_chi_squared_unseen_categories_are_drift_not_error():
    fp = FeatureProfile.from_values("c", ["a"] * 500 + ["b"] * 500)
    result = ChiSquared(alpha=0.01).test(fp, ["a"] * 200 + ["b"] * 200 + ["new"] * 40)
    assert result.drifted
    assert result.evidence["unseen_categories"] == ["new"]
    assert result.evidence["unseen_rate"] == pytest.approx(40 / 440)


@pytest.mark.parametrize("window", [[], [None, None]])
def test_chi_squared_empty_window(window):
    fp = FeatureProfile.from_values("c", ["a", "b", "a"])
    result = ChiSquared().test(fp, window)
    assert (result.statistic, result.p_value, result.drifted) == (0.0, 1.0, False)


def test_chi_squared_single_category_everywhere():
    fp = FeatureProfile.from_values("c", ["a"] * 50)
    result = ChiSquared().test(fp, ["a"] * 20)
    assert (result.statistic, result.p_value, result.drifted) == (0.0, 1.0, False)


def test_missing_rate_matches_two_proportion_z_test():
    fp = FeatureProfile.from_values("x", [1.0] * 950 + [None] * 50)
    result = MissingRate(alpha=0.05).test(fp, [1.0] * 430 + [None] * 70)
    p1, p2 = 50 / 1000, 70 / 500
    pooled = 120 / 1500
    z = (p2 - p1) / np.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 500))
    assert result.statistic == pytest.approx(z, abs=TOL)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), abs=TOL)
    assert result.drifted


def test_missing_rate_no_missing_anywhere_is_p_one():
    fp = FeatureProfile.from_values("x", [1.0, 2.0, 3.0])
    result = MissingRate().test(fp, [1.0, 2.0])
    assert (result.statistic, result.p_value, result.drifted) == (0.0, 1.0, False)
