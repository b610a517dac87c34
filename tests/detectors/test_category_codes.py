"""The reference's joint sample keeps categorical features as codes (detectors.category_codes):
the domain classifier's result, the profile's JSON and a profile pickled before (object arrays)
are what they were."""
from __future__ import annotations

import json
import pickle

import numpy as np

from detectors.category_codes import CategoryCodes
from detectors.domain_classifier import DomainClassifier
from detectors.profile import ReferenceProfile, to_column


def _columns(rng, n, shift=0.0):
    return {"x": rng.normal(shift, size=n).tolist(),
            "c": [None if v == "-" else v for v in rng.choice(["a", "b", "c", "-"], size=n).tolist()],
            "flag": [bool(v) for v in rng.random(n) < 0.3 + shift / 4],
            "k": rng.integers(0, 3, size=n).tolist()}


def _as_objects(profile: ReferenceProfile) -> ReferenceProfile:
    """The profile as main built it: categorical joint-sample columns as object arrays."""
    old = pickle.loads(pickle.dumps(profile))
    old.joint_sample = {name: column.to_array() if isinstance(column, CategoryCodes) else column
                        for name, column in old.joint_sample.items()}
    return old


def test_joint_sample_codes_give_the_domain_classifier_result_and_json_of_object_arrays():
    rng = np.random.default_rng(3)
    columns = _columns(rng, 1500)
    profile = ReferenceProfile.from_columns(columns, reference_id="r", joint_sample_size=800)
    joint = profile.joint_sample
    assert isinstance(joint["c"], CategoryCodes) and joint["c"].codes.dtype == np.int16
    assert isinstance(joint["flag"], CategoryCodes) and joint["x"].dtype == np.float64
    rows = np.random.default_rng(0).permutation(1500)[:800]
    rows.sort()
    assert joint["c"].tolist() == to_column(columns["c"], "categorical")[rows].tolist()
    assert joint["flag"].tolist() == to_column(columns["flag"], "boolean")[rows].tolist()
    old = _as_objects(profile)
    for shift in (0.0, 0.8):
        window = _columns(rng, 600, shift)
        got = DomainClassifier(max_rows=400).test(profile, window).to_dict()
        want = DomainClassifier(max_rows=400).test(old, window).to_dict()
        assert got == want
    assert got["drifted"]
    assert json.dumps(profile.to_dict()) == json.dumps(old.to_dict())
    again = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert {k: v.tolist() for k, v in again.joint_sample.items()} == {k: v.tolist() for k, v in joint.items()}
    assert isinstance(again.joint_sample["c"], CategoryCodes)


def test_many_categories_take_int32_codes():
    values = np.array([f"v{i}" for i in range(40_000)] + [None], dtype=object)
    column = CategoryCodes.of(values)
    assert column.codes.dtype == np.int32 and column.tolist() == values.tolist()
