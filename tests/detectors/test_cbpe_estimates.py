"""CBPE estimates the accuracy the labels will show, for the model's own predictions.

Issue 11: the monitor fitted CBPE on raw scores (not calibrated) and thresholded
them at 0.5 instead of using the model's ``prediction``; for a model whose
threshold is 0.65 it estimated another classifier. Streams here are generated
with a known P(y | x), so every window's realised accuracy is known.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import isotonic_regression

from detectors.cbpe import CBPE
from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings


def logistic(z):
    return 1 / (1 + np.exp(-z))


# name -> (score as a function of the true P(y = 1), the model's decision threshold on its score)
MODELS = {
    "calibrated": (lambda p: p, 0.5),
    "overconfident": (lambda p: logistic(3 * np.log(p / (1 - p))), 0.5),
    "underconfident, threshold 0.6": (lambda p: 0.25 + 0.5 * p, 0.6),
    "threshold 0.65": (lambda p: p, 0.65),
}
# covariate shifts (spread, offset of x): P(x) changes, P(y | x) does not. Rows pulled towards
# the decision boundary (small spread) are less certain, so accuracy drops; an offset moves it either way.
SHIFTS = ((1.0, 0.0), (1.0, 0.0), (0.8, 0.0), (0.6, 0.0), (0.4, 0.0), (1.0, -1.0), (1.0, 1.0), (0.5, 0.5))


def stream(rng, n, shift, model):
    link, threshold = MODELS[model]
    spread, offset = shift
    x = rng.normal(size=(n, 2)) * spread
    x[:, 0] += offset
    p = logistic(1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.3)
    y = rng.random(n) < p
    score = link(p)
    return x, score, score >= threshold, y


@pytest.mark.parametrize("model", MODELS)
def test_the_estimate_tracks_realised_accuracy_within_001_mae_per_window_of_5000(model):
    rng = np.random.default_rng(11)
    _, score, predicted, y = stream(rng, 5000, (1.0, 0.0), model)
    cbpe = CBPE(max_drop=0.05).fit(score, y, predictions=predicted)
    errors, realised = [], []
    for shift in SHIFTS:
        _, score, predicted, y = stream(rng, 5000, shift, model)
        result = cbpe.test(score, predictions=predicted)
        realised.append(np.mean(predicted == y))
        errors.append(result.evidence["estimated_accuracy"] - realised[-1])
    assert max(realised) - min(realised) > 0.1, "the shifts must change accuracy"
    assert np.mean(np.abs(errors)) < 0.01


def test_the_calibration_is_scipys_isotonic_regression_of_the_labels_on_the_scores():
    rng = np.random.default_rng(12)
    _, score, predicted, y = stream(rng, 3000, (1.0, 0.0), "overconfident")
    score = np.round(score, 3)   # ties: pooled into one point per distinct score
    cbpe = CBPE().fit(score, y, predictions=predicted)
    x, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    fitted = isotonic_regression(np.bincount(inverse, weights=y) / counts, weights=counts).x
    np.testing.assert_allclose(cbpe.calibrated(x), fitted, rtol=0, atol=1e-12)
    assert cbpe._reference["accuracy"] == np.mean(predicted == y)


def test_an_alert_needs_the_drop_to_exceed_the_tolerance_by_more_than_its_error():
    rng = np.random.default_rng(13)
    _, score, predicted, y = stream(rng, 5000, (1.0, 0.0), "threshold 0.65")
    cbpe = CBPE(max_drop=0.05).fit(score, y, predictions=predicted)
    reference = cbpe._reference
    by_shift = {}
    for spread in np.linspace(1.0, 0.3, 15):
        _, score, predicted, _ = stream(rng, 1000, (spread, 0.0), "threshold 0.65")
        r = cbpe.test(score, predictions=predicted)
        ev = r.evidence
        assert ev["margin"] == pytest.approx(2.0 * np.hypot(ev["estimated_accuracy_se"], reference["accuracy_se"]))
        assert r.drifted == (r.statistic - 0.05 > ev["margin"])
        by_shift[round(spread, 2)] = r
    assert not by_shift[1.0].drifted and by_shift[0.3].drifted
    # somewhere the drop is past the tolerance but not by its error: no alert there
    assert any(0.05 < r.statistic <= 0.05 + r.evidence["margin"] and not r.drifted for r in by_shift.values())


def monitor_traffic(n, seed, shift_at=None, shift=(0.5, 0.0), model="threshold 0.65", start=0):
    rng = np.random.default_rng(seed)
    events, labels = [], []
    for i in range(start, start + n, 500):
        x, score, predicted, y = stream(rng, 500, shift if shift_at is not None and i >= shift_at else (1.0, 0.0), model)
        for j in range(500):
            pid = f"p{i + j}"
            events.append({"prediction_id": pid, "model": "m", "model_version": "1", "timestamp": float(i + j),
                           "features": {"x0": float(x[j, 0]), "x1": float(x[j, 1])}, "prediction": bool(predicted[j]),
                           "score": float(score[j]), "segment": None, "latency_ms": None})
            labels.append({"prediction_id": pid, "model": "m", "label": bool(y[j]), "timestamp": float(i + j)})
    return events, labels


@pytest.mark.parametrize("model", ["threshold 0.65", "overconfident"])
def test_the_monitor_estimates_its_models_own_accuracy_and_alerts_on_a_real_drop(model):
    s = ModelSettings().merged({"window_size": 5000, "window_seconds": 1e9, "reference_size": 2000,
                                "multivariate": {"enabled": False}, "performance_tolerance": 0.05})
    monitor = ModelMonitor("m", s)
    # labelled reference period, then windows with labels withheld (delayed): only CBPE can see a drop
    events, labels = monitor_traffic(7000, seed=14, model=model)
    for i in range(0, 7000, 500):
        monitor.add_predictions(events[i:i + 500])
        monitor.add_labels(labels[i:i + 500])
    version = monitor.versions["1"]
    assert version.cbpe is not None
    out, realised = [], []
    later, later_labels = monitor_traffic(25_000, seed=15, shift_at=17_000, model=model, start=7000)
    for i in range(0, 25_000, 500):
        out += monitor.add_predictions(later[i:i + 500])
    windows = [(later[i:i + 5000], later_labels[i:i + 5000]) for i in range(0, 25_000, 5000)]   # windows 1, 2, ...
    alerts = [a for k, a in out if k == "alert" and a["kind"] == "estimated_performance"]
    assert [a["window"]["index"] for a in alerts] == [3]   # the window of [17000, 22000): shifted
    evidence = alerts[0]["evidence"]["__score__"]
    rows, truth = windows[2]
    realised_shifted = np.mean([e["prediction"] == lab["label"] for e, lab in zip(rows, truth)])
    assert evidence["estimated_accuracy"] == pytest.approx(realised_shifted, abs=0.015)
    assert evidence["reference_accuracy"] - evidence["estimated_accuracy"] > 0.05 + evidence["margin"]
