"""``PredictionColumns.to_events`` (the row-by-row path's events), which reads each column by index, gives
exactly the events of the conversion it replaced (one list per column first: kept here as the oracle)."""
import math

import numpy as np
import pytest

from detectors.columns import PredictionColumns


def row_events(batch: PredictionColumns, keep_missing: bool = False) -> list[dict]:
    return batch.to_events(keep_missing)


def _oracle_to_events(batch: PredictionColumns, keep_missing: bool = False) -> list[dict]:
    """The conversion before: a list per feature column, then one dict per event."""
    columns = {name: batch.feature_values(name) for name in batch.features}
    scores, latencies = batch.score.tolist(), batch.latency_ms.tolist()
    overflow = batch.overflow
    extra = dict.fromkeys(batch.overflow_names) if overflow is not None and keep_missing else {}
    events = []
    for i, pid in enumerate(batch.ids):
        features = {name: values[i] for name, values in columns.items() if keep_missing or values[i] is not None}
        if overflow is not None:
            features.update({**extra, **overflow[i]} if keep_missing else
                            {name: value for name, value in overflow[i].items() if value is not None})
        events.append({
            "prediction_id": pid, "model": batch.model, "model_version": batch.model_version[i],
            "timestamp": float(batch.ts[i]), "features": features, "prediction": batch.prediction[i],
            "score": None if scores[i] != scores[i] else scores[i], "segment": batch.segment_of(i),
            "latency_ms": None if latencies[i] != latencies[i] else latencies[i],
            "kpis": batch.kpis_of(i), "invalid_kpis": list(batch.invalid_kpis[i]),
        })
    return events


def _events(rng, n):
    out = []
    for i in range(n):
        features = {"x": float(rng.normal()), "k": int(rng.integers(0, 5)), "c": str(rng.choice(["a", "b"])),
                    "flag": bool(rng.random() < 0.5), "mixed": ("u" if i % 2 else 1.5)}
        for name in list(features):
            if rng.random() < 0.3:
                del features[name]   # missing in this row
        out.append({"prediction_id": f"p{i}", "model": "m", "model_version": str(i % 2), "timestamp": 10.0 + i,
                    "features": features, "prediction": bool(rng.random() < 0.5),
                    "score": None if rng.random() < 0.2 else float(rng.random()),
                    "segment": None if rng.random() < 0.3 else {"region": "eu", **({"tier": "t"} if i % 3 else {})},
                    "latency_ms": None if i % 2 else 2.5, "kpis": {"revenue": 1.0} if i % 4 == 0 else {},
                    "invalid_kpis": ["bad"] if i % 5 == 0 else []})
    return out


@pytest.mark.parametrize("n", [1, 2, 7, 30])
@pytest.mark.parametrize("keep_missing", [False, True])
def test_row_events_equal_to_events(n, keep_missing):
    rng = np.random.default_rng(n)
    batch = PredictionColumns.from_events(_events(rng, n))
    expected, found = _oracle_to_events(batch, keep_missing), row_events(batch, keep_missing)
    assert found == expected
    for a, b in zip(found, expected):   # same key order and the same Python types (floats, not numpy scalars)
        assert list(a["features"]) == list(b["features"])
        assert [type(v) for v in a["features"].values()] == [type(v) for v in b["features"].values()]
        assert type(a["timestamp"]) is float and type(a["score"]) is type(b["score"])


def test_row_events_with_overflow_names():
    rng = np.random.default_rng(3)
    batch = PredictionColumns.from_events(_events(rng, 5), max_names=2)
    assert batch.overflow is not None
    assert row_events(batch, True) == _oracle_to_events(batch, True)
    assert row_events(batch, False) == _oracle_to_events(batch, False)


def test_row_events_nan_free_numeric():
    batch = PredictionColumns.from_events(_events(np.random.default_rng(0), 10))
    for event in row_events(batch):
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in event["features"].values())
