"""KS against the full reference up to 100,000 rows; thinned (and then conservative) only above.

Issue 11: references were thinned to 10,000 values, which made KS far more
conservative than documented on large windows (a 25k-row null window: p 0.857
instead of scipy's 0.548 on the full data).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.ks import KolmogorovSmirnov
from detectors.profile import MAX_SAMPLE, ReferenceProfile
from detectors.suite import evaluate_window


@pytest.mark.parametrize("n_reference, n_window", [(50_000, 25_000), (100_000, 25_000), (20_000, 5_000)])
def test_ks_p_value_is_scipys_on_the_full_reference(n_reference, n_window):
    rng = np.random.default_rng(n_reference + n_window)
    reference = rng.normal(size=n_reference)
    window = rng.normal(size=n_window)
    profile = ReferenceProfile.from_columns({"x": reference})
    assert profile.features["x"].sample.size == n_reference    # nothing thinned
    expected = stats.ks_2samp(window, reference)
    result = KolmogorovSmirnov().test(profile.features["x"], window)
    assert (result.statistic, result.p_value) == (pytest.approx(expected.statistic, abs=1e-15),
                                                  pytest.approx(expected.pvalue, rel=1e-12))
    report = evaluate_window(profile, {"x": window})
    assert report.results[0].p_value == pytest.approx(expected.pvalue, rel=1e-12)


def test_above_100k_the_reference_is_thinned_to_evenly_spaced_order_statistics():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=150_000)
    sample = ReferenceProfile.from_columns({"x": reference}).features["x"].sample
    assert MAX_SAMPLE == 100_000 and sample.size == MAX_SAMPLE
    ordered = np.sort(reference)
    np.testing.assert_array_equal(sample, ordered[np.round(np.linspace(0, ordered.size - 1, MAX_SAMPLE)).astype(int)])
    # the documented effect: scipy's p-value for a 100,000-value reference, a little conservative
    window = rng.normal(size=25_000)
    thinned = KolmogorovSmirnov().test(ReferenceProfile.from_columns({"x": reference}).features["x"], window)
    assert thinned.p_value == pytest.approx(stats.ks_2samp(window, sample).pvalue, rel=1e-12)
