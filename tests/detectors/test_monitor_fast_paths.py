"""The throughput work keeps every value: shared confusion matrices, lazy column buffers,
shared window columns, the cached reference encoding of the domain classifier, the vectorised
data-quality scans. Each is checked against the straightforward computation it replaced."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from river import metrics, utils

from detectors.domain_classifier import DomainClassifier
from detectors.monitor import ColumnBuffer, VersionMonitor, _as_class
from detectors.profile import ReferenceProfile, WindowColumn, _is_missing, _is_number
from detectors.quality import DataQuality, type_mismatch_count
from detectors.settings import ModelSettings
from tests.detectors.legacy_layout import flat_state


# -- metrics -----------------------------------------------------------------------------
class SeparateMetrics:
    """The metrics as they were: one river confusion matrix per metric, each updated per label."""

    def __init__(self, window: int):
        self.overall = {"accuracy": metrics.Accuracy(), "f1": metrics.F1(), "roc_auc": metrics.ROCAUC(),
                        "log_loss": metrics.LogLoss()}
        self.rolling = {"accuracy": utils.Rolling(metrics.Accuracy, window_size=window),
                        "f1": utils.Rolling(metrics.F1, window_size=window),
                        "log_loss": utils.Rolling(metrics.LogLoss, window_size=window)}

    def update(self, prediction, score, label) -> None:
        y_true, y_pred = _as_class(label), _as_class(prediction)
        probability = score is not None and isinstance(y_true, bool) and 0.0 <= score <= 1.0
        for group in (self.overall, self.rolling):
            for name, metric in group.items():
                if name in ("roc_auc", "log_loss"):
                    if probability:
                        metric.update(y_true, score)
                else:
                    metric.update(y_true, y_pred)

    def values(self) -> tuple[dict, dict]:
        return ({k: m.get() for k, m in self.overall.items()}, {k: m.get() for k, m in self.rolling.items()})


def _labelled_traffic(seed: int, n: int, classes: str):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        score = float(rng.random())
        if classes == "binary":   # ints, floats and bools mixed, as producers send them
            prediction = [int(score >= 0.5), float(score >= 0.5), bool(score >= 0.5)][rng.integers(3)]
            label = [int(rng.random() < score), bool(rng.random() < score)][rng.integers(2)]
        else:
            prediction, label = str(rng.choice(["a", "b", "c"])), str(rng.choice(["a", "b", "c", "d"]))
            score = None
        yield prediction, score, label


def _version(window: int) -> VersionMonitor:
    monitor = VersionMonitor("m", "1", ModelSettings(performance_window=window, estimate_performance=False))
    monitor.add_prediction({"prediction": 1, "score": 0.5, "timestamp": 0.0, "features": {}, "segment": None},
                           None)
    return monitor


def _values(monitor: VersionMonitor) -> tuple[dict, dict]:
    return ({k: m.get() for k, m in monitor._metrics.items()}, {k: m.get() for k, m in monitor._rolling.items()})


@pytest.mark.parametrize("classes", ["binary", "multiclass"])
def test_shared_confusion_matrices_give_the_values_of_separate_metrics(classes):
    monitor, separate = _version(window=50), SeparateMetrics(window=50)
    for i, (prediction, score, label) in enumerate(_labelled_traffic(3, 400, classes)):
        monitor.add_label(prediction, score, label, float(i))
        separate.update(prediction, score, label)
        if i % 37 == 0 or i == 399:
            _close(_values(monitor), separate.values())
    assert monitor.status()["metrics"]["f1"] == pytest.approx(separate.overall["f1"].get(), abs=1e-12)


def _close(got: tuple, want: tuple) -> None:
    for ours, theirs in zip(got, want):
        assert ours.keys() == theirs.keys()
        for name in theirs:
            assert ours[name] == pytest.approx(theirs[name], abs=1e-12, rel=1e-12), name


@pytest.mark.parametrize("regression", [False, True])
def test_a_checkpoint_with_river_metrics_is_restored_with_their_values(regression):
    """Checkpoints hold river's metrics (separate or shared confusion matrices); restored, the
    numpy metrics carry their values, rolling windows included, and go on as river's would."""
    if regression:
        monitor = VersionMonitor("m", "1", ModelSettings(task="regression", performance_window=30))
        monitor.add_prediction({"prediction": 1.5, "score": None, "timestamp": 0.0, "features": {},
                                "segment": None}, None)
        rng = np.random.default_rng(2)
        traffic = [(float(p), None, float(p + rng.normal())) for p in rng.normal(size=200)]
        overall = {"mae": metrics.MAE(), "rmse": metrics.RMSE(), "r2": metrics.R2()}
        rolling = {"mae": utils.Rolling(metrics.MAE, window_size=30), "rmse": utils.Rolling(metrics.RMSE, window_size=30)}

        def update(prediction, score, label, group=(overall, rolling)):
            for metric in (*group[0].values(), *group[1].values()):
                metric.update(label, prediction)
        values = lambda: ({k: m.get() for k, m in overall.items()}, {k: m.get() for k, m in rolling.items()})  # noqa: E731
    else:
        monitor = _version(window=30)
        traffic = list(_labelled_traffic(5, 200, "binary"))
        separate = SeparateMetrics(window=30)
        overall, rolling, update, values = separate.overall, separate.rolling, separate.update, separate.values
    for prediction, score, label in traffic[:120]:
        update(prediction, score, label)
    # what an older checkpoint holds: river's metrics under _metrics/_rolling
    state = {k: v for k, v in flat_state(monitor).items() if k != "_metrics_suite"}
    state["_metrics"], state["_rolling"] = overall, rolling
    state["counts"] = {**state["counts"], "labelled": 120}
    restored = VersionMonitor.__new__(VersionMonitor)
    restored.__setstate__(pickle.loads(pickle.dumps(state)))
    _close(_values(restored), values())
    for i, (prediction, score, label) in enumerate(traffic[120:]):
        restored.add_label(prediction, score, label, float(i))
        update(prediction, score, label)
    _close(_values(restored), values())


# -- column buffer -----------------------------------------------------------------------
def _naive_columns(names, rows) -> dict:
    columns = {name: [] for name in names}
    for n, row in enumerate(rows):
        for name, column in columns.items():
            column.append(row.get(name))
        for name, value in row.items():
            if name not in columns:
                columns[name] = [None] * n + [value]
    return columns


def test_column_buffer_gives_the_columns_of_per_row_appends():
    rng = np.random.default_rng(1)
    rows = []
    for i in range(300):
        row = {name: float(rng.normal()) for name in ("a", "b", "c") if rng.random() > 0.05}
        if rng.random() < 0.02:
            row[f"new{i % 3}"] = "x"
        rows.append(row)
    buffer = ColumnBuffer(("a", "b", "c"))
    for i, row in enumerate(rows):
        buffer.append(row)
        if i in (0, 57, 150):   # columns asked for in the middle, then more rows
            assert buffer.columns() == _naive_columns(("a", "b", "c"), rows[:i + 1])
    assert buffer.columns() == _naive_columns(("a", "b", "c"), rows)
    assert list(buffer.columns()) == list(_naive_columns(("a", "b", "c"), rows))   # same name order
    assert buffer.n == 300


def test_column_buffer_checkpoints_columns_and_clears():
    buffer = ColumnBuffer(("a",))
    for i in range(10):
        buffer.append({"a": i, "b": -i} if i % 2 else {"a": i})
    state = pickle.loads(pickle.dumps(buffer))
    assert state.__dict__.keys() == {"_columns", "n", "_rows"} and state._rows == []
    assert state.columns() == buffer.columns() and state.n == 10
    state.append({"a": 10})
    assert state.columns()["b"][-2:] == [-9, None]
    state.clear()
    assert state.n == 0 and state.columns() == {"a": [], "b": []}


# -- window columns and data quality -----------------------------------------------------
def _slow_mismatches(values) -> tuple[int, list]:
    bad = [v for v in values if not _is_missing(v) and not isinstance(v, bool)  # a bool is 1/0 (detectors.values)
           and not (_is_number(v) and math.isfinite(v))]
    return len(bad), bad[:5]


@pytest.mark.parametrize("extra", [[], [math.inf], [-math.inf, 2], ["x", True], [np.float64(np.inf)], [math.nan, None]])
def test_type_mismatch_count_agrees_with_the_per_value_scan(extra):
    values = [1, 2.5, None, 7] * 20 + extra + [3.0]
    assert type_mismatch_count(values) == _slow_mismatches(values)
    assert type_mismatch_count(WindowColumn(values, "numeric")) == _slow_mismatches(values)


def test_data_quality_on_window_columns_equals_data_quality_on_lists():
    rng = np.random.default_rng(4)
    ref = ReferenceProfile.from_columns({"x": rng.normal(size=500).tolist(),
                                         "c": rng.choice(["a", "b", "c"], size=500).tolist()})
    window = {"x": rng.normal(0.5, size=300).tolist() + ["junk", None, True, 40.0],
              "c": rng.choice(["a", "b", "z", "y"], size=300).tolist() + [None, 3, "q", "z"],
              "new": list(range(304))}
    converted = {"x": WindowColumn(window["x"], "numeric"), "c": WindowColumn(window["c"], "categorical"),
                 "new": window["new"]}
    quality = DataQuality()
    assert [r.to_dict() for r in quality.check(ref, converted)] == [r.to_dict() for r in quality.check(ref, window)]


# -- domain classifier -------------------------------------------------------------------
def _naive_design(ref, cur, kinds):
    """The design matrix built value by value: intercept; per numeric feature its value standardised
    by the reference side (missing -> 0) and, when either side misses one, a missing indicator; per
    categorical feature one column per category in order of first appearance (reference rows first)."""
    n_ref, n_cur = len(next(iter(ref.values()))), len(next(iter(cur.values())))
    columns = [[1.0] * (n_ref + n_cur)]
    for name, kind in kinds.items():
        values = ref[name].tolist() + cur[name].tolist()
        if kind == "numeric":
            present = [v for v in ref[name].tolist() if not math.isnan(v)]
            mean = float(np.mean(present))
            std = float(np.std(present)) or 1.0
            columns.append([0.0 if math.isnan(v) else (v - mean) / std for v in values])
            if any(math.isnan(v) for v in values):
                columns.append([1.0 if math.isnan(v) else 0.0 for v in values])
        else:
            for category in dict.fromkeys(values):
                columns.append([1.0 if v == category else 0.0 for v in values])
    return np.array(columns).T


def test_domain_classifier_design_is_the_value_by_value_encoding():
    rng = np.random.default_rng(2)
    def side(n, unseen):
        x = rng.normal(size=n)
        x[rng.choice(n, 3, replace=False)] = np.nan
        c = np.array(rng.choice(["u", "v", "w"] if unseen else ["u", "v"], size=n), dtype=object)
        c[rng.choice(n, 2, replace=False)] = None
        return {"x": x, "c": c, "y": rng.normal(size=n)}
    kinds = {"x": "numeric", "c": "categorical", "y": "numeric"}
    ref, cur = side(200, False), side(150, True)
    design, owners = DomainClassifier.design(DomainClassifier.reference_encoding(ref, kinds), cur, kinds)
    np.testing.assert_allclose(design, _naive_design(ref, cur, kinds), rtol=1e-15, atol=0)
    assert owners == ["", "x", "x", "c", "c", "c", "c", "y"]   # u/v/None, then the unseen w


def test_domain_classifier_reuses_reference_rows_without_changing_results():
    rng = np.random.default_rng(0)
    ref = ReferenceProfile.from_columns({"a": rng.normal(size=2000), "b": rng.normal(size=2000),
                                         "c": rng.choice(["x", "y"], size=2000)})
    windows = [{"a": rng.normal(size=800), "b": rng.normal(shift, size=800), "c": rng.choice(["x", "y"], size=800)}
               for shift in (0.0, 0.6, 0.1)]
    reused = DomainClassifier(max_rows=300)
    for window in windows:
        assert reused.test(ref, window).to_dict() == DomainClassifier(max_rows=300).test(ref, window).to_dict()
    assert reused._reference_cache is not None
    restored = pickle.loads(pickle.dumps(reused))
    assert restored._reference_cache is None
    assert restored.test(ref, windows[1]).to_dict() == reused.test(ref, windows[1]).to_dict()
