"""The calibration's shortcuts (issue 16) give exactly what the long way gives."""
import numpy as np
from scipy import stats

from detectors import calibration
from detectors.calibration import calibrate
from detectors.profile import ReferenceProfile


def test_ks_p_values_of_distinct_pairs_equal_every_pair_evaluated():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 40, size=(300, 60))
    cur = rng.integers(0, 20, size=(300, 60))
    ref[:7] = 0                                   # empty samples: p = 1
    ref[7::5], cur[7::5] = ref[7], cur[7]        # repeated pairs: shared (D, n)
    n1, n2 = ref.sum(1), cur.sum(1)
    d = np.abs(np.cumsum(ref, 1) / np.maximum(n1, 1)[:, None] - np.cumsum(cur, 1) / np.maximum(n2, 1)[:, None]).max(1)
    en = np.maximum(np.round(n1 * n2 / np.maximum(n1 + n2, 1)), 1)
    expected = np.where((n1 > 0) & (n2 > 0), stats.kstwo.sf(d, en), 1.0)
    got = calibration._ks_p(ref, cur)
    assert np.array_equal(got, expected)
    assert (got[:7] == 1.0).all() and len(np.unique(got[7:])) < len(got) - 7


def test_calibration_with_the_callers_profile_equals_building_it_again():
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.normal(size=n)
    columns = {"x": x, "y": np.where(rng.random(n) < 0.1, np.nan, x + rng.normal(size=n)),
               "c": np.where(x > 0, rng.choice(list("ab"), size=n), rng.choice(list("bcd"), size=n)),
               "flag": (rng.random(n) < 0.3).tolist(), "level": rng.integers(0, 5, size=n).tolist()}
    profile = ReferenceProfile.from_columns(columns)
    rebuilt = calibrate(columns, 500, 100, kinds=profile.kinds)
    given = calibrate(columns, 500, 100, kinds=profile.kinds, profile=profile)
    assert given == rebuilt
    assert 0.0 < given.threshold < 0.05


def _reference(seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return {"x": x, "y": x * 0.5 + rng.normal(size=n), "z": rng.gamma(2.0, size=n).round(2),
            "c": np.where(x > 0, rng.choice(list("ab"), size=n), rng.choice(list("bcd"), size=n))}


def test_a_version_of_the_same_sizes_reuses_the_ks_null_values_and_calibrates_the_same(monkeypatch):
    """The process-wide kstwo cache: a cold cache, a warm one and no cache give one threshold, and a
    second version with the same reference and window sizes asks scipy for few new values."""
    monkeypatch.setattr(calibration, "KSTWO", calibration.KstwoCache())
    first, second = _reference(1, 300), _reference(2, 300)
    cold = calibrate(first, 150, 100)
    asked = calibration.KSTWO.computed
    warm = calibrate(second, 150, 100)
    asked_again = calibration.KSTWO.computed - asked
    assert asked > 100 and asked_again < asked / 4, (asked, asked_again)
    assert calibrate(first, 150, 100) == cold and calibration.KSTWO.computed == asked + asked_again
    for columns, got in ((first, cold), (second, warm)):
        monkeypatch.setattr(calibration, "KSTWO", calibration.KstwoCache(max_size=0))   # nothing kept
        assert calibrate(columns, 150, 100) == got


def test_the_kstwo_cache_equals_scipy_elementwise_and_stays_bounded():
    cache = calibration.KstwoCache(max_size=50)
    rng = np.random.default_rng(4)
    for _ in range(5):
        d = rng.integers(1, 60, size=400) / 120.0
        n = rng.choice([40.0, 80.0, 100.0], size=400)
        assert np.array_equal(cache.sf(d, n), stats.kstwo.sf(d, n))
        assert len(cache.values) <= 50 + len(np.unique(np.column_stack([d, n]), axis=0))
