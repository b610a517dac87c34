"""evaluate_window: silent when stationary, names exactly the feature that moved."""

import json

import numpy as np
import pytest

from detectors import (
    FeatureProfile,
    ReferenceProfile,
    WindowSettings,
    evaluate_predictions,
    evaluate_window,
)

CATEGORIES = np.array(list("abcdef"))
PROBS = np.array([0.3, 0.25, 0.2, 0.15, 0.07, 0.03])


def make_columns(rng, n, shift_numeric=None, shift_categorical=None, missing=None):
    columns = {}
    for i in range(10):
        x = rng.normal(loc=i, scale=1.0 + i / 10, size=n)
        if shift_numeric == f"num{i}":
            x = x + 0.5 * (1.0 + i / 10)  # half a standard deviation
        if missing and missing[0] == f"num{i}":
            x[rng.random(n) < missing[1]] = np.nan
        columns[f"num{i}"] = x
    for i in range(10):
        p = PROBS if shift_categorical != f"cat{i}" else PROBS[::-1]
        c = rng.choice(CATEGORIES, p=p, size=n).astype(object)
        if missing and missing[0] == f"cat{i}":
            c[rng.random(n) < missing[1]] = None
        columns[f"cat{i}"] = c
    return columns


@pytest.fixture(scope="module")
def reference():
    return ReferenceProfile.from_columns(make_columns(np.random.default_rng(2024), 2000), reference_id="ref")


def test_stationary_window_has_no_drift(reference):
    report = evaluate_window(reference, make_columns(np.random.default_rng(1), 1000))
    assert report.drifted == []
    assert set(report.summaries) == set(reference.features)
    primaries = [r for r in report.results if r.detector in ("ks", "chi_squared")]
    assert len(primaries) == 20 and all(r.effect_name == "psi" for r in primaries)
    assert {r.detector for r in report.results} == {"ks", "chi_squared", "missing_rate", "psi", "wasserstein", "jensen_shannon"}
    json.dumps(report.to_dict(), allow_nan=False)


def test_false_alarms_over_50_stationary_windows_are_rare(reference):
    alarms = sum(bool(evaluate_window(reference, make_columns(np.random.default_rng(seed), 1000)).drifted)
                 for seed in range(100, 150))
    assert alarms <= 2


@pytest.mark.parametrize("feature", ["num0", "num7"])
def test_numeric_half_std_shift_flags_exactly_that_feature(reference, feature):
    report = evaluate_window(reference, make_columns(np.random.default_rng(3), 1000, shift_numeric=feature))
    assert [(r.detector, r.feature) for r in report.drifted] == [("ks", feature)]
    r = report.drifted[0]
    assert r.p_value <= r.threshold and r.evidence["p_value_adjusted"] <= 0.01
    assert r.effect_size >= 0.1
    assert set(r.evidence["distances"]) == {"psi", "wasserstein", "jensen_shannon"}
    assert 0.3 < r.evidence["distances"]["wasserstein"] < 0.7


def test_categorical_shift_flags_exactly_that_feature(reference):
    report = evaluate_window(reference, make_columns(np.random.default_rng(4), 1000, shift_categorical="cat3"))
    assert [(r.detector, r.feature) for r in report.drifted] == [("chi_squared", "cat3")]


@pytest.mark.parametrize("feature", ["num2", "cat5"])
def test_missing_rate_jump_fires_missing_rate(reference, feature):
    report = evaluate_window(reference, make_columns(np.random.default_rng(5), 1000, missing=(feature, 0.3)))
    assert [(r.detector, r.feature) for r in report.drifted] == [("missing_rate", feature)]
    assert report.summaries[feature]["missing_rate"] == pytest.approx(0.3, abs=0.05)


def test_feature_absent_from_window_is_all_missing_and_unknown_features_ignored(reference):
    window = make_columns(np.random.default_rng(6), 1000)
    del window["num4"]
    window["brand_new"] = np.ones(1000)
    report = evaluate_window(reference, window)
    assert report.summaries["num4"]["missing_rate"] == 1.0
    assert "brand_new" not in report.summaries
    assert [(r.detector, r.feature) for r in report.drifted] == [("missing_rate", "num4")]


def test_effect_size_gate_blocks_tiny_significant_shifts():
    rng = np.random.default_rng(8)
    reference = ReferenceProfile.from_columns({"x": rng.normal(size=10_000)})
    window = {"x": rng.normal(0.15, size=10_000)}
    ungated = evaluate_window(reference, window, WindowSettings(min_effect_size=0.0))
    gated = evaluate_window(reference, window)
    assert [r.feature for r in ungated.drifted] == ["x"]
    assert gated.drifted == []
    ks = next(r for r in gated.results if r.detector == "ks")
    assert ks.evidence["significant"] and not ks.evidence["effect_size_ok"]


@pytest.mark.parametrize("correction", ["bh", "bonferroni", "none"])
def test_corrections_shape_the_threshold(reference, correction):
    report = evaluate_window(reference, make_columns(np.random.default_rng(9), 1000, shift_numeric="num1"),
                             WindowSettings(correction=correction))
    ks = next(r for r in report.results if r.detector == "ks" and r.feature == "num1")
    assert ks.drifted
    if correction == "bonferroni":
        assert ks.threshold == pytest.approx(0.01 / 40)
    elif correction == "none":
        assert ks.threshold == 0.01


def test_profile_round_trip_gives_identical_report(reference):
    again = ReferenceProfile.from_dict(json.loads(json.dumps(reference.to_dict())))
    window = make_columns(np.random.default_rng(10), 1000, shift_numeric="num3", shift_categorical="cat1")
    assert evaluate_window(again, window).to_dict() == evaluate_window(reference, window).to_dict()


def test_empty_window(reference):
    report = evaluate_window(reference, {})
    assert report.drifted == [] and report.n == 0


def test_settings_from_dict_validates():
    s = WindowSettings.from_dict({"alpha": 0.05, "correction": "bonferroni", "numeric_tests": ["ks"]})
    assert s.numeric_tests == ("ks",) and s.correction == "bonferroni"
    with pytest.raises(ValueError):
        WindowSettings.from_dict({"alpah": 0.05})
    with pytest.raises(ValueError):
        WindowSettings(correction="holm")
    with pytest.raises(ValueError):
        WindowSettings(numeric_tests=("chi_squared",))


def test_prediction_drift_score_and_label():
    rng = np.random.default_rng(11)
    scores = FeatureProfile.from_values("__score__", rng.beta(2, 5, size=2000))
    assert not evaluate_predictions(scores, rng.beta(2, 5, size=1000)).drifted
    r = evaluate_predictions(scores, rng.beta(3, 4, size=1000))
    assert r.detector == "prediction_ks" and r.drifted
    labels = FeatureProfile.from_values("__prediction__", rng.choice(["no", "yes"], p=[0.9, 0.1], size=2000))
    r = evaluate_predictions(labels, rng.choice(["no", "yes"], p=[0.7, 0.3], size=1000))
    assert r.detector == "prediction_chi_squared" and r.drifted


def test_prediction_columns_in_profile_are_named_prediction(reference):
    rng = np.random.default_rng(12)
    ref = ReferenceProfile.from_columns({"x": rng.normal(size=2000), "__score__": rng.beta(2, 5, size=2000)})
    report = evaluate_window(ref, {"x": rng.normal(size=1000), "__score__": rng.beta(5, 2, size=1000)})
    assert [(r.detector, r.feature) for r in report.drifted] == [("prediction_ks", "__score__")]
