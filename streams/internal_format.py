"""Predictions and labels on the internal topic as columns: ingest writes them, the monitor stage reads them.

Ingest re-keys each batch's valid predictions by model; the monitor stage folds them into the
model's monitor, which takes columns (:class:`detectors.columns.PredictionColumns`). Sent as a
list of event dicts, every internal message was decoded into one dict per event and then
transposed back into columns: 15.6 µs per prediction on 1,000-event messages, against 3.7 µs
for the same events sent as columns (``python -m bench.decode_cost``). So a prediction message
is ``{"pc": columns, "src": runs}``:

``n``
    the number of events;
``m``
    the model (every event of a message has the same one);
``id``, ``v``, ``ts``, ``y``, ``s``, ``lat``
    per event: prediction id, model version, event time, prediction, score, latency (or None);
``f``
    feature name -> values (None: missing or null), names in the order they first appear;
``seg``
    segment attribute -> values (None: the event's segment lacks it), when any event has one;
``k``, ``ik``
    KPI name -> values, and each event's invalid KPIs, when any event has them.

A label message is ``{"lc": columns, "src": runs}``, with ``n``, ``m``, ``id``, ``y`` (the
outcome), ``ts``, and ``k``/``ik`` as above.

``src`` are the events' source positions, as with the older ``{"p": [event, ...]}`` and
``{"l": [event, ...]}`` messages
(:mod:`streams.positions`), which the monitor stage and ``driftline audit`` still read: a topic
written by an older ingest is folded in as before. ``internal_columns = false`` in the settings
makes ingest write the older form, for a rolling upgrade from a version that cannot read this one.

The columns give exactly the :class:`PredictionColumns` that
``PredictionColumns.from_events`` builds from the same events
(``tests/streams/test_internal_format.py``).
"""
from __future__ import annotations

from operator import itemgetter

import numpy as np

from detectors.columns import LabelColumns, PredictionColumns, feature_column, optional_floats

__all__ = ["COLUMNS", "LABEL_COLUMNS", "prediction_columns", "decode_prediction_columns", "prediction_events",
           "versions_of", "label_columns", "decode_label_columns"]

COLUMNS = "pc"         # the field of a columnar prediction message
LABEL_COLUMNS = "lc"   # ... and of a columnar label message


def _feature_columns(features: list[dict]) -> dict[str, list]:
    """Feature name -> values; one ``itemgetter`` call per event (in C) when every event names the
    same features, else one look-up per event and name."""
    if not features:
        return {}
    names = list(features[0])
    if names and all(len(f) == len(names) for f in features):
        if len(names) == 1:
            name = names[0]
            try:
                return {name: [f[name] for f in features]}
            except KeyError:
                pass
        else:
            try:
                rows = list(map(itemgetter(*names), features))
            except KeyError:   # another name in some event: the general path
                pass
            else:
                return dict(zip(names, map(list, zip(*rows))))
    elif not names and all(not f for f in features):
        return {}
    order: dict[str, None] = {}
    for f in features:
        order.update(dict.fromkeys(f))
    return {name: [f.get(name) for f in features] for name in order}


def prediction_columns(events: list[dict]) -> dict | None:
    """The columns of one model's validated prediction dicts (``records.decode_predictions``), or
    None when they do not share one model (then they travel as events).

    >>> event = {"prediction_id": "a", "model": "m", "model_version": "1", "timestamp": 5.0,
    ...          "features": {"x": 1.5}, "prediction": 1, "score": 0.8, "segment": None,
    ...          "latency_ms": None, "kpis": {}, "invalid_kpis": []}
    >>> prediction_columns([event, {**event, "prediction_id": "b", "segment": {"region": "eu"}}])
    {'n': 2, 'm': 'm', 'id': ['a', 'b'], 'v': ['1', '1'], 'ts': [5.0, 5.0], 'y': [1, 1], 's': [0.8, 0.8], 'lat': [None, None], 'f': {'x': [1.5, 1.5]}, 'seg': {'region': [None, 'eu']}}
    """
    model = events[0]["model"]
    if any(e["model"] != model for e in events):
        return None
    columns = {"n": len(events), "m": model, "id": [e["prediction_id"] for e in events],
               "v": [e["model_version"] for e in events], "ts": [e["timestamp"] for e in events],
               "y": [e["prediction"] for e in events], "s": [e["score"] for e in events],
               "lat": [e.get("latency_ms") for e in events],
               "f": _feature_columns([e["features"] for e in events])}
    segments = [e["segment"] for e in events]
    if any(segments):
        attrs: dict[str, None] = {}
        for segment in segments:
            if segment:
                attrs.update(dict.fromkeys(segment))
        columns["seg"] = {attr: [(s or {}).get(attr) for s in segments] for attr in attrs}
    return _with_kpis(columns, events)


def _with_kpis(columns: dict, events: list[dict]) -> dict:
    """``columns`` with the events' KPIs (``k``) and invalid KPIs (``ik``), when any has them."""
    kpis = [e.get("kpis") for e in events]
    if any(kpis):
        columns["k"] = _feature_columns([k or {} for k in kpis])
    invalid = [e.get("invalid_kpis") for e in events]
    if any(invalid):
        columns["ik"] = [list(i or ()) for i in invalid]
    return columns


def _picked_kpis(columns: dict, pick, n: int) -> tuple[dict, list]:
    """The KPI columns and invalid KPIs of the ``n`` picked rows, as ``from_events`` builds them."""
    invalid = columns.get("ik")
    kpis = {name: optional_floats(pick(values)) for name, values in columns.get("k", {}).items()}
    return kpis, ([list(i) for i in pick(invalid)] if invalid is not None else [[] for _ in range(n)])


def label_columns(events: list[dict]) -> dict | None:
    """The columns of one model's validated label dicts, or None when they do not share one model.

    >>> label = {"prediction_id": "a", "model": "m", "label": True, "timestamp": 6.0, "kpis": {}, "invalid_kpis": []}
    >>> label_columns([label, {**label, "prediction_id": "b", "kpis": {"revenue": 2.5}}])
    {'n': 2, 'm': 'm', 'id': ['a', 'b'], 'y': [True, True], 'ts': [6.0, 6.0], 'k': {'revenue': [None, 2.5]}}
    """
    model = events[0]["model"]
    if any(e["model"] != model for e in events):
        return None
    return _with_kpis({"n": len(events), "m": model, "id": [e["prediction_id"] for e in events],
                       "y": [e["label"] for e in events], "ts": [e["timestamp"] for e in events]}, events)


def decode_label_columns(columns: dict, rows: list[int] | None = None) -> LabelColumns:
    """The :class:`LabelColumns` of a decoded ``lc`` message, of the labels at ``rows`` (all when None).

    >>> label = {"prediction_id": "a", "model": "m", "label": 0.5, "timestamp": 6.0, "kpis": {}, "invalid_kpis": []}
    >>> batch = decode_label_columns(label_columns([label]))
    >>> batch.ids, batch.label, batch.ts.tolist(), batch.kpis
    (['a'], [0.5], [6.0], {})
    """
    if rows is not None and len(rows) == columns["n"]:
        rows = None

    def pick(values: list) -> list:
        return values if rows is None else [values[i] for i in rows]

    ids = pick(columns["id"])
    kpis, invalid = _picked_kpis(columns, pick, len(ids))
    return LabelColumns(model=columns["m"], ids=ids, label=pick(columns["y"]),
                        ts=np.array(pick(columns["ts"]), dtype=np.float64), kpis=kpis, invalid_kpis=invalid)


def versions_of(columns: dict) -> set[str]:
    """The model versions a columnar message holds (a new one may need its stored reference)."""
    return set(columns["v"])


def decode_prediction_columns(columns: dict, sources: list | None = None, rows: list[int] | None = None,
                              max_names: int | None = None) -> PredictionColumns:
    """The :class:`PredictionColumns` of a decoded ``pc`` message, of the events at ``rows`` (all
    when None), with ``sources`` (see :func:`streams.positions.fresh`). ``max_names`` as
    ``PredictionColumns.from_events`` takes it: a message naming more features goes through it.

    >>> event = {"prediction_id": "a", "model": "m", "model_version": "1", "timestamp": 5.0,
    ...          "features": {"x": 1.5, "c": "k"}, "prediction": 1, "score": None, "segment": None,
    ...          "latency_ms": 3.0, "kpis": {}, "invalid_kpis": []}
    >>> batch = decode_prediction_columns(prediction_columns([event]))
    >>> batch.features, batch.score.tolist(), batch.latency_ms.tolist()
    ({'x': array([1.5]), 'c': ['k']}, [nan], [3.0])
    """
    if rows is not None and len(rows) == columns["n"]:
        rows = None
    if max_names is not None and len(columns["f"]) > max_names:
        events = prediction_events(columns)
        if rows is not None:
            events = [events[i] for i in rows]
        return PredictionColumns.from_events(events, sources, max_names=max_names)

    def pick(values: list) -> list:
        return values if rows is None else [values[i] for i in rows]

    ids = pick(columns["id"])
    kpis, invalid = _picked_kpis(columns, pick, len(ids))
    return PredictionColumns(
        model=columns["m"], ids=ids, ts=np.array(pick(columns["ts"]), dtype=np.float64),
        model_version=pick(columns["v"]), prediction=pick(columns["y"]), score=optional_floats(pick(columns["s"])),
        features={name: feature_column(pick(values)) for name, values in columns["f"].items()},
        segments={attr: pick(values) for attr, values in columns.get("seg", {}).items()},
        latency_ms=optional_floats(pick(columns["lat"])), sources=sources, kpis=kpis, invalid_kpis=invalid)


def prediction_events(columns: dict) -> list[dict]:
    """The prediction dicts of a ``pc`` message (``driftline audit`` lists them). They are those
    ``records.decode_predictions`` gave ingest, except that where the events of a message name
    different features, each event names all of them, None where it had none (the monitor reads
    a missing feature and a null one alike).

    >>> event = {"prediction_id": "a", "model": "m", "model_version": "1", "timestamp": 5.0,
    ...          "features": {"x": 1.5}, "prediction": 1, "score": 0.8, "segment": {"region": "eu"},
    ...          "latency_ms": None, "kpis": {}, "invalid_kpis": []}
    >>> prediction_events(prediction_columns([event])) == [event]
    True
    """
    n, features = columns["n"], columns["f"]
    segments, kpis, invalid = columns.get("seg", {}), columns.get("k", {}), columns.get("ik")
    events = []
    for i in range(n):
        segment = {attr: values[i] for attr, values in segments.items() if values[i] is not None}
        events.append({
            "prediction_id": columns["id"][i], "model": columns["m"], "model_version": columns["v"][i],
            "timestamp": columns["ts"][i], "features": {name: values[i] for name, values in features.items()},
            "prediction": columns["y"][i], "score": columns["s"][i], "segment": segment or None,
            "latency_ms": columns["lat"][i],
            "kpis": {name: values[i] for name, values in kpis.items() if values[i] is not None},
            "invalid_kpis": list(invalid[i]) if invalid is not None else []})
    return events
