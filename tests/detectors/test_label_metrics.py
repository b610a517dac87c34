"""The numpy label metrics equal river's on the same stream (1e-12), whatever the batching."""
import numpy as np
import pytest
from river import metrics, utils

from detectors.label_metrics import ClassificationMetrics, RegressionMetrics
from detectors.monitor import _as_class


def _river_classification(window):
    accuracy = metrics.Accuracy()
    rolling_accuracy = utils.Rolling(metrics.Accuracy, window_size=window)
    overall = {"accuracy": accuracy, "f1": metrics.F1(), "roc_auc": metrics.ROCAUC(), "log_loss": metrics.LogLoss()}
    rolling = {"accuracy": rolling_accuracy, "f1": utils.Rolling(metrics.F1, window_size=window),
               "log_loss": utils.Rolling(metrics.LogLoss, window_size=window)}
    return overall, rolling


def _classification_stream(seed, n, classes):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        score = float(rng.random())
        if classes == "binary":
            prediction = [int(score >= 0.5), float(score >= 0.5), bool(score >= 0.5)][rng.integers(3)]
            label = [int(rng.random() < score), bool(rng.random() < score)][rng.integers(2)]
            score = [score, None, 1.5, 0.0, 1.0][rng.integers(5)] if rng.random() < 0.3 else score
        else:
            prediction, label = str(rng.choice(["a", "b", "c"])), str(rng.choice(["a", "b", "c", "d"]))
            score = None
        yield _as_class(prediction), score, _as_class(label)


def _close(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == pytest.approx(b[name], abs=1e-12, rel=1e-12), name


@pytest.mark.parametrize("classes", ["binary", "multiclass"])
@pytest.mark.parametrize("batch", [1, 7, 250, 1000])
def test_classification_metrics_equal_rivers(classes, batch):
    overall, rolling = _river_classification(50)
    ours = ClassificationMetrics(50)
    stream = list(_classification_stream(3, 1200, classes))
    for k in range(0, len(stream), batch):
        chunk = stream[k:k + batch]
        for y_pred, score, y_true in chunk:
            for name, metric in (*overall.items(), *rolling.items()):
                if name in ("roc_auc", "log_loss"):
                    if score is not None and isinstance(y_true, bool) and 0.0 <= score <= 1.0:
                        metric.update(y_true, score)
                else:
                    metric.update(y_true, y_pred)
        ours.update([c[2] for c in chunk], [c[0] for c in chunk], [c[1] for c in chunk])
        _close({k: m.get() for k, m in ours.overall.items()}, {k: m.get() for k, m in overall.items()})
        _close({k: m.get() for k, m in ours.rolling.items()}, {k: m.get() for k, m in rolling.items()})


@pytest.mark.parametrize("batch", [1, 13, 1000])
def test_regression_metrics_equal_rivers(batch):
    rng = np.random.default_rng(5)
    y = 1e3 + rng.normal(size=1500) * 10
    p = y + rng.normal(size=1500)
    overall = {"mae": metrics.MAE(), "rmse": metrics.RMSE(), "r2": metrics.R2()}
    rolling = {"mae": utils.Rolling(metrics.MAE, window_size=100), "rmse": utils.Rolling(metrics.RMSE, window_size=100)}
    ours = RegressionMetrics(100)
    assert ours.r2() == overall["r2"].get() == 0.0
    for k in range(0, 1500, batch):
        for a, b in zip(y[k:k + batch], p[k:k + batch]):
            for metric in (*overall.values(), *rolling.values()):
                metric.update(float(a), float(b))
        ours.update(y[k:k + batch].tolist(), p[k:k + batch].tolist())
        _close({k: m.get() for k, m in ours.overall.items()}, {k: m.get() for k, m in overall.items()})
        _close({k: m.get() for k, m in ours.rolling.items()}, {k: m.get() for k, m in rolling.items()})


def test_metrics_pickle_with_their_views():
    import pickle

    ours = ClassificationMetrics(10)
    ours.update([True, False], [True, True], [0.9, 0.2])
    again = pickle.loads(pickle.dumps(ours))
    again.update([True], [False], [None])
    ours.update([True], [False], [None])
    assert {k: m.get() for k, m in again.overall.items()} == {k: m.get() for k, m in ours.overall.items()}
