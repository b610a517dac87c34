"""The cheaper domain classifier and data-quality checks give exactly the results of the code they
replaced (tests/detectors/legacy_window_checks.py, main as of 26ed33c): every value of every
result bit for bit, on mixed windows given as raw lists, as ``WindowColumn``s and as a typed
buffer's columns (what the monitor passes), and the monitor's emitted alerts."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg, stats

import detectors.window_tests as window_tests
from detectors.base import DriftResult
from detectors.domain_classifier import DomainClassifier, _mann_whitney_greater, _solve_positive_definite
from detectors.monitor import ModelMonitor
from detectors.outputs import PREDICTION, SCORE
from detectors.profile import ReferenceProfile, WindowColumn
from detectors.quality import DataQuality, _out_of_range_tail
from detectors.settings import ModelSettings
from detectors.window_buffer import WindowBuffer
from tests.detectors.legacy_window_checks import LegacyDataQuality, LegacyDomainClassifier, legacy_out_of_range_tail

LEVELS = np.array(list("abcdefgh"), dtype=object)


def bits(value):
    """``value`` with every float as its hex spelling (so -0.0, NaN and the last bit count), recursively."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, dict):
        return ("dict", [(k, bits(v)) for k, v in value.items()])   # order counts
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [bits(v) for v in value])
    return (type(value).__name__, value)


def same(found: DriftResult | list, expected: DriftResult | list) -> None:
    assert bits(found.to_dict() if isinstance(found, DriftResult) else [r.to_dict() for r in found]) == \
        bits(expected.to_dict() if isinstance(expected, DriftResult) else [r.to_dict() for r in expected])
    assert found == expected


def _with_missing(rng, values: list, rate: float) -> list:
    return [(None if rng.random() < 0.5 else float("nan")) if rng.random() < rate else v for v in values]


def reference_columns(rng, n: int) -> dict:
    """Correlated numeric features (some missing), a constant one, categorical features of 8
    levels (some missing), a boolean, a constant category, the model's outputs."""
    base = rng.normal(size=n)
    columns = {f"n{j}": (0.6 * base + rng.normal(size=n)).tolist() for j in range(4)}
    columns["n1"] = _with_missing(rng, columns["n1"], 0.05)
    columns["constant"] = [3.0] * n
    columns["count"] = rng.integers(0, 5, size=n).tolist()
    for j in range(4):
        columns[f"c{j}"] = LEVELS[rng.integers(0, 8 - j, size=n)].tolist()
    columns["c2"] = [None if rng.random() < 0.04 else v for v in columns["c2"]]
    columns["flag"] = (rng.random(n) < 0.3).tolist()
    columns["one_level"] = ["only"] * n
    score = 1 / (1 + np.exp(-base))
    columns[SCORE] = score.tolist()
    columns[PREDICTION] = (score >= 0.5).tolist()
    return columns


def window_columns(rng, n: int, shift: float = 0.0, messy: bool = True) -> dict:
    """A window of the reference's features, shifted by ``shift``; ``messy``: missing values, type
    mismatches, infinities, out-of-range values, unseen categories, an all-missing column, an absent
    column and a feature the reference does not know."""
    columns = reference_columns(rng, n)
    columns["n0"] = (np.asarray(columns["n0"]) + shift).tolist()
    columns["c1"] = LEVELS[np.minimum(rng.integers(0, 7, size=n) + (rng.random(n) < shift), 7)].tolist()
    if messy:
        columns["n2"] = [("n/a" if i % 3 else float("inf")) if rng.random() < 0.03 else v
                         for i, v in enumerate(_with_missing(rng, columns["n2"], 0.1))]
        columns["n3"] = [v * 40 if rng.random() < 0.05 else v for v in columns["n3"]]
        columns["count"] = [True if i == 3 else v for i, v in enumerate(columns["count"])]
        columns["c0"] = [("zz" if rng.random() < 0.5 else "yy") if rng.random() < 0.08 else v for v in columns["c0"]]
        columns["c3"] = [None] * n                        # all missing
        columns["constant"] = [None] * n                  # all missing numeric
        columns["one_level"] = ["other"] * n              # nothing the reference saw
        del columns["c2"]                                 # absent
        columns["brand_new"] = list(range(n))
    return columns


def as_window_columns(reference: ReferenceProfile, raw: dict) -> dict:
    """As the monitor converts a list-held window: a WindowColumn per reference feature."""
    kinds = reference.features
    return {name: WindowColumn(values, kinds[name].value_type) if name in kinds else values
            for name, values in raw.items()}


def as_buffered(reference: ReferenceProfile, raw: dict) -> dict:
    """As the monitor converts a typed window: the buffer's columns."""
    buffer = WindowBuffer(reference, limit=len(next(iter(raw.values()))))
    for i in range(len(next(iter(raw.values())))):
        buffer.append({name: values[i] for name, values in raw.items()})
    return buffer.window_columns()


FORMS = {"raw": lambda reference, raw: raw, "window_columns": as_window_columns, "buffered": as_buffered}


@pytest.fixture(scope="module")
def reference():
    return ReferenceProfile.from_columns(reference_columns(np.random.default_rng(0), 2000))


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("params", [{}, {"max_rows": 200, "ridge": 1.0, "n_top": 3},
                                    {"max_rows": 5000, "newton_steps": 3, "seed": 7}, {"ridge": 0.0, "alpha": 0.2}])
def test_domain_classifier_results_are_those_of_main(reference, form, params):
    rng = np.random.default_rng(len(form) + len(params))
    ours, oracle = DomainClassifier(**params), LegacyDomainClassifier(**params)   # each keeps its caches across windows
    for n, shift, messy in ((1000, 0.0, True), (1000, 0.8, True), (600, 0.3, False), (1000, 0.0, False),
                            (1000, 1.5, True), (35, 0.0, True), (15, 0.0, True)):
        window = FORMS[form](reference, window_columns(rng, n, shift, messy))
        found, expected = ours.test(reference, window), oracle.test(reference, window)
        same(found, expected)
    assert ours._reference_cache is not None


def test_domain_classifier_names_the_shifted_features_as_main_does(reference):
    rng = np.random.default_rng(3)
    window = as_buffered(reference, window_columns(rng, 1000, 1.0, messy=False))
    found = DomainClassifier().test(reference, window)
    same(found, LegacyDomainClassifier().test(reference, window))
    assert found.drifted and {"n0", "c1"} <= {name for name, _ in found.evidence["top_features"][:3]}


@pytest.mark.parametrize("seed", range(4))
def test_domain_classifier_on_raw_reference_columns_is_main(seed):
    """A reference given as raw columns (no profile): drawn and encoded each time, as before."""
    rng = np.random.default_rng(seed)
    ref = {k: v for k, v in reference_columns(rng, 700).items() if k not in ("c2", "one_level")}
    window = {k: v for k, v in window_columns(rng, 500, 0.5 * seed, messy=False).items() if k in ref}
    for test, oracle in ((DomainClassifier(max_rows=300), LegacyDomainClassifier(max_rows=300)),
                         (DomainClassifier(seed=np.random.default_rng(5)), LegacyDomainClassifier(seed=np.random.default_rng(5)))):
        for _ in range(2):   # a Generator seed gives other rows every call, on both sides
            same(test.test(ref, window), oracle.test(ref, window))


def test_domain_classifier_design_is_mains_bit_for_bit():
    rng = np.random.default_rng(4)
    kinds = {"x": "numeric", "c": "categorical", "y": "numeric", "d": "categorical"}
    def side(n, unseen):
        x = rng.normal(size=n)
        x[rng.choice(n, 3, replace=False)] = np.nan
        c = np.array(rng.choice(["u", "v", "w", "q"] if unseen else ["u", "v"], size=n), dtype=object)
        c[rng.choice(n, 2, replace=False)] = None
        return {"x": x, "c": c, "y": rng.normal(size=n), "d": np.array(rng.choice(["k"], size=n), dtype=object)}
    ref, cur = side(300, False), side(200, True)
    encoding = DomainClassifier.reference_encoding(ref, kinds)
    x, owners = DomainClassifier.design(encoding, cur, kinds)
    x_main, owners_main = LegacyDomainClassifier.design(LegacyDomainClassifier.reference_encoding(ref, kinds), cur, kinds)
    assert owners == owners_main and x.dtype == x_main.dtype and x.flags.c_contiguous == x_main.flags.c_contiguous
    assert x.tobytes() == x_main.tobytes()


def test_mann_whitney_is_scipys_bit_for_bit():
    rng = np.random.default_rng(5)
    cases = [(rng.normal(size=500), rng.normal(0.1, size=500)),
             (rng.normal(size=40).round(1), rng.normal(size=60).round(1)),    # ties
             (np.zeros(30), np.zeros(30)),                                    # all tied: p = 1
             (np.array([0.0, -0.0] * 10), np.array([-0.0] * 12)),
             (rng.normal(size=5), rng.normal(size=30)),                       # scipy's exact method
             (np.array([np.nan, *rng.normal(size=20)]), rng.normal(size=20)),
             (np.array([np.inf, -np.inf, *rng.normal(size=20)]), rng.normal(size=20))]
    for x, y in cases:
        res = stats.mannwhitneyu(x, y, alternative="greater")
        found = _mann_whitney_greater(x, y)
        assert bits(found) == bits((float(res.statistic), float(res.pvalue)))


def test_positive_definite_solve_is_scipys_bit_for_bit():
    rng = np.random.default_rng(6)
    for n in (2, 9, 94, 130):
        a = rng.normal(size=(3 * n, n))
        h = (a.T * rng.random(3 * n)) @ a   # not exactly symmetric, as the Hessian is not
        h[np.diag_indices_from(h)] += 1e-3
        b = rng.normal(size=n)
        assert _solve_positive_definite(h, b).tobytes() == linalg.solve(h, b, assume_a="pos").tobytes()
    not_definite = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(linalg.LinAlgError) as found:
        _solve_positive_definite(not_definite, np.ones(2))
    with pytest.raises(linalg.LinAlgError) as expected:
        linalg.solve(not_definite, np.ones(2), assume_a="pos")
    assert str(found.value) == str(expected.value)


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("params", [{}, {"max_out_of_range_rate": 0.0, "out_of_range_alpha": 0.5,
                                         "max_type_mismatch_rate": 0.01, "max_unseen_rate": 0.0, "unseen_alpha": 0.5}])
def test_data_quality_results_are_those_of_main(reference, form, params):
    rng = np.random.default_rng(11)
    ours, oracle = DataQuality(**params), LegacyDataQuality(**params)
    for n, shift, messy in ((1000, 0.0, True), (997, 2.0, True), (400, 0.0, False), (3, 0.0, True)):
        window = FORMS[form](reference, window_columns(rng, n, shift, messy))
        same(ours.check(reference, window), oracle.check(reference, window))


@pytest.mark.parametrize("n_reference", [1, 2, 40, 999, 2000])
def test_out_of_range_tail_is_scipys_bit_for_bit(n_reference):
    for n_window in (0, 1, 2, 7, 64, 129, 300, 1000):
        assert _out_of_range_tail(n_window, n_reference).tobytes() == \
            legacy_out_of_range_tail(n_window, n_reference).tobytes()


def _monitor_stream(rng, n: int, start: int, shift_from: int) -> list:
    out = []
    for i in range(start, start + n):
        shifted = i >= shift_from
        x = float(rng.normal(0.7 if shifted else 0.0))
        score = float(1 / (1 + math.exp(-x)))
        features = {"x": x if i % 23 else "n/a", "z": float(rng.normal()) + 0.5 * x if i % 13 else None,
                    "w": float(rng.normal(scale=9.0 if shifted else 1.0)),
                    "c": str(rng.choice(["a", "b", "c", "q"] if shifted else ["a", "b", "c"])),
                    "d": str(rng.choice(list("abcdefgh"))), "flag": bool(rng.random() < 0.3)}
        out.append({"prediction_id": f"p{i}", "model": "m", "model_version": "1", "timestamp": 1_000_000.0 + i,
                    "features": features, "prediction": score >= 0.5, "score": score,
                    "segment": {"region": str(rng.choice(["eu", "us"]))}, "latency_ms": None})
    return out


def _alerts(monkeypatch, legacy: bool) -> list:
    if legacy:
        monkeypatch.setattr(window_tests, "DomainClassifier", LegacyDomainClassifier)
        monkeypatch.setattr(window_tests, "DataQuality", LegacyDataQuality)
    settings = ModelSettings(window_size=300, reference_size=600, min_window_size=50, segment_drift=False,
                             multivariate={"enabled": True, "every": 1, "max_rows": 250, "alpha": 0.01})
    monitor = ModelMonitor("m", settings)
    predictions = _monitor_stream(np.random.default_rng(8), 2700, 0, shift_from=1800)
    out = []
    for k in range(0, len(predictions), 100):
        out += monitor.add_predictions(predictions[k:k + 100], offset=k // 100, partition=0, sources=[(0, 100)])
    monkeypatch.undo()
    tests = monitor.versions["1"].tests
    assert isinstance(tests.domain, LegacyDomainClassifier) is legacy and isinstance(tests.quality, LegacyDataQuality) is legacy
    windows = monitor.versions["1"].closed_windows
    return [(kind, {k: v for k, v in record.items() if k not in ("created_at", "requested_at")})
            for kind, record in out], [{k: v for k, v in w.items() if k != "closed_at"} for w in windows]


def test_monitor_alerts_are_those_of_main(monkeypatch):
    (alerts, windows), (alerts_main, windows_main) = _alerts(monkeypatch, False), _alerts(monkeypatch, True)
    kinds = {record.get("kind") for _, record in alerts}
    assert alerts == alerts_main and bits(windows) == bits(windows_main)
    assert {"multivariate_drift", "data_quality"} <= kinds, kinds


@pytest.mark.parametrize("values", [
    [1, None, "3", True, float("inf"), float("nan"), np.float64("-inf"), np.bool_(False), 2.5, b"x", [1], {"a": 1}],
    [1.0, 2.0, None, -math.inf], [1, 10 ** 400, 2], [1, 10 ** 400, "x"], ["a"] * 20 + [1.0] * 5, [None, float("nan")],
    np.array([1.0, np.inf, np.nan]), np.array([1, "x", None], dtype=object)])
def test_type_mismatch_count_is_mains(values):
    from detectors.quality import type_mismatch_count
    from tests.detectors.legacy_window_checks import legacy_type_mismatch_count
    forms = [values]
    try:
        forms.append(WindowColumn(values, "numeric"))
    except OverflowError:   # an int beyond float range never reaches a numeric window column
        pass
    for given in forms:
        try:
            expected = legacy_type_mismatch_count(given)
        except Exception as exc:   # main raised: so does this
            with pytest.raises(type(exc)):
                type_mismatch_count(given)
            continue
        assert bits(type_mismatch_count(given)) == bits(expected)
