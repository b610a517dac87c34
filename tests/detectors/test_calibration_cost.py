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
