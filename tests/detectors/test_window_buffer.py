"""The open window as typed columns (detectors.window_buffer.WindowBuffer) against the lists it
replaced (detectors.window.ColumnBuffer, converted at the window's close, kept as the oracle):
same converted columns, same raw values where the data-quality checks read them, same reports
of every check of the window, and the same alerts from a monitor."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from detectors.columns import feature_column
from detectors.domain_classifier import DomainClassifier
from detectors.histogram import histograms
from detectors.monitor import ModelMonitor
from detectors.outputs import PREDICTION, SCORE
from detectors.profile import ReferenceProfile, WindowColumn, to_column
from detectors.quality import DataQuality, type_mismatch_count
from detectors.segment_drift import SegmentGroup, segment_family
from detectors.settings import ModelSettings
from detectors.suite import WindowSettings, evaluate_window
from detectors.window import ColumnBuffer, OpenWindow
from detectors.window_buffer import WindowBuffer
from tests.detectors.checkpoint_stream import SETTINGS, comparable, stream


def _reference(seed: int = 1, n: int = 800) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    columns = {
        "x": [float(v) for v in rng.normal(size=n)],
        "k": [int(v) for v in rng.integers(0, 20, size=n)],
        "c": [str(v) for v in rng.choice(["a", "b", "c", "d"], size=n, p=[0.4, 0.3, 0.2, 0.1])],
        "b": [bool(v) for v in rng.random(n) < 0.3],
        "zip": [int(v) for v in rng.choice([10115, 20095, 80331], size=n)],
        PREDICTION: [int(v) for v in rng.random(n) < 0.5],
        SCORE: [float(v) for v in rng.random(n)],
    }
    segments = [{"region": str(v)} for v in rng.choice(["eu", "us"], size=n)]
    return ReferenceProfile.from_columns(columns, reference_id="mixed", joint_sample_size=300,
                                         segments=segments, segment_min_size=100)


def _odd(rng, usual, odd: list, rate: float):
    return odd[int(rng.integers(len(odd)))] if rng.random() < rate else usual


def _rows(seed: int, n: int) -> list[dict]:
    """Window rows with every irregularity the conversions handle: missing values, text and
    infinities in numeric features, bools and ints where numbers or text are expected, unseen
    categories, boolean spellings, a reference feature absent from the first rows, a new name
    appearing mid-window."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {
            "x": _odd(rng, float(rng.normal(0.3)), [None, "n/a", 3, True, math.inf, float("nan")], 0.08),
            "k": _odd(rng, int(rng.integers(0, 25)), [None, 2.0, "7", False], 0.05),
            "c": _odd(rng, str(rng.choice(["a", "b", "c", "d", "zz"])), [None, True, 1, 3, 3.0, "True", "yy"], 0.1),
            "b": _odd(rng, bool(rng.random() < 0.5), [None, "False", "TRUE", 1, 0, 0.0, "maybe", 2], 0.1),
            "zip": _odd(rng, int(rng.choice([10115, 20095, 80331, 99999])), [None, 10115.0, "20095", 0.5], 0.05),
            PREDICTION: int(rng.random() < 0.6),
            SCORE: _odd(rng, float(rng.random()), [None, 1.4], 0.03),
        }
        if i < 40:
            del row["zip"]                  # a reference feature the first rows lack
        if i >= 120:
            row["late"] = _odd(rng, float(i), ["x"], 0.1)   # a name the reference lacks, from row 120
        rows.append(row)
    return rows


def _as_batch(rows: list[dict]) -> dict:
    """Rows as the columnar path carries them (a name no row has is left out): float64 arrays
    where every present value is a number, else the list."""
    names: dict = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {name: feature_column([row.get(name) for row in rows]) for name in names}


def _fill(buffers, rows: list[dict], reference, pattern: str) -> None:
    """The same rows into every buffer, one by one or as columns, per ``pattern`` over chunks."""
    sizes = [1, 7, 300, 1, 1, 64, 250, 33]
    i = k = 0
    while i < len(rows):
        size = sizes[k % len(sizes)]
        chunk = rows[i:i + size]
        if pattern[k % len(pattern)] == "r" or size == 1:
            for row in chunk:
                for buffer in buffers:
                    buffer.append(dict(row))
        else:
            batch = _as_batch(chunk)
            for buffer in buffers:
                buffer.extend(dict(batch), len(chunk))
        i += size
        k += 1


def _legacy_columns(buffer: ColumnBuffer, reference) -> dict:
    kinds = reference.features
    return {name: WindowColumn(values, kinds[name].value_type) if name in kinds else values
            for name, values in buffer.columns().items()}


def _same_array(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype.kind == "f":
        np.testing.assert_array_equal(a, b)                 # NaN at the same places
    else:
        assert a.tolist() == b.tolist()


def _reports(reference, columns: dict, segments: list) -> dict:
    groups = []
    for key, sub in reference.segments.items():
        attr, _, value = key.partition("=")
        rows = np.array([i for i, s in enumerate(segments) if s.get(attr) == value], dtype=np.intp)
        groups.append(SegmentGroup(key, rows, sub))
    family, drifted = segment_family(groups, columns, WindowSettings(alpha=0.2, correction="none"),
                                     skip=frozenset((PREDICTION, SCORE)))
    return {
        "drift": evaluate_window(reference, columns).to_dict(),
        "quality": [r.to_dict() for r in DataQuality().check(reference, columns)],
        "domain": DomainClassifier(max_rows=200, alpha=0.05).test(reference, columns).to_dict(),
        "histograms": {name: [list(part) for part in histograms(fp, columns[name])]
                       for name, fp in reference.features.items()},
        "segments": ([(t.key, t.feature, t.detector, t.p_value) for t in family],
                     {i: r.to_dict() for i, r in drifted.items()}),
    }


@pytest.mark.parametrize("pattern", ["r", "c", "rcrrc"])
def test_window_buffer_gives_the_columns_and_reports_of_the_list_buffer(pattern):
    reference = _reference()
    rows = _rows(seed=2, n=700)
    legacy, typed = ColumnBuffer(reference.features), WindowBuffer(reference, limit=1000)
    _fill([legacy, typed], rows, reference, pattern)
    assert typed.n == legacy.n == 700
    old, new = _legacy_columns(legacy, reference), typed.window_columns()
    assert list(new) == list(old)                           # reference names first, then "late"
    for name, fp in reference.features.items():
        _same_array(new[name].values, old[name].values)
        assert new[name].type == old[name].type
        if fp.kind == "numeric":
            assert type_mismatch_count(new[name]) == type_mismatch_count(old[name])
        else:
            assert [(type(v), v) for v in new[name].raw] == [(type(v), v) for v in old[name].raw]   # types kept
    assert type_mismatch_count(old["x"])[0] > 0 and new["late"] == old["late"]
    assert typed.raw(PREDICTION) == [float(v) for v in old[PREDICTION].raw]
    segments = [{"region": "eu" if i % 3 else "us"} for i in range(700)]
    got, want = _reports(reference, new, segments), _reports(reference, old, segments)
    assert got == want
    quality = {(r["detector"], r["feature"]): r for r in want["quality"]}
    assert quality[("data_quality.unseen_categories", "c")]["statistic"] > 0
    assert quality[("data_quality.type_mismatch", "x")]["evidence"]["n_mismatch"] > 0
    assert ("data_quality.new_feature", "late") in quality


def test_window_buffer_survives_pickling_adoption_and_clearing():
    reference = _reference()
    rows = _rows(seed=3, n=500)
    legacy, typed = ColumnBuffer(reference.features), WindowBuffer(reference, limit=400)
    _fill([legacy, typed], rows[:300], reference, "rc")
    restored = pickle.loads(pickle.dumps(typed))
    assert restored._capacity == 300 and restored.columns() == typed.columns()
    window = OpenWindow(reference.features)
    window.rows = pickle.loads(pickle.dumps(legacy))           # what a checkpoint written by main holds
    window.adopt(reference, 400)
    assert isinstance(window.rows, WindowBuffer)
    _fill([legacy, typed, restored, window.rows], rows[300:], reference, "cr")   # past the window size too
    want = _reports(reference, _legacy_columns(legacy, reference), [{}] * 500)
    for buffer in (typed, restored, window.rows):
        assert buffer.n == 500
        assert _reports(reference, buffer.window_columns(), [{}] * 500) == want
    kept = typed.window_columns()["x"].values.copy()
    closed = typed.window_columns()
    typed.clear()
    assert typed.n == 0 and typed.columns() == {name: [] for name in reference.features}
    _fill([typed], rows[:50], reference, "c")
    np.testing.assert_array_equal(closed["x"].values, kept)    # a closed window's columns stay as they were
    assert typed.window_columns()["c"].values.tolist() == to_column([r["c"] for r in rows[:50]], "categorical").tolist()


def test_many_levels_widen_the_codes():
    reference = _reference()
    typed = WindowBuffer(reference, limit=40_000)
    values = [f"v{i}" for i in range(33_000)]
    typed.extend({"c": values}, len(values))
    typed.extend({"c": ["a", None, "v5"]}, 3)
    column = typed.window_columns()["c"]
    assert typed._data["c"].codes.dtype == np.int32
    assert column.values.tolist() == [*values, "a", None, "v5"]


def _mixed_stream():
    predictions, labels = stream(0, 3000, seed=11, shift_from=1800)
    rng = np.random.default_rng(11)
    for i, p in enumerate(predictions):
        features = p["features"]
        if rng.random() < 0.03:
            features["x"] = "n/a"
        if rng.random() < 0.05:
            features["c"] = str(rng.choice(["new1", "new2", True, 4]))
        if rng.random() < 0.05:
            features["flag"] = str(rng.choice(["True", "false", "1"]))
        if i >= 1500 and i % 2:
            features["later"] = float(i)
    return predictions, labels


class _ListWindows(ModelMonitor):
    """The oracle: every version's windows held as lists (ColumnBuffer), converted at close."""

    def version(self, name):
        version = super().version(name)
        if version.reference is not None and not isinstance(version.open.rows, ColumnBuffer):
            assert version.open.rows.n == 0
            version.open.rows = ColumnBuffer(version.reference.features)
        return version


@pytest.mark.parametrize("batch", [1, 50])
def test_monitor_alerts_equal_those_of_list_windows(batch):
    from tests.detectors.checkpoint_stream import feed

    predictions, labels = _mixed_stream()
    settings = ModelSettings(**{**SETTINGS, "max_features": 12})
    ours, oracle = ModelMonitor("m", settings), _ListWindows("m", settings)
    got, want = [], []
    for k in range(0, len(predictions), 600):     # the reference (600 rows) is built before the oracle swaps
        got += feed(ours, predictions[k:k + 600], labels, batch)
        want += feed(oracle, predictions[k:k + 600], labels, batch)
        oracle.version("1")
    assert isinstance(oracle.versions["1"].open.rows, ColumnBuffer)
    assert isinstance(ours.versions["1"].open.rows, WindowBuffer)
    kinds = {record.get("kind") for kind, record in want if kind == "alert"}
    assert {"input_drift", "data_quality"} <= kinds
    assert comparable(got) == comparable(want)
    assert ours.versions["1"].last_window == oracle.versions["1"].last_window
    assert ours.versions["1"].closed_windows == oracle.versions["1"].closed_windows


def test_an_integer_beyond_a_float_is_an_odd_value_and_leaves_the_columns_aligned():
    """10**400 cannot be a float: it is kept as a raw value (missing in the array), on both
    paths, and every column keeps one value per row."""
    reference = _reference()
    rows = [{"x": 0.5, "c": "a", "new": 5}, {"x": 10 ** 400, "c": "b", "new": 6}, {"x": 1.5, "c": "a", "new": 7}]
    by_row, by_columns = WindowBuffer(reference, 100), WindowBuffer(reference, 100)
    for row in rows:
        by_row.append(row)
    by_columns.extend({name: [row[name] for row in rows] for name in ("x", "c", "new")}, 3)
    for buffer in (by_row, by_columns):
        columns = buffer.columns()
        assert buffer.n == 3 and columns["new"] == [5, 6, 7] and columns["c"] == ["a", "b", "a"]
        assert columns["x"] == [0.5, 10 ** 400, 1.5]
        assert np.isnan(buffer.window_columns()["x"].values[1])


def test_a_closed_windows_columns_keep_their_raw_values_after_the_buffer_is_cleared():
    """The columns a window's tests took still read that window's raw values once the buffer
    holds the next window's rows."""
    buffer = WindowBuffer(_reference(), 100)
    buffer.extend({"x": [0.5, "n/a"], "c": ["a", "zz"]}, 2)
    closed = buffer.window_columns()
    buffer.clear()
    buffer.extend({"x": [7.0, "other"], "c": ["b", "yy"]}, 2)
    assert closed["x"].raw == [0.5, "n/a"] and closed["c"].raw == ["a", "zz"]
