"""Messages of one event (batches of 1) take their own paths: the join's ``_one_prediction`` and
``_one_label``, ``VersionMonitor.add_label`` (one label without the lists), the row-by-row path
giving its events' feature dicts to the window (``add_prediction(owned=True)``) instead of
copying them, and the model notices a closed window from the versions that took rows instead
of summing every version's window index.
Each is checked against the path it short-cuts, kept here as the oracle: the same mixed stream
(three versions with shadow traffic and redeliveries, segments, missing values, new feature
names past the cap, delayed and early labels, KPIs, latencies, ticks, several source
partitions) fed at batch sizes 1, 3 and 1000 gives the same alerts, window summaries, status
and checkpoint, also after a checkpoint restored half way."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from detectors.alerts import wire
from detectors.columns import LabelColumns, PredictionColumns
from detectors.join import LabelJoin
from detectors.monitor import ModelMonitor, VersionMonitor
from detectors.settings import ModelSettings
from tests.detectors.checkpoint_stream import OUTCOME_SETTINGS, SETTINGS, comparable, outcome_stream


class _BatchJoin(LabelJoin):
    """The join as it was: every message on the batch loops."""

    def predictions(self, batch):
        return self._batch_predictions(batch)

    def labels(self, batch):
        return self._batch_labels(batch)


class _BatchVersion(VersionMonitor):
    """A version as it was: the row-by-row path copies each event's features into its row, one
    label goes through the loop over lists of one."""

    def _add_rows(self, batch, offset, rows, labels, keep_missing=False):
        out: list = []
        by_row: dict = {}
        for row, label, clock, kpis, invalid in labels:
            by_row.setdefault(row, []).append((label, clock, kpis, invalid))
        for j, event in enumerate(batch.to_events(keep_missing)):
            out += self.add_prediction(event, None if offset is None else [offset, rows[j]])
            for label, clock, kpis, invalid in by_row.get(j, ()):
                out += self.add_label(event["prediction"], event["score"], label, clock, event["segment"],
                                      kpis, invalid)
        return out

    def add_label(self, prediction, score, label, ts, segment=None, kpis=None, invalid_kpis=None):
        return self._add_label_runs([prediction], [score], [label], ts, [segment], [kpis], [invalid_kpis])

    def add_labels(self, predictions, scores, labels, ts, segments=None, kpis=None, invalid_kpis=None):
        return self._add_label_runs(predictions, scores, labels, ts, segments, kpis, invalid_kpis)


class BatchPaths(ModelMonitor):
    """The monitor as it was: its join and versions on the batch paths, and a closed window
    noticed by the sum of every version's window index before and after the message."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.join = _BatchJoin(self.settings)

    def version(self, name):
        monitor = self.versions.get(name)
        if monitor is None:
            monitor = self.versions[name] = _BatchVersion(self.model, name, self.settings, self.config_version)
        return monitor

    def _windows_closed(self) -> int:
        return sum(v.open.index for v in self.versions.values())

    def add_columns(self, batch, offset=None, partition=None):
        out: list = []
        n = len(batch)
        if not n:
            return out
        windows_before = self._windows_closed()
        for name, (rows, labels) in self.join.predictions(batch).items():
            version = self.version(name)
            version.partition = partition
            out += version.add_columns(batch if len(rows) == n else batch.take(rows), offset, rows, labels)
        self.join.expire()
        if len(self.versions) > 1 and self._windows_closed() != windows_before:
            out += self._compare()
        return wire(out) if out else out


def _restored(monitor: ModelMonitor) -> ModelMonitor:
    """The monitor a checkpoint gives back, on the oracle's classes when it is the oracle."""
    restored = ModelMonitor.from_state(pickle.loads(pickle.dumps(monitor.to_state())))
    if isinstance(monitor, BatchPaths):
        oracle = BatchPaths(restored.model, restored.settings, restored.config_version)
        for name, version in restored.versions.items():
            version.__class__ = _BatchVersion
            oracle.versions[name] = version
        oracle.join = _BatchJoin.from_state(restored.join.to_state(), restored.settings)
        oracle.applied_offsets, oracle._last_comparison = restored.applied_offsets, restored._last_comparison
        return oracle
    return restored


def _traffic(seed: int = 5, n: int = 1000):
    # version "2" takes every other prediction, so two versions close windows (and are compared)
    predictions, labels = outcome_stream(0, n, seed, shift_from=n // 2, slow_from=2 * n // 3, challenger_every=2)
    extra = []
    for i, p in enumerate(predictions):
        if i % 13 == 0:
            p["features"].pop("c", None)                      # missing in this event
        if i % 29 == 0:
            p["features"]["x"] = None
        if i % 10 == 3:                                       # shadow traffic from version 3
            extra.append((i, {**p, "model_version": "3", "score": min(1.0, p["score"] + 0.1)}))
        if i % 97 == 0:
            p["score"] = 1.3                                  # out of range
        if i % 61 == 0:
            p["timestamp"] += 400.0                           # windows close by time too
        if i % 301 == 0:
            extra.append((i, dict(p)))                        # redelivery
        if i % 211 == 0:
            p["features"][f"new{i % 3}"] = "v"                # names past the cap in one setting
        if i % 7 == 0:
            p["segment"] = None if i % 2 else {"region": p["segment"]["region"], "tier": "t"}
        if i % 11 == 0:
            p["latency_ms"] = None
    for i, p in reversed(extra):
        predictions.insert(i + 1, p)
    np.random.default_rng(seed).shuffle(labels[:60])           # some labels before their predictions
    return predictions, labels


def _run(monitor, predictions, labels, batch: int, restore_at: int | None = None) -> dict:
    by_id = {label["prediction_id"]: label for label in labels}
    seen: set = set()
    record: dict = {"out": [], "summaries": []}
    for step, k in enumerate(range(0, len(predictions), batch)):
        chunk = predictions[k:k + batch]
        ids = [pid for pid in dict.fromkeys(p["prediction_id"] for p in chunk) if pid in by_id and pid not in seen]
        seen.update(ids)
        chunk_labels = LabelColumns.from_events([by_id[pid] for pid in ids]) if ids else None
        early = step % 5 == 2
        out = []
        if early and chunk_labels is not None:
            out += monitor.add_label_columns(chunk_labels)
        sources = [(step % 3, len(chunk))] if step % 4 == 0 else [(0, len(chunk))]
        columns = PredictionColumns.from_events(chunk, sources=sources, max_names=monitor.settings.max_features)
        out += monitor.add_columns(columns, k, step % 2)
        if not early and chunk_labels is not None:
            out += monitor.add_label_columns(chunk_labels)
        if step % 3 == 0:
            out += monitor.tick(chunk[-1]["timestamp"])
        record["out"].append(comparable(out))
        record["summaries"].append(monitor.window_summaries())
        if step == restore_at:
            monitor = _restored(monitor)
    record["status"] = _without_durations(monitor.status())
    record["checkpoint"] = pickle.dumps(_state(monitor))
    return record


def _without_durations(value):
    """Wall-clock fields (when an alert was made, how long a window's tests took) left out."""
    if isinstance(value, dict):
        return {k: _without_durations(v) for k, v in value.items()
                if k not in ("created_at", "requested_at", "window_test_seconds")}
    if isinstance(value, list):
        return [_without_durations(v) for v in value]
    return value


def _state(monitor: ModelMonitor) -> dict:
    state = monitor.to_state()
    return {**state, "versions": [_without_durations(version) for version in state["versions"]]}


SMALL = dict(window_size=100, reference_size=200, performance_window=100, cbpe_reference_labels=150,
             window_seconds=300.0,     # windows of a few hundred events: the stream closes several per version
             comparison_min_labelled=15)   # the shadow version "3" has few labels: comparisons are made
SETTINGS_CASES = {
    "outcomes": dict(OUTCOME_SETTINGS, **SMALL),
    "cap-retrain-ttl": dict(SETTINGS, **SMALL, max_features=5, retrain_max_interval=500.0,
                            label_ttl_seconds=20.0, max_pending_labels=40),
}


@pytest.mark.parametrize("batch", [1, 3, 1000])
@pytest.mark.parametrize("case", list(SETTINGS_CASES))
def test_single_event_paths_give_what_the_batch_paths_give(case, batch):
    predictions, labels = _traffic()
    settings = ModelSettings(**SETTINGS_CASES[case])
    got = _run(ModelMonitor("m", settings), predictions, labels, batch)
    want = _run(BatchPaths("m", settings), predictions, labels, batch)
    assert sum(map(len, got["out"])) > 5 and sum(map(len, got["summaries"])) >= 5   # the stream does raise
    for field in want:
        assert got[field] == want[field], field


@pytest.mark.parametrize("case", list(SETTINGS_CASES))
def test_single_event_paths_across_a_restored_checkpoint(case):
    predictions, labels = _traffic(seed=6, n=800)
    settings = ModelSettings(**SETTINGS_CASES[case])
    middle = len(predictions) // 2
    got = _run(ModelMonitor("m", settings), predictions, labels, 1, restore_at=middle)
    want = _run(BatchPaths("m", settings), predictions, labels, 1, restore_at=middle)
    for field in want:
        assert got[field] == want[field], field


def test_regression_labels_one_at_a_time():
    """A regression version, and labels that are not numbers (skipped), one event at a time."""
    predictions, labels = _traffic(seed=7, n=800)
    for p in predictions:
        p["prediction"], p["score"] = float(p["features"]["z"] or 0.0) * 2, None
    for i, label in enumerate(labels):
        label["label"] = "n/a" if i % 37 == 0 else float(i % 7)
    settings = ModelSettings(**dict(SETTINGS, **SMALL, task="regression"))
    got = _run(ModelMonitor("m", settings), predictions, labels, 1)
    want = _run(BatchPaths("m", settings), predictions, labels, 1)
    for field in want:
        assert got[field] == want[field], field
