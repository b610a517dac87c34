"""Multiple testing, data quality, CBPE, domain classifier, calibration."""

import json
import pickle

import numpy as np
import pytest
from scipy import stats

from detectors import (
    CBPE,
    DataQuality,
    DomainClassifier,
    ReferenceProfile,
    WindowSettings,
    benjamini_hochberg,
    bonferroni,
    calibrate,
    evaluate_window,
)
from detectors.cbpe import expected_accuracy, expected_roc_auc
from detectors.multiple_testing import raw_threshold


# -- multiple testing -----------------------------------------------------------------
def test_bh_hand_example():
    # m = 5, alpha = 0.05: critical values 0.01, 0.02, 0.03, 0.04, 0.05; sorted p = 0.001, 0.012,
    # 0.029, 0.045, 0.2 -> p_(3) = 0.029 is the last below its critical value: reject 3.
    p = [0.045, 0.001, 0.029, 0.2, 0.012]
    adjusted, reject = benjamini_hochberg(p, alpha=0.05)
    assert reject.tolist() == [False, True, True, False, True]
    # adjusted = running min from the top of p_(i) * 5 / i: 0.005, 0.03, 0.04833, 0.05625, 0.2
    np.testing.assert_allclose(adjusted, [0.05625, 0.005, 0.029 * 5 / 3, 0.2, 0.03])
    assert raw_threshold(p, 0.05, "bh") == pytest.approx(0.03)


@pytest.mark.parametrize("seed", range(5))
def test_bh_agrees_with_scipy(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.random(30), rng.random(10) * 1e-3, [0.5, 0.5]])  # with ties
    adjusted, reject = benjamini_hochberg(p, alpha=0.05)
    np.testing.assert_allclose(adjusted, stats.false_discovery_control(p, method="bh"), rtol=0, atol=1e-12)
    assert np.array_equal(reject, adjusted <= 0.05)
    assert np.array_equal(reject, p <= raw_threshold(p, 0.05, "bh"))


def test_bonferroni():
    adjusted, reject = bonferroni([0.001, 0.02, 0.9], alpha=0.05)
    np.testing.assert_allclose(adjusted, [0.003, 0.06, 1.0])
    assert reject.tolist() == [True, False, False]


# -- data quality ---------------------------------------------------------------------
def test_data_quality_checks():
    rng = np.random.default_rng(0)
    ref = ReferenceProfile.from_columns({"x": rng.uniform(0, 1, 1000), "c": rng.choice(["a", "b"], 1000), "gone": rng.normal(size=1000)})
    window = {"x": list(rng.uniform(0, 1, 92)) + [5.0, -1.0, 7.0, 3.0, -2.0, "oops", None, "n/a"],
              "c": ["a"] * 90 + ["zzz"] * 10, "extra": [1] * 100}
    results = {(r.detector, r.feature): r for r in DataQuality().check(ref, window)}
    oor = results[("data_quality.out_of_range", "x")]
    assert oor.drifted and oor.evidence["n_outside"] == 5 and oor.statistic == pytest.approx(5 / 97)
    assert oor.p_value == stats.betabinom.sf(4, 97, 2, 999)
    tm = results[("data_quality.type_mismatch", "x")]
    assert tm.drifted and tm.evidence["n_mismatch"] == 2
    assert results[("data_quality.unseen_categories", "c")].statistic == pytest.approx(0.1)
    assert results[("data_quality.new_feature", "extra")].drifted
    assert results[("data_quality.missing_feature", "gone")].drifted


def test_data_quality_clean_window_is_quiet():
    rng = np.random.default_rng(1)
    ref = ReferenceProfile.from_columns({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], 2000)})
    results = DataQuality().check(ref, {"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500)})
    assert [r for r in results if r.drifted] == []
    assert all(r.detector.startswith("data_quality.") for r in results)


# -- CBPE ------------------------------------------------------------------------------
def test_expected_roc_auc_matches_monte_carlo():
    rng = np.random.default_rng(2)
    s = rng.beta(2, 2, size=300)
    draws = []
    for _ in range(300):
        y = rng.random(s.size) < s
        draws.append(stats.mannwhitneyu(s[y], s[~y]).statistic / (y.sum() * (~y).sum()))
    assert expected_roc_auc(s) == pytest.approx(np.mean(draws), abs=0.01)


def test_expected_accuracy_matches_realised_on_calibrated_scores():
    rng = np.random.default_rng(3)
    s = rng.beta(0.7, 0.7, size=20_000)
    y = rng.random(s.size) < s
    est, se = expected_accuracy(s)
    assert abs(est - np.mean((s >= 0.5) == y)) < 4 * se


def test_cbpe_contract():
    rng = np.random.default_rng(4)
    s = rng.beta(0.5, 0.5, size=2000)
    cbpe = CBPE(max_drop=0.05).fit(s, rng.random(2000) < s)
    assert repr(cbpe) == "CBPE(max_drop=0.05, decision_threshold=0.5, z=2.0)"
    assert not cbpe.test(rng.beta(0.5, 0.5, size=1000)).drifted
    window = rng.beta(4, 4, size=1000)
    r = cbpe.test(window)
    assert r.drifted and r.evidence["estimated"] is True and r.threshold_on == "statistic"
    assert pickle.loads(pickle.dumps(cbpe)).test(window) == r
    # scores outside [0, 1] are left out of the estimate (the output-range guardrail reports them)
    outside = cbpe.test([1.5, -0.2, *window])
    assert outside.evidence["scores_out_of_range"] == 2 and outside.statistic == r.statistic
    with pytest.raises(RuntimeError):
        CBPE().test([0.5])


# -- domain classifier -------------------------------------------------------------------
def _dc_columns(rng, n, shift=0.0):
    return {"a": rng.normal(size=n), "b": rng.normal(shift, size=n), "c": rng.normal(size=n),
            "k": rng.choice(["x", "y", "z"], size=n)}


def test_domain_classifier_quiet_then_fires_and_names_the_feature():
    rng = np.random.default_rng(5)
    ref = ReferenceProfile.from_columns(_dc_columns(rng, 3000))
    dc = DomainClassifier(alpha=0.01, max_rows=600)
    quiet = dc.test(ref, _dc_columns(rng, 1000))
    assert not quiet.drifted and 0.4 < quiet.statistic < 0.6
    window = _dc_columns(rng, 1000, shift=0.5)
    loud = dc.test(ref, window)
    assert loud.drifted and loud.statistic > 0.6
    assert loud.evidence["top_features"][0][0] == "b"
    assert loud.evidence["n_per_side"] == 600
    again = ReferenceProfile.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert pickle.loads(pickle.dumps(dc)).test(again, window) == loud


def test_domain_classifier_false_alarm_rate_is_near_alpha():
    rng = np.random.default_rng(6)
    ref = ReferenceProfile.from_columns(_dc_columns(rng, 2000))
    dc = DomainClassifier(alpha=0.05, max_rows=300, newton_steps=3)
    fired = sum(DomainClassifier(alpha=0.05, max_rows=300, newton_steps=3, seed=s).test(ref, _dc_columns(rng, 300)).drifted
                for s in range(20))
    assert fired <= 4  # expected 1 of 20 at alpha = 0.05
    assert "max_rows=300" in repr(dc)


def _mixed_columns(rng, n, shift_f3=0.0, shift_c1=0.0):
    """10 correlated numeric features, 5 categorical ones with 8 levels (c0 tied to the shared
    factor), 2 % missing values; a shift moves f3's mean and/or c1's mix."""
    factor = rng.normal(size=n)
    columns = {f"f{j}": 0.6 * factor + 0.8 * rng.normal(size=n) + (shift_f3 if j == 3 else 0.0) for j in range(10)}
    for x in columns.values():
        x[rng.random(n) < 0.02] = np.nan
    levels = np.array(list("abcdefgh"), dtype=object)
    for j in range(5):
        if j == 0:
            codes = np.clip(((factor + rng.normal(scale=0.7, size=n)) * 2 + 4).astype(int), 0, 7)
        else:
            weights = np.ones(8)
            if j == 1:
                weights[:2] += 8 * shift_c1
            codes = rng.choice(8, size=n, p=weights / weights.sum())
        c = levels[codes]
        c[rng.random(n) < 0.02] = None
        columns[f"c{j}"] = c
    return columns


@pytest.mark.parametrize("seed", range(6))
def test_domain_classifier_names_the_shifted_numeric_and_categorical_features_first(seed):
    """Issue 13: on a shift of f3 and of c1's mix the river-trained classifier's summed absolute
    weights named unshifted many-levelled features (c4, c2) beside c1 and missed f3."""
    rng = np.random.default_rng(seed)
    ref = ReferenceProfile.from_columns(_mixed_columns(rng, 2000))
    dc = DomainClassifier(alpha=0.001, max_rows=500)
    r = dc.test(ref, _mixed_columns(rng, 1000, shift_f3=0.5, shift_c1=0.3))
    assert r.drifted
    top = [name for name, _ in r.evidence["top_features"]]
    assert set(top[:2]) == {"f3", "c1"}, r.evidence["top_features"]
    shares = [share for _, share in r.evidence["top_features"]]
    assert shares == sorted(shares, reverse=True) and 0.7 < shares[0] + shares[1] <= 1.0
    assert not dc.test(ref, _mixed_columns(rng, 1000)).drifted


def test_domain_classifier_restores_a_river_era_checkpoint():
    """A pickled classifier from before the batch fit (epochs, learning_rate, cached river rows)
    restores with the batch fit's defaults and gives the freshly built classifier's results."""
    rng = np.random.default_rng(9)
    ref = ReferenceProfile.from_columns(_dc_columns(rng, 1000))
    old = DomainClassifier.__new__(DomainClassifier)
    old.__setstate__({"alpha": 0.01, "max_rows": 300, "epochs": 2, "learning_rate": 0.05, "n_top": 5, "seed": 42,
                      "_reference_cache": ("stale",)})
    window = _dc_columns(rng, 600, shift=0.5)
    assert old.test(ref, window) == DomainClassifier(alpha=0.01, max_rows=300).test(ref, window)
    assert repr(old) == repr(DomainClassifier(alpha=0.01, max_rows=300))


# -- calibration --------------------------------------------------------------------------
def _cal_columns(rng, n):
    cols = {f"x{i}": rng.normal(size=n) for i in range(4)}
    cols["ties"] = rng.integers(0, 5, size=n).astype(float)
    cols.update({f"c{i}": rng.choice(list("abcd"), p=[0.4, 0.3, 0.2, 0.1], size=n) for i in range(4)})
    cols["m"] = np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n))
    return cols


def test_calibrated_threshold_gives_the_stated_ert():
    """alibi-detect style: windows-to-false-alarm on a stationary stream within [ERT/3, 3 ERT]."""
    rng = np.random.default_rng(7)
    columns = _cal_columns(rng, 2000)
    cal = calibrate(columns, window_size=400, ert=20, n_bootstrap=200, seed=1)
    assert not cal.extrapolated and cal.correction == "bh"
    ref = ReferenceProfile.from_columns(columns)
    settings = cal.settings(WindowSettings(min_effect_size=0.0))
    n_windows = 120
    alarms = sum(bool(evaluate_window(ref, _cal_columns(np.random.default_rng(100 + s), 400), settings).drifted)
                 for s in range(n_windows))
    assert n_windows / (3 * 20) <= alarms <= 3 * n_windows / 20
    json.dumps(cal.to_dict())


def test_calibration_is_seeded_and_monotone_in_ert():
    columns = _cal_columns(np.random.default_rng(8), 1000)
    a = calibrate(columns, 200, ert=10, n_bootstrap=100, seed=3)
    b = calibrate(columns, 200, ert=10, n_bootstrap=100, seed=3)
    c = calibrate(columns, 200, ert=50, n_bootstrap=100, seed=3)
    assert a == b and c.threshold < a.threshold and c.extrapolated is False
    assert calibrate(columns, 200, ert=500, n_bootstrap=100).extrapolated
    with pytest.raises(ValueError):
        calibrate(columns, 200, ert=1)
