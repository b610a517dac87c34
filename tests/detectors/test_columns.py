"""PredictionColumns / LabelColumns: built from validated events and back, value for value."""
import math

import numpy as np
import orjson

from detectors.columns import LabelColumns, PredictionColumns
from streams.records import validate_label, validate_prediction


def _events(n=50, seed=3):
    rng = np.random.default_rng(seed)
    raw = []
    for i in range(n):
        features = {"x": float(rng.normal()), "k": int(rng.integers(0, 5)), "c": str(rng.choice(["a", "b"])),
                    "flag": bool(rng.integers(0, 2))}
        if i % 7 == 0:
            features["x"] = None
        if i % 11 == 0:
            del features["c"]
        if i % 13 == 0:
            features["mixed"] = "text" if i % 2 else 1.5
        raw.append({"prediction_id": f"p{i}", "model": "m", "model_version": "2" if i % 5 == 0 else "1",
                    "timestamp": 1000.0 + i, "features": features, "prediction": bool(i % 2),
                    "score": None if i % 9 == 0 else float(rng.random()),
                    "segment": {"region": "eu"} if i % 3 == 0 else ({"tier": "gold"} if i % 4 == 0 else None),
                    "latency_ms": float(i) if i % 2 else None})
    return [validate_prediction(orjson.loads(orjson.dumps(r)), 0.0) for r in raw]


def test_prediction_columns_round_trip():
    events = _events()
    batch = PredictionColumns.from_events(events, sources=[(0, 50)])
    assert len(batch) == 50 and batch.sources == [(0, 50)]
    assert batch.features["x"].dtype == np.float64 and math.isnan(batch.features["x"][0])
    assert batch.features["k"].dtype == np.float64          # ints are numbers
    assert isinstance(batch.features["flag"], list)         # bools stay raw (boolean/categorical typing)
    assert isinstance(batch.features["mixed"], list)
    assert batch.segments["region"][0] == "eu" and batch.segments["tier"][0] is None
    back = batch.to_events()
    for original, event in zip(events, back):
        expected = {k: (float(v) if type(v) is int else v) for k, v in original["features"].items() if v is not None}
        assert event["features"] == expected
        assert {k: v for k, v in event.items() if k != "features"} == \
            {k: v for k, v in original.items() if k != "features"}


def test_take_keeps_rows_in_order():
    batch = PredictionColumns.from_events(_events())
    sub = batch.take([4, 1, 30])
    assert sub.ids == ["p4", "p1", "p30"]
    assert sub.to_events() == [batch.to_events()[i] for i in (4, 1, 30)]
    assert batch.take(slice(10, 12)).ids == ["p10", "p11"]


def test_label_columns_round_trip():
    events = [validate_label({"prediction_id": f"p{i}", "model": "m", "label": i % 2 == 0,
                              "timestamp": 5.0 + i}, 0.0) for i in range(5)]
    batch = LabelColumns.from_events(events)
    assert batch.to_events() == events and batch.ts.dtype == np.float64


def _invented_names(events, per_event=20):
    """The limits test's flood: every event carries names no other event has (numbers, a string,
    a bool, a missing value), besides the real features."""
    out = []
    for i, e in enumerate(events):
        extra = {f"x{i}-{j}": (1 if j % 4 == 0 else 2.5 if j % 4 == 1 else "s" if j % 4 == 2 else None)
                 for j in range(per_event)}
        extra[f"x{i}-flag"] = bool(i % 2)
        out.append({**e, "features": {**extra, **e["features"]} if i % 2 else {**e["features"], **extra}})
    return out


def test_max_names_keeps_the_batch_value_for_value_without_a_column_per_invented_name():
    events = _invented_names(_events())
    dense = PredictionColumns.from_events(events)
    capped = PredictionColumns.from_events(events, max_names=6)
    assert len(dense.features) > 1000 and len(capped.features) == 6 and dense.overflow is None
    assert capped.feature_names() == list(dense.features)
    for keep_missing in (False, True):
        assert capped.to_events(keep_missing) == dense.to_events(keep_missing)
    rows = [4, 1, 30, 31]
    assert capped.take(rows).to_events() == dense.take(rows).to_events()
    assert capped.take(rows).feature_names() == dense.take(rows).feature_names()
    # ints of a name whose values are all numbers come back as floats, as from a float64 column
    assert [type(v) for v in capped.to_events()[0]["features"].values()] == \
        [type(v) for v in dense.to_events()[0]["features"].values()]


def test_max_names_is_a_no_op_under_the_cap():
    events = _events()
    batch = PredictionColumns.from_events(events, max_names=len(PredictionColumns.from_events(events).features))
    assert batch.overflow is None and batch.to_events() == PredictionColumns.from_events(events).to_events()
