"""``audit --recompute`` for estimated performance and fairness, from what their alerts store.

In process: a monitor raises the alerts on labelled traffic (tests/audit_traffic.py), and the
audit rebuilds them from the window's events and the alert's evidence alone (the broker and
Redis parts are tested in tests/integration/test_audit_labels.py). Every recomputed number is
also checked against scipy / numpy computed here from the stored counts and calibration.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import orjson
import pytest
from scipy.optimize import isotonic_regression
from scipy.stats import norm

from detectors.cbpe import CBPE, calibration_knots
from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings
from streams import audit
from streams.config import Settings
from tests.audit_traffic import labelled_traffic

SETTINGS = dict(reference_size=1000, window_size=500, window_seconds=36000, performance_window=300,
                cbpe_reference_labels=1000)


def _run(change: str, n: int = 6000, change_at: int = 3000):
    """The monitor, its alerts (as JSON gives them back) and each internal offset's events."""
    events, labels = labelled_traffic(n, change_at, change)
    settings = ModelSettings().merged(SETTINGS)
    monitor = ModelMonitor("credit", settings)
    out, batches = [], []
    for offset, i in enumerate(range(0, n, 100)):
        batches.append(events[i:i + 100])
        out += monitor.add_predictions(events[i:i + 100], offset=offset, partition=0)
        out += monitor.add_labels(labels[i:i + 100])
    alerts = [orjson.loads(orjson.dumps(a)) for kind, a in out if kind == "alert"]
    return monitor, alerts, batches, Settings(defaults=settings)


def _window(alert: dict, batches: list) -> list[dict]:
    """The events between the alert's [offset, index] bounds (what audit.window_events reads)."""
    first, last = alert["window"]["offsets"]["first"], alert["window"]["offsets"]["last"]
    return [e for offset, batch in enumerate(batches) for index, e in enumerate(batch)
            if first <= [offset, index] <= last]


def _recompute(monitor, alert, batches, settings):
    version = monitor.versions[alert["model_version"]]
    events = _window(alert, batches)
    assert len(events) == alert["window"]["n"]
    return audit.recompute_window(settings, alert, version.reference, version.window_settings, events,
                                  version.segment_window_settings), events


@pytest.fixture(scope="module")
def confidence():
    return _run("confidence")


@pytest.fixture(scope="module")
def segment():
    return _run("segment")


def test_an_estimated_performance_alert_is_rebuilt_from_its_window_and_stored_calibration(confidence):
    monitor, alerts, batches, settings = confidence
    alert = next(a for a in alerts if a["kind"] == "estimated_performance")
    rows, events = _recompute(monitor, alert, batches, settings)
    assert [(r["feature"], r["match"]) for r in rows] == [("__score__", True)]
    assert rows[0]["recomputed_statistic"] == pytest.approx(alert["statistic"], rel=0, abs=1e-9)
    # the estimate from the stored knots, computed here: calibrated score where predicted positive, else 1 - it
    stored = alert["evidence"]["__score__"]
    scores = np.array([e["score"] for e in events])
    predicted = np.array([e["prediction"] for e in events])
    calibrated = np.interp(scores, stored["calibration_map"]["x"], stored["calibration_map"]["y"])
    estimate = float(np.mean(np.where(predicted, calibrated, 1 - calibrated)))
    assert estimate == pytest.approx(stored["estimated_accuracy"], rel=0, abs=1e-12)
    assert alert["statistic"] == pytest.approx(stored["reference_accuracy"] - estimate, rel=0, abs=1e-12)
    # the realised accuracy of that window did drop: the alert is about a real change
    labels = {lab["prediction_id"]: lab["label"] for lab in labelled_traffic(6000, 3000, "confidence")[1]}
    realised = np.mean([labels[e["prediction_id"]] == e["prediction"] for e in events])
    assert stored["reference_accuracy"] - realised > 0.05
    # the knots are the version's own isotonic map, compacted, not a refit
    fitted = monitor.versions["1"].cbpe
    assert len(stored["calibration_map"]["x"]) < fitted._calibration_x.size


def test_a_changed_window_does_not_match(confidence):
    monitor, alerts, batches, settings = confidence
    alert = copy.deepcopy(next(a for a in alerts if a["kind"] == "estimated_performance"))
    alert["evidence"]["__score__"]["reference_accuracy"] += 0.01     # not what the estimate was compared with
    rows, _ = _recompute(monitor, alert, batches, settings)
    assert [r["match"] for r in rows] == [False]


def test_the_calibration_knots_give_the_full_map_bit_for_bit():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(5000), 3)
    labels = rng.random(5000) < scores
    x, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    y = isotonic_regression(np.bincount(inverse, weights=labels) / counts, weights=counts).x
    kx, ky = calibration_knots(x, y)
    assert kx.size < x.size / 2
    probe = np.concatenate([rng.random(20_000), x, [-0.5, 0.0, 1.0, 1.5]])
    assert np.array_equal(np.interp(probe, kx, ky), np.interp(probe, x, y))
    cbpe = CBPE().fit(scores, labels)
    assert np.array_equal(CBPE.from_evidence(cbpe.test(scores).evidence, 0.05).calibrated(probe),
                          cbpe.calibrated(probe))


def test_a_fairness_alert_is_re_run_on_its_stored_counts_and_positive_rates_recounted(segment):
    monitor, alerts, batches, settings = segment
    fairness = [a for a in alerts if a["kind"] == "fairness"]
    metrics = {e["metric"] for a in fairness for e in a["evidence"].values()}
    # a biased score: more of the south predicted positive, more of its positives caught
    assert "positive_rate" in metrics and metrics & {"accuracy", "true_positive_rate"}, metrics
    for alert in fairness:
        rows, events = _recompute(monitor, alert, batches, settings)
        assert rows and all(r["match"] for r in rows), rows
        for row in rows:
            stored = alert["evidence"][row["feature"]]
            counts = {v: (x, n) for v, x, n in stored["counts"]}
            (x1, n1), (x2, n2) = counts[stored["best"]], counts[stored["worst"]]
            p1, p2 = x1 / n1, x2 / n2
            p = norm.sf((p1 - p2 - stored["threshold"]) / math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2))
            assert row["recomputed_p_value"] == pytest.approx(p, rel=1e-12, abs=0)
            assert row["recomputed_statistic"] == pytest.approx(p1 - p2, rel=0, abs=1e-12)
            if stored["metric"] == "positive_rate":     # recounted from the window's predictions
                assert row["note"] == "counts recounted from the window's predictions"
                south = [e["prediction"] for e in events if e["segment"]["region"] == "south"]
                assert counts["south"] == (sum(south), len(south))
            else:
                assert row["note"].startswith("counts as stored")
                assert stored["labels_joined"]["first"] <= stored["labels_joined"]["last"]


def test_fairness_counts_that_differ_from_the_window_do_not_match(segment):
    monitor, alerts, batches, settings = segment
    alert = copy.deepcopy(next(a for a in alerts if a["kind"] == "fairness" and any(
        e["metric"] == "positive_rate" for e in a["evidence"].values())))
    feature = next(k for k, e in alert["evidence"].items() if e["metric"] == "positive_rate")
    alert["evidence"][feature]["counts"][0][1] -= 1
    rows, _ = _recompute(monitor, alert, batches, settings)
    row = next(r for r in rows if r["feature"] == feature)
    assert not row["match"] and row["note"] == "counts differ from the window's predictions"


@pytest.mark.parametrize("kind", sorted(audit.WITHOUT_EVIDENCE))
def test_alerts_raised_before_the_evidence_was_stored_say_so(kind):
    alert = {"alert_id": "x", "kind": kind, "model": "m", "model_version": "1", "window": {"n": 10},
             "evidence": {"f": {"detector": "d", "statistic": 0.2}}}
    with pytest.raises(audit.NotRecomputable, match="raised before"):
        audit.recompute(Settings(), alert)


def test_the_replay_judges_segment_drift_with_the_segment_familys_own_calibration(segment):
    monitor, alerts, batches, settings = segment
    version = monitor.versions["1"]
    assert version.segment_window_settings.alpha != version.window_settings.alpha   # calibrated apart
    alert = next(a for a in alerts if a["kind"] == "fairness")
    replayed = audit._replayed_monitor(settings, alert, version.reference, version.window_settings,
                                       _window(alert, batches), version.segment_window_settings)
    assert replayed.segment_window_settings == version.segment_window_settings
    assert replayed.window_settings == version.window_settings
