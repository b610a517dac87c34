import json
import math

import numpy as np
import pytest

from detectors import DriftResult, FeatureProfile, ReferenceProfile, infer_kind, summarize, to_column


def test_to_column_numeric_and_categorical():
    col = to_column([1, 2.5, None, float("nan"), "x", True, np.int64(4), float("inf")], "numeric")
    assert col.dtype == np.float64
    np.testing.assert_array_equal(col, [1.0, 2.5, np.nan, np.nan, np.nan, 1.0, 4.0, np.nan])  # a bool is 1/0
    cat = to_column([True, False, "a", 7, 7.0, 2.5, None, np.nan], "categorical")
    assert cat.dtype == object
    assert cat.tolist() == ["true", "false", "a", "7", "7", "2.5", None, None]


def test_infer_kind():
    assert infer_kind([1, 2.0, None]) == "numeric"
    assert infer_kind([True, False]) == "categorical"
    assert infer_kind(["a", "b"]) == "categorical"
    assert infer_kind(np.array([1, 2])) == "numeric"
    assert infer_kind(np.array([True])) == "categorical"


def test_summary_counts_nulls():
    s = summarize(to_column([1.0, None, 3.0, None], "numeric"), "numeric")
    assert s == {"n": 4, "missing_rate": 0.5, "mean": 2.0, "std": math.sqrt(2.0), "min": 1.0, "max": 3.0}
    s = summarize(to_column(["a", None, "a", "b", "c", "d", "e", "f"], "categorical"), "categorical")
    assert s["n"] == 8 and s["missing_rate"] == 0.125 and s["n_categories"] == 6
    assert len(s["top"]) == 5 and s["top"][0] == ["a", 2 / 7]
    assert summarize(np.empty(0), "numeric") == {"n": 0, "missing_rate": 0.0, "mean": None, "std": None, "min": None, "max": None}


def test_profile_json_round_trip_is_exact():
    rng = np.random.default_rng(5)
    columns = {
        "x": np.where(rng.random(3000) < 0.05, np.nan, rng.normal(size=3000)),
        "k": rng.integers(0, 4, size=3000),
        "c": [None if i % 17 == 0 else f"v{i % 7}" for i in range(3000)],
        "b": [bool(i % 3) for i in range(3000)],
    }
    ref = ReferenceProfile.from_columns(columns, reference_id="r1")
    again = ReferenceProfile.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert again.to_dict() == ref.to_dict()
    assert ref.kinds == {"x": "numeric", "k": "numeric", "c": "categorical", "b": "categorical"}
    np.testing.assert_array_equal(again.features["x"].sample, ref.features["x"].sample)
    assert ref.features["x"].missing_rate == pytest.approx(np.isnan(columns["x"]).mean())
    assert ref.features["b"].category_counts == {"true": 2000, "false": 1000}


def test_large_reference_is_thinned_deterministically():
    values = np.random.default_rng(0).normal(size=25_000)
    a = FeatureProfile.from_values("x", values, max_sample=1000)
    b = FeatureProfile.from_values("x", values[::-1], max_sample=1000)
    assert a.sample.size == 1000 and a.n_present == 25_000
    np.testing.assert_array_equal(a.sample, b.sample)
    assert a.sample[0] == values.min() and a.sample[-1] == values.max()
    assert np.all(np.diff(a.sample) >= 0)


def test_kinds_override_and_validation():
    ref = ReferenceProfile.from_columns({"zip": [10115, 20095]}, kinds={"zip": "categorical"})
    assert ref.features["zip"].category_counts == {"10115": 1, "20095": 1}
    with pytest.raises(ValueError):
        ReferenceProfile.from_columns({"a": [1], "b": [1, 2]})
    with pytest.raises(ValueError):
        ReferenceProfile.from_columns({"a": [1]}, kinds={"a": "text"})


def test_drift_result_to_dict_is_json_safe():
    r = DriftResult("ks", "x", np.float64(0.2), np.float64("nan"), 0.01, "p_value", np.bool_(True),
                    evidence={"a": np.arange(2), "b": float("inf")})
    d = r.to_dict()
    assert d["p_value"] is None and d["drifted"] is True and d["evidence"] == {"a": [0, 1], "b": None}
    json.dumps(d, allow_nan=False)
