"""Batches of validated events as columns: what the monitor core consumes.

A micro-batch of predictions for one model travels as one :class:`PredictionColumns`
(a list or an array per field, not a dict per event); labels as :class:`LabelColumns`.
The ingest stage builds them straight from decoded messages; :meth:`PredictionColumns.from_events`
builds them from today's validated dicts (:func:`streams.records.validate_prediction`), and
:meth:`PredictionColumns.to_events` goes back, for tests and for the row-by-row oracle.

Conventions (stable: fields are added, never renamed):

* ``ts``, ``score``, ``latency_ms``: float64 arrays, NaN where the event had none
  (validated values are finite, so NaN always means missing).
* ``model_version``: a list with one str per event (a batch may mix versions, e.g.
  shadow traffic).
* ``prediction``: a list of the raw outcomes (float, str or bool, as validated).
* ``features``: name -> column. A column whose present values are all numbers (int or
  float, not bool) is a float64 array with NaN for missing; any other column is a list of
  the raw values with None for missing (categorical, boolean or mixed types: the data-quality
  checks look at the raw types). A name absent from an event is missing in that row.
* ``segments``: attribute -> list of str or None, one per event (None: the event's segment
  did not carry that attribute; an event without a segment is None in every list).
* ``kpis``: KPI name -> float64 array, NaN where the event had no (valid) value for it
  (validated KPI values are finite); ``invalid_kpis``: one list per event of the KPI names
  the wire contract refused (``streams.records.kpi_values``), empty when none (issue 15).
  Labels carry both too.
* ``overflow``: None, or (a batch built with ``from_events(max_names=)`` that names more
  features than that) one dict per event of its values for the names past the first
  ``max_names`` (``overflow_names``, in the batch's order), numbers as floats where the name is numeric in the whole
  batch (as its column would give them). Such a batch names more features than a model version
  keeps, so the monitor takes it row by row and drops those names; dense columns for them would
  cost names x events (a producer inventing names per event: quadratic in the message size).
* ``sources``: ``[(source partition, count), ...]`` over consecutive runs of events, as
  :meth:`detectors.monitor.ModelMonitor.add_predictions` takes it; None: all from one source.

>>> events = [{"prediction_id": "a", "model": "m", "model_version": "1", "timestamp": 10.0,
...            "features": {"x": 1, "c": "u"}, "prediction": True, "score": 0.8,
...            "segment": {"region": "eu"}, "latency_ms": None},
...           {"prediction_id": "b", "model": "m", "model_version": "1", "timestamp": 11.0,
...            "features": {"x": 2.5}, "prediction": False, "score": None,
...            "segment": None, "latency_ms": 3.0}]
>>> batch = PredictionColumns.from_events(events)
>>> batch.features["x"].tolist(), batch.features["c"], batch.score.tolist()
([1.0, 2.5], ['u', None], [0.8, nan])
>>> batch.segments, len(batch)
({'region': ['eu', None]}, 2)
>>> batch.to_events()[1]["features"], batch.to_events()[0]["segment"]
({'x': 2.5}, {'region': 'eu'})
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["PredictionColumns", "LabelColumns", "feature_column", "kpi_columns", "kpis_of", "optional_floats"]


def optional_floats(values) -> np.ndarray:
    """float64 array of numbers or None (None -> NaN)."""
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def feature_column(values: list) -> np.ndarray | list:
    """One feature's values (None for missing) as the batch keeps them: float64 with NaN
    when every present value is an int or a float (not a bool), else the list itself."""
    for value in values:
        kind = type(value)
        if kind is not float and kind is not int and value is not None:
            return values
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


@dataclasses.dataclass(slots=True)
class PredictionColumns:
    """Validated predictions of one model, as columns (see the module docstring)."""

    model: str
    ids: list[str]
    ts: np.ndarray
    model_version: list[str]
    prediction: list
    score: np.ndarray
    features: dict[str, np.ndarray | list]
    segments: dict[str, list] = dataclasses.field(default_factory=dict)
    latency_ms: np.ndarray | None = None
    sources: list[tuple] | None = None
    kpis: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    invalid_kpis: list[list] | None = None
    overflow: list[dict] | None = None
    overflow_names: tuple = ()

    def __post_init__(self) -> None:
        if self.latency_ms is None:
            self.latency_ms = np.full(len(self.ids), np.nan)
        if self.invalid_kpis is None:
            self.invalid_kpis = [[] for _ in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_events(cls, events: list[dict], sources: list[tuple] | None = None,
                    max_names: int | None = None) -> "PredictionColumns":
        """Columns of validated prediction dicts (all of one model). ``max_names``: at most this
        many feature columns (the first names in the batch's order), the values of further names
        in ``overflow`` (see the module docstring), so the batch costs what its events carry."""
        n = len(events)
        names: dict[str, None] = {}
        attrs: dict[str, None] = {}
        for event in events:
            names.update(dict.fromkeys(event["features"]))
            if event["segment"]:
                attrs.update(dict.fromkeys(event["segment"]))
        overflow = None
        if max_names is not None and len(names) > max_names:
            ordered = list(names)
            names = dict.fromkeys(ordered[:max_names])
            overflow = _overflow(events, ordered[max_names:])
        features = {name: feature_column([e["features"].get(name) for e in events]) for name in names}
        segments = {attr: [(e["segment"] or {}).get(attr) for e in events] for attr in attrs}
        return cls(
            model=events[0]["model"] if n else "",
            ids=[e["prediction_id"] for e in events],
            ts=np.array([e["timestamp"] for e in events], dtype=np.float64),
            model_version=[e["model_version"] for e in events],
            prediction=[e["prediction"] for e in events],
            score=optional_floats([e["score"] for e in events]),
            features=features, segments=segments,
            latency_ms=optional_floats([e.get("latency_ms") for e in events]),
            sources=sources, kpis=kpi_columns(events),
            invalid_kpis=[list(e.get("invalid_kpis") or ()) for e in events], overflow=overflow,
            overflow_names=tuple(ordered[max_names:]) if overflow is not None else ())

    def feature_names(self) -> list[str]:
        """Every feature name of the batch in its order: the columns', then those in ``overflow``."""
        return [*self.features, *self.overflow_names]

    def feature_values(self, name: str) -> list:
        """One feature as Python values with None for missing (numbers come back as floats)."""
        column = self.features[name]
        if isinstance(column, np.ndarray):
            return [None if v != v else v for v in column.tolist()]
        return list(column)

    def segment_of(self, index: int) -> dict | None:
        """The segment of one event as validated events carry it (None when it had none)."""
        found = {attr: values[index] for attr, values in self.segments.items() if values[index] is not None}
        return found or None

    def segment_rows(self) -> list:
        """``[segment_of(i) for i in range(len(self))]``, one pass per attribute instead of a call per event.

        >>> batch = PredictionColumns.from_events([
        ...     {"prediction_id": "a", "model": "m", "model_version": "1", "timestamp": 1.0, "features": {},
        ...      "prediction": 1, "score": None, "segment": {"region": "eu"}, "latency_ms": None},
        ...     {"prediction_id": "b", "model": "m", "model_version": "1", "timestamp": 2.0, "features": {},
        ...      "prediction": 0, "score": None, "segment": None, "latency_ms": None}])
        >>> batch.segment_rows() == [batch.segment_of(0), batch.segment_of(1)] == [{"region": "eu"}, None]
        True
        """
        if not self.segments:
            return [None] * len(self)
        if len(self.segments) == 1:
            (attr, values), = self.segments.items()
            return [None if value is None else {attr: value} for value in values]
        attrs = list(self.segments)
        return [{attr: value for attr, value in zip(attrs, row) if value is not None} or None
                for row in zip(*self.segments.values())]

    def kpis_of(self, index: int) -> dict:
        """The valid KPIs of one event (name -> float), as validated events carry them."""
        return kpis_of(self.kpis, index)

    def to_events(self, keep_missing: bool = False) -> list[dict]:
        """Back to validated dicts: the row-by-row oracle's input. Numeric features come back
        as floats; a feature missing in a row is left out of its ``features`` (``keep_missing``:
        kept as None, so every event names every feature of the batch, in the batch's order)."""
        # each column read by index (NaN -> None per value), not turned into a list of its own:
        # for a batch of one event that would be one small list per feature
        columns = [(name, column.tolist(), True) if isinstance(column, np.ndarray) else (name, column, False)
                   for name, column in self.features.items()]
        scores = self.score.tolist()
        latencies, ts = self.latency_ms.tolist(), self.ts.tolist()
        overflow = self.overflow
        extra = dict.fromkeys(self.overflow_names) if overflow is not None and keep_missing else {}
        events = []
        for i, pid in enumerate(self.ids):
            features = {}
            for name, values, numeric in columns:
                value = values[i]
                if numeric and value != value:
                    value = None
                if value is not None or keep_missing:
                    features[name] = value
            if overflow is not None:
                features.update({**extra, **overflow[i]} if keep_missing else
                                {name: value for name, value in overflow[i].items() if value is not None})
            events.append({
                "prediction_id": pid, "model": self.model, "model_version": self.model_version[i],
                "timestamp": ts[i],
                "features": features,
                "prediction": self.prediction[i],
                "score": None if scores[i] != scores[i] else scores[i],
                "segment": self.segment_of(i),
                "latency_ms": None if latencies[i] != latencies[i] else latencies[i],
                "kpis": self.kpis_of(i), "invalid_kpis": list(self.invalid_kpis[i]),
            })
        return events

    def take(self, rows) -> "PredictionColumns":
        """The events at ``rows`` (an index array or a slice), in that order; ``sources`` dropped."""
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.intp)
        pick = rows.tolist()

        def sub(column):
            return column[rows] if isinstance(column, np.ndarray) else [column[i] for i in pick]

        return PredictionColumns(
            model=self.model, ids=sub(self.ids), ts=self.ts[rows], model_version=sub(self.model_version),
            prediction=sub(self.prediction), score=self.score[rows],
            features={name: sub(column) for name, column in self.features.items()},
            segments={attr: sub(values) for attr, values in self.segments.items()},
            latency_ms=self.latency_ms[rows], kpis={name: values[rows] for name, values in self.kpis.items()},
            invalid_kpis=sub(self.invalid_kpis), overflow=None if self.overflow is None else sub(self.overflow),
            overflow_names=self.overflow_names)


def _overflow(events: list[dict], names: list[str]) -> list[dict]:
    """Per event, its values for ``names`` (in that order; None kept), numbers as floats where a
    name's present values are all ints or floats (not bools) in the whole batch, as
    :func:`feature_column` gives them; costs the values the events carry, not names x events."""
    rank = {name: i for i, name in enumerate(names)}
    numeric = dict.fromkeys(names, True)
    rows = []
    for event in events:
        row = sorted(((rank[name], name, value) for name, value in event["features"].items() if name in rank))
        for _, name, value in row:
            kind = type(value)
            if kind is not float and kind is not int and value is not None:
                numeric[name] = False
        rows.append(row)
    return [{name: float(value) if value is not None and numeric[name] else value for _, name, value in row}
            for row in rows]


@dataclasses.dataclass(slots=True)
class LabelColumns:
    """Validated labels of one model, as columns: ``label`` holds the raw outcomes
    (float, str or bool), ``ts`` float64 label times.

    >>> batch = LabelColumns.from_events([{"prediction_id": "a", "model": "m", "label": True, "timestamp": 5.0}])
    >>> batch.ids, batch.label, batch.ts.tolist(), batch.to_events()[0]["label"]
    (['a'], [True], [5.0], True)
    """

    model: str
    ids: list[str]
    label: list
    ts: np.ndarray
    kpis: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    invalid_kpis: list[list] | None = None

    def __post_init__(self) -> None:
        if self.invalid_kpis is None:
            self.invalid_kpis = [[] for _ in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_events(cls, events: list[dict]) -> "LabelColumns":
        return cls(model=events[0]["model"] if events else "", ids=[e["prediction_id"] for e in events],
                   label=[e["label"] for e in events],
                   ts=np.array([e["timestamp"] for e in events], dtype=np.float64),
                   kpis=kpi_columns(events), invalid_kpis=[list(e.get("invalid_kpis") or ()) for e in events])

    def kpis_of(self, index: int) -> dict:
        return kpis_of(self.kpis, index)

    def to_events(self) -> list[dict]:
        return [{"prediction_id": pid, "model": self.model, "label": label, "timestamp": ts,
                 "kpis": self.kpis_of(i), "invalid_kpis": list(self.invalid_kpis[i])}
                for i, (pid, label, ts) in enumerate(zip(self.ids, self.label, self.ts.tolist()))]


def kpi_columns(events: list[dict]) -> dict[str, np.ndarray]:
    """KPI name -> float64 column (NaN: the event had no valid value for it), names in the
    order they first appear."""
    names: dict[str, None] = {}
    for event in events:
        if event.get("kpis"):
            names.update(dict.fromkeys(event["kpis"]))
    return {name: optional_floats([(e.get("kpis") or {}).get(name) for e in events]) for name in names}


def kpis_of(columns: dict[str, np.ndarray], index: int) -> dict:
    """One event's valid KPIs from KPI columns."""
    found = {}
    for name, values in columns.items():
        value = float(values[index])
        if value == value:
            found[name] = value
    return found
