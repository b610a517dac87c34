"""Labels folded per batch (detectors/label_batch.py) against the label-by-label path it skips.

Both paths run on the same streams (segments, mixed class spellings, a score, a concept drift
in the middle so the detector fires inside a batch and the performance checks of the
label-by-label path follow); the oracle is the same monitor with :func:`label_batch.quiet`
answering False, i.e. every label taken one by one as before. Everything the labels change
must end equal: counts, rolling and overall metrics, the error window, the segment counts,
the concept detector's state, the alerts and retrain requests emitted.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from detectors import label_batch
from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings


def _stream(seed: int, n: int, drift_at: int):
    """Predictions with a segment and a score; labels agree with the predictions 85 % of the
    time before ``drift_at`` and 55 % after (the concept detector fires)."""
    rng = np.random.default_rng(seed)
    predictions, labels = [], []
    for i in range(n):
        x = rng.normal(size=3)
        score = float(1 / (1 + np.exp(-x[0])))
        predicted = score >= 0.5
        agree = rng.random() < (0.85 if i < drift_at else 0.55)
        label = predicted if agree else not predicted
        prediction = [bool(predicted), int(predicted), float(predicted)][i % 3]   # spellings producers mix
        predictions.append({"prediction_id": f"p{i}", "model": "m", "model_version": "1", "timestamp": 1000.0 + i,
                            "features": {"a": float(x[1]), "b": ["x", "y", "z"][int(rng.integers(3))],
                                         "c": float(x[2])},
                            "prediction": prediction, "score": score,
                            "segment": {"region": ["eu", "us"][int(rng.integers(2))]} if i % 7 else None,
                            "latency_ms": None})
        labels.append({"prediction_id": f"p{i}", "model": "m", "label": [bool(label), int(label)][i % 2],
                       "timestamp": 1001.0 + i})
    return predictions, labels


def _run(seed: int, batch: int, monkeypatch=None) -> tuple[ModelMonitor, list]:
    if monkeypatch is not None:
        monkeypatch.setattr(label_batch, "quiet", lambda *args: False)
    settings = ModelSettings(reference_size=600, window_size=400, performance_window=300,
                             cbpe_reference_labels=500, segment_min_size=50)
    monitor = ModelMonitor("m", settings)
    predictions, labels = _stream(seed, 6000, drift_at=3500)
    emitted = []
    for k in range(0, len(predictions), batch):
        emitted += monitor.add_predictions(predictions[k:k + batch], offset=k, partition=0)
        emitted += monitor.add_labels(labels[k:k + batch])
    if monkeypatch is not None:
        monkeypatch.undo()
    return monitor, emitted


def _state(monitor: ModelMonitor) -> dict:
    version = monitor.versions["1"]
    return {"counts": dict(version.counts), "rolling": version.rolling_metrics(),
            "errors": list(version.recent_errors), "segments": version.segments._labels,
            "label_clock": list(version.segments._clock()),
            "concept": pickle.dumps(version.concept.river_detector), "suspect": version._suspect_left,
            "baseline": version.baseline, "windows": version.window_index}


@pytest.mark.parametrize("seed,batch", [(0, 500), (1, 137), (2, 1000)])
def test_labels_folded_per_batch_leave_what_label_by_label_leaves(seed, batch, monkeypatch):
    fast, fast_out = _run(seed, batch)
    slow, slow_out = _run(seed, batch, monkeypatch)
    assert _state(fast) == _state(slow)
    assert _without_clock(fast_out) == _without_clock(slow_out)
    kinds = {record.get("kind") for _, record in slow_out}
    assert "performance" in kinds, kinds   # the concept detector fired and its check alerted


def _without_clock(emitted: list) -> list:
    """The records emitted, without their wall-clock times."""
    return [(topic, {k: v for k, v in record.items() if k not in ("created_at", "requested_at")}) for topic, record in emitted]


@pytest.mark.parametrize("name", ["adwin", "page_hinkley", "ddm", "fhddm"])
def test_update_until_drift_stops_where_update_by_update_fires(name):
    from detectors.concept import make_concept_detector

    rng = np.random.default_rng(3)
    stream = np.concatenate([rng.random(800) < 0.1, rng.random(800) < 0.6]).astype(float).tolist()
    one_by_one, batched = make_concept_detector(name), make_concept_detector(name)
    fired = []
    for i, x in enumerate(stream):
        one_by_one.update(x)
        if one_by_one.drift_detected:
            fired.append(i)
    got, start = [], 0
    while start < len(stream):
        index = batched.update_until_drift(stream[start:start + 300])
        if index is None:
            start += 300
        else:
            got.append(start + index)
            start += index + 1
    assert fired and got == fired
    assert pickle.dumps(batched.river_detector) == pickle.dumps(one_by_one.river_detector)


def test_json_safe_of_an_array_is_json_safe_of_its_elements():
    from detectors.base import json_safe

    for array in (np.array([0.1, 2.5, -3.0]), np.array([1.0, np.nan, np.inf]), np.array([1, 2], dtype=np.int32),
                  np.array([True, False]), np.empty(0)):
        got, want = json_safe(array), [json_safe(v) for v in array.tolist()]
        assert got == want and [type(v) for v in got] == [type(v) for v in want]


def test_segment_rows_are_segment_of_every_row():
    from detectors.columns import PredictionColumns

    predictions, _ = _stream(4, 300, drift_at=300)
    for i, event in enumerate(predictions):   # one attribute, two, none
        if i % 5 == 0:
            event["segment"] = {"region": "eu", "plan": ["a", "b"][i % 2]}
        elif i % 11 == 0:
            event["segment"] = {"plan": "c"}
    for events in (predictions, [dict(e, segment=None) for e in predictions[:50]], predictions[1:4]):
        batch = PredictionColumns.from_events(events)
        assert batch.segment_rows() == [batch.segment_of(i) for i in range(len(batch))]


def test_segment_counts_of_a_batch_are_those_of_row_by_row_counts():
    from detectors.fairness import SegmentStats
    from detectors.monitor import _as_class

    rng = np.random.default_rng(5)
    segments = [None if i % 9 == 0 else {"region": ["eu", "us"][i % 2], **({"plan": "a"} if i % 4 else {})}
                for i in range(500)]
    predictions = [[True, False, 1, 0, 1.0, 0.0, "yes", "b"][int(k)] for k in rng.integers(0, 8, size=500)]
    labels = [[True, False, 1, 0.0][int(k)] for k in rng.integers(0, 4, size=500)]
    batched, one_by_one = SegmentStats(), SegmentStats()
    batched.add_predictions(segments, predictions, _as_class)
    batched.add_labels(segments, [_as_class(v) for v in labels], [_as_class(v) for v in predictions])
    for segment, prediction, label in zip(segments, predictions, labels):
        if segment:
            one_by_one.add_prediction(segment, _as_class(prediction))
            one_by_one.add_label(segment, _as_class(label), _as_class(prediction))
    assert batched._predictions == one_by_one._predictions
    assert batched._labels == one_by_one._labels


def test_boolean_columns_of_bools_convert_as_as_boolean_does():
    from detectors.profile import to_column
    from detectors.values import as_boolean

    for values in ([True, False, None, True], [], [None], [True, 1, "no", 0.0, None]):
        assert to_column(values, "boolean").tolist() == [as_boolean(v) for v in values]


def test_metrics_of_bool_classes_equal_those_of_the_same_classes_spelled_otherwise():
    from detectors.label_metrics import ClassificationMetrics

    rng = np.random.default_rng(8)
    y_true, y_pred = (rng.random(700) < 0.4).tolist(), (rng.random(700) < 0.5).tolist()
    scores = rng.random(700).tolist()
    as_bools, mixed = ClassificationMetrics(window=250), ClassificationMetrics(window=250)
    as_bools.update(y_true, y_pred, scores)
    # the element-wise path: the same classes, one of them a numpy bool (not a Python bool)
    mixed.update(y_true[:1] + y_true[1:], [np.bool_(y_pred[0])] + y_pred[1:], scores)
    for name in ("accuracy", "f1", "roc_auc", "log_loss"):
        assert as_bools.overall[name].get() == mixed.overall[name].get(), name
    for name in as_bools.rolling:
        assert as_bools.rolling[name].get() == mixed.rolling[name].get(), name
