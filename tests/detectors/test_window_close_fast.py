"""The window-close cuts of branch issue13-close keep every value: each is checked against the
code it replaced (kept here as the oracle)."""
from __future__ import annotations

import numpy as np
import pytest

from detectors.base import DriftResult, empty_result, json_safe
from detectors.histogram import histograms
from detectors.profile import FeatureProfile, WindowColumn
from detectors.psi import PopulationStabilityIndex, psi


def psi_test_before(test: PopulationStabilityIndex, feature_profile, values) -> DriftResult:
    """PopulationStabilityIndex.test as it was: the evidence walked by json_safe."""
    labels, ref, cur = histograms(feature_profile, values)
    evidence = {"n_reference": int(ref.sum()), "n_current": int(cur.sum()), "bins": labels[:50],
                "reference_fractions": (ref / max(ref.sum(), 1))[:50], "current_fractions": (cur / max(cur.sum(), 1))[:50]}
    if cur.sum() == 0 or ref.sum() == 0:
        return empty_result(test.name, feature_profile.name, test.threshold, "statistic", "no non-missing values", evidence)
    value = psi(ref, cur, test.pseudo_count)
    return DriftResult(test.name, feature_profile.name, value, None, test.threshold, "statistic",
                       bool(value > test.threshold), effect_size=value, effect_name="psi", evidence=json_safe(evidence))


def _same(a: DriftResult, b: DriftResult) -> None:
    assert a.to_dict() == b.to_dict()
    assert repr(a.evidence) == repr(b.evidence)   # types too (1 vs 1.0, str vs np.str_)


@pytest.mark.parametrize("seed", range(6))
def test_psi_evidence_numeric_and_categorical_equal_before(seed):
    rng = np.random.default_rng(seed)
    numeric = FeatureProfile.from_values("x", rng.normal(size=2000), n_bins=int(rng.integers(2, 80)))
    levels = np.array([f"l{i}" for i in range(70)])
    categorical = FeatureProfile.from_values("c", levels[rng.integers(0, 60, size=2000)].tolist())
    windows = {
        numeric: [rng.normal(rng.normal(), size=1000), np.full(50, np.nan), [1.0, None, "junk", True]],
        categorical: [levels[rng.integers(0, 70, size=1000)].tolist(), [None, None], [True, 3, 2.0, "l1", None]],
    }
    for fp, cases in windows.items():
        for values in cases:
            for test in (PopulationStabilityIndex(), PopulationStabilityIndex(threshold=0.05, pseudo_count=1.0)):
                _same(test.test(fp, WindowColumn(values, fp.kind)), psi_test_before(test, fp, WindowColumn(values, fp.kind)))


def test_psi_evidence_is_plain_python():
    rng = np.random.default_rng(1)
    fp = FeatureProfile.from_values("x", rng.normal(size=500))
    r = PopulationStabilityIndex().test(fp, rng.normal(size=300))
    assert all(type(v) is float for v in r.evidence["reference_fractions"] + r.evidence["current_fractions"])
    assert all(type(v) is str for v in r.evidence["bins"])
    assert r.evidence["n_current"] == 300 and abs(sum(r.evidence["current_fractions"]) - 1.0) < 1e-12
