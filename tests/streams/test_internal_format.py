"""Predictions as columns on the internal topic give exactly what the event dicts gave.

The oracle is the path the columns replaced: the internal message as a list of event dicts,
decoded by orjson and turned into columns by ``PredictionColumns.from_events``. Every column of
the resulting batch, and everything a monitor emits from it, must be the same.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pytest

from detectors.columns import LabelColumns, PredictionColumns
from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings
from streams.ingest import bodies
from streams.internal_format import (decode_label_columns, decode_prediction_columns, label_columns,
                                     prediction_columns, prediction_events)
from streams.records import validate_label, validate_prediction


def events(n: int, seed: int = 0, ragged: bool = False, shift_at: int | None = None) -> list[dict]:
    """Validated predictions: correlated numeric features, categories, bools, missing values and
    nulls, segments on some events, KPIs and latencies on some; ``ragged``: events name different
    features (absent, extra, reordered)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        z = rng.normal(size=2)
        a = z[0] + (1.0 if shift_at is not None and i >= shift_at else 0.0)
        features = {"a": float(a), "b": float(0.6 * z[0] + 0.8 * z[1]), "c": str(rng.choice(["u", "v", "w"])),
                    "n": int(rng.integers(0, 5)), "flag": bool(rng.random() < 0.3),
                    "maybe": None if rng.random() < 0.2 else float(rng.random())}
        if ragged:
            if i % 3 == 0:
                del features["b"]
            if i % 5 == 0:
                features["extra"] = "x" if i % 10 else 1.5
            if i % 7 == 0:
                features = dict(reversed(list(features.items())))
        event = {"prediction_id": f"p{i}", "model": "m", "model_version": "2" if i % 4 == 0 else "1",
                 "timestamp": 1.0e9 + i, "features": features,
                 "prediction": bool(z[1] > 0) if i % 9 else "yes",
                 "score": None if i % 11 == 0 else float(1 / (1 + np.exp(-z[1])))}
        if i % 2:
            event["segment"] = {"region": str(rng.choice(["eu", "us"]))} | ({"plan": "pro"} if i % 6 == 1 else {})
        if i % 3 == 1:
            event["latency_ms"] = float(rng.gamma(2.0, 10.0))
        if i % 4 == 1:
            event["kpis"] = {"revenue": float(rng.random())} | ({"clicks": 2} if i % 8 == 1 else {})
        out.append(validate_prediction(event, 1.0e9))
    return out


def _equal(left, right) -> bool:
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        return (type(left) is type(right) and left.dtype == right.dtype
                and np.array_equal(left, right, equal_nan=True))
    if isinstance(left, dict):
        return (type(right) is dict and list(left) == list(right)
                and all(_equal(left[k], right[k]) for k in left))
    if isinstance(left, list):
        return (type(right) is list and len(left) == len(right)
                and all(_equal(a, b) for a, b in zip(left, right)))
    return type(left) is type(right) and left == right


def assert_same_batch(given: PredictionColumns, expected: PredictionColumns) -> None:
    for field in dataclasses.fields(PredictionColumns):
        assert _equal(getattr(given, field.name), getattr(expected, field.name)), field.name


def through_the_wire(items: list[dict], **kwargs) -> PredictionColumns:
    (body,) = bodies("p", items, [[0, 7, 0, len(items)]], 1 << 24, columns=True)
    message = orjson.loads(body)
    assert set(message) == {"pc", "src"}
    return decode_prediction_columns(message["pc"], **kwargs)


def the_old_way(items: list[dict], **kwargs) -> PredictionColumns:
    (body,) = bodies("p", items, [[0, 7, 0, len(items)]], 1 << 24, columns=False)
    return PredictionColumns.from_events(orjson.loads(body)["p"], **kwargs)


@pytest.mark.parametrize("ragged", [False, True], ids=["same-features", "ragged"])
@pytest.mark.parametrize("n", [1, 3, 500])
def test_the_columns_give_the_batch_the_event_dicts_gave(ragged, n):
    items = events(n, seed=n, ragged=ragged)
    assert_same_batch(through_the_wire(items, sources=[(0, n)]), the_old_way(items, sources=[(0, n)]))


@pytest.mark.parametrize("ragged", [False, True], ids=["same-features", "ragged"])
def test_a_subset_of_rows_and_a_message_past_max_features_give_what_from_events_gives(ragged):
    items = events(60, seed=3, ragged=ragged)
    rows = [i for i in range(60) if i % 4 != 2]
    message = orjson.loads(bodies("p", items, [[0, 7, 0, 60]], 1 << 24, columns=True)[0])["pc"]
    kept = [orjson.loads(orjson.dumps(items[i])) for i in rows]
    assert_same_batch(decode_prediction_columns(message, [(0, len(rows))], rows),
                      PredictionColumns.from_events(kept, [(0, len(rows))]))
    # more names than max_features: the overflow columns as from_events builds them
    capped = decode_prediction_columns(message, [(0, len(rows))], rows, max_names=3)
    expected = PredictionColumns.from_events(kept, [(0, len(rows))], max_names=3)
    assert capped.overflow is not None
    assert list(capped.features) == list(expected.features) and capped.overflow_names == expected.overflow_names
    for i in range(len(rows)):
        assert ({k: v for k, v in capped.overflow[i].items() if v is not None}
                == {k: v for k, v in expected.overflow[i].items() if v is not None})


@pytest.mark.parametrize("n", [1, 300])
def test_label_columns_give_the_batch_the_label_dicts_gave(n):
    rng = np.random.default_rng(n)
    labels = [validate_label({"prediction_id": f"p{i}", "model": "m", "timestamp": 1.0e9 + i,
                              "label": [True, 0.25, "churned", 3][i % 4],
                              **({"kpis": {"revenue": float(rng.random())}} if i % 3 == 0 else {})}, 1.0e9)
              for i in range(n)]
    (body,) = bodies("l", labels, [[1, 4, 0, n]], 1 << 24, columns=True)
    message = orjson.loads(body)
    assert set(message) == {"lc", "src"}
    expected = LabelColumns.from_events(orjson.loads(orjson.dumps(labels)))
    given = decode_label_columns(message["lc"])
    for field in dataclasses.fields(LabelColumns):
        assert _equal(getattr(given, field.name), getattr(expected, field.name)), field.name
    rows = list(range(0, n, 2))
    subset = decode_label_columns(message["lc"], rows)
    expected = LabelColumns.from_events([orjson.loads(orjson.dumps(labels[i])) for i in rows])
    for field in dataclasses.fields(LabelColumns):
        assert _equal(getattr(subset, field.name), getattr(expected, field.name)), field.name


def test_events_of_another_model_in_one_message_travel_as_event_dicts():
    items = events(4)
    items[2] = {**items[2], "model": "other"}
    assert prediction_columns(items) is None
    (body,) = bodies("p", items, [[0, 7, 0, 4]], 1 << 24, columns=True)
    assert orjson.loads(body)["p"] == orjson.loads(orjson.dumps(items))


def test_the_audit_reads_back_the_events_it_would_have_read():
    items = events(40, seed=5)     # every event names the same features: read back exactly
    message = orjson.loads(bodies("p", items, [[0, 7, 0, 40]], 1 << 24, columns=True)[0])["pc"]
    assert prediction_events(message) == orjson.loads(orjson.dumps(items))


def test_a_split_message_keeps_its_source_positions_and_events():
    items = events(200, seed=6)
    split = bodies("p", items, [[0, 7, 0, 120], [1, 3, 0, 80]], 10_000, columns=True)
    assert len(split) > 2
    messages = [orjson.loads(b) for b in split]
    assert [i for m in messages for i in m["pc"]["id"]] == [e["prediction_id"] for e in items]
    runs = [r for m in messages for r in m["src"]]
    assert sum(r[3] for r in runs) == 200 and all(m["pc"]["n"] == sum(r[3] for r in m["src"]) for m in messages)


@pytest.mark.parametrize("per_message", [1, 7, 250])
def test_a_monitor_fed_columns_emits_what_it_emitted_from_event_dicts(per_message):
    """The same stream, drift included, through both forms of the internal message."""
    settings = ModelSettings(reference_size=300, window_size=200, calibrate_ert_windows=0)
    items = events(1500, seed=7, shift_at=900)
    old, new = ModelMonitor("m", settings), ModelMonitor("m", settings)
    emitted_old, emitted_new = [], []
    for offset, start in enumerate(range(0, len(items), per_message)):
        chunk = items[start:start + per_message]
        runs = [[0, offset, 0, len(chunk)]]
        (body_old,) = bodies("p", chunk, runs, 1 << 24, columns=False)
        (body_new,) = bodies("p", chunk, runs, 1 << 24, columns=True)
        emitted_old += old.add_predictions(orjson.loads(body_old)["p"], offset=offset, partition=0,
                                           sources=[(0, len(chunk))])
        batch = decode_prediction_columns(orjson.loads(body_new)["pc"], [(0, len(chunk))],
                                          max_names=settings.max_features)
        emitted_new += new.add_columns(batch, offset=offset, partition=0)
    assert any(kind == "alert" and record["kind"] == "input_drift" for kind, record in emitted_old)
    assert _without_clock(emitted_new) == _without_clock(emitted_old)
    assert _without_clock(new.status()) == _without_clock(old.status())


WALL_CLOCK = {"created_at", "requested_at"}   # when the record was made, not what it says


def _without_clock(tree):
    if isinstance(tree, dict):
        return {k: _without_clock(v) for k, v in tree.items() if k not in WALL_CLOCK}
    if isinstance(tree, (list, tuple)):
        return [_without_clock(v) for v in tree]
    return tree
