"""json_safe_tree (one orjson round trip) gives what json_safe gives, on any tree of the values
window summaries hold and on the summaries a monitor really writes."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from detectors.base import json_safe, json_safe_tree
from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings

scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=5), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True).map(np.float64),
    st.floats(width=32, allow_nan=True).map(np.float32),
    st.integers(min_value=-2**62, max_value=2**62).map(np.int64),
    st.booleans().map(np.bool_),
    st.lists(st.floats(allow_nan=True), max_size=4).map(lambda v: np.array(v, dtype=np.float64)),
)
keys = st.one_of(st.text(max_size=4), st.integers(-5, 5))
trees = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.lists(children, max_size=3).map(tuple),
    st.dictionaries(keys, children, max_size=4)), max_leaves=25)


def same(a, b) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True would hide a change)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@settings(max_examples=400, deadline=None)
@given(trees)
def test_json_safe_tree_is_json_safe(tree):
    assert same(json_safe_tree(tree), json_safe(tree))


def test_a_monitors_window_summaries_are_unchanged():
    rng = np.random.default_rng(3)
    monitor = ModelMonitor("m", ModelSettings(reference_size=1000, window_size=500, calibrate_ert_windows=0.0))
    events = []
    for i in range(3000):
        x = rng.normal(size=3)
        events.append({"prediction_id": f"p{i}", "model": "m", "model_version": "1", "timestamp": float(i),
                       "features": {"a": float(x[0]) if i % 13 else None, "b": int(x[1] * 10),
                                    "c": str(rng.choice(["u", "v", "w"])), "d": bool(x[2] > 0)},
                       "prediction": bool(x[0] > 0), "score": float(1 / (1 + np.exp(-x[0]))),
                       "segment": {"r": str(rng.choice(["e", "f"]))}, "latency_ms": None})
    for k in range(0, len(events), 250):
        monitor.add_predictions(events[k:k + 250])
    version = monitor.versions["1"]
    assert len(version.closed_windows) >= 3
    for summary in version.closed_windows:
        assert same(json_safe_tree(summary), json_safe(summary))
        assert summary["features"] and "histogram" in next(iter(summary["features"].values()))
