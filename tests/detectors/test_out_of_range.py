"""``data_quality.out_of_range`` is judged on the exact null distribution of its count.

Found with ``python -m bench.models`` (reference 500, windows of 250): the binomial bound on the
count of values outside the reference's [min, max] let 4 such values alert, which a stationary
feature shows in 4.5% of windows; 10 numeric features gave a data-quality alert in about a
quarter of all windows. The count is beta-binomial (detectors.quality.out_of_range_p_value).
"""
from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy import stats

from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile
from detectors.quality import DataQuality, out_of_range_p_value
from detectors.settings import ModelSettings


@pytest.mark.parametrize("n_reference, n_window", [(500, 250), (2000, 1000), (60, 200)])
def test_p_value_is_scipy_betabinom_and_the_null_count_follows_it(n_reference, n_window):
    rng = np.random.default_rng(n_reference)
    draws = 20_000
    reference = rng.standard_t(4, size=(draws, n_reference))      # heavy tails: the extremes move a lot
    window = rng.standard_t(4, size=(draws, n_window))
    lo, hi = reference.min(axis=1, keepdims=True), reference.max(axis=1, keepdims=True)
    counts = ((window < lo) | (window > hi)).sum(axis=1)
    null = stats.betabinom(n_window, 2, n_reference - 1)
    for k in (1, 2, 4, 6):
        assert out_of_range_p_value(k, n_window, n_reference) == null.sf(k - 1)
        observed, expected = (counts >= k).mean(), null.sf(k - 1)
        assert abs(observed - expected) <= 4 * np.sqrt(expected * (1 - expected) / draws) + 1e-4, (k, observed, expected)
    # the binomial bound it replaces: 2/(n+1) per value, independent across values
    assert counts.var() > 1.3 * stats.binom(n_window, 2 / (n_reference + 1)).var()


def _population(rng, n: int, scale_from: int | None = None):
    """Correlated, skewed, mixed-type features; a segment that depends on a feature."""
    income = rng.lognormal(10, 0.6, n)
    age = np.clip(rng.normal(40, 12, n) + 5 * np.log(income / 22_000), 18, 90).round()
    basket = rng.poisson(3 + income / 40_000)                       # integers: ties at the extremes
    score = 1 / (1 + np.exp(-(np.log(income) - 10 + (age - 40) / 20)))
    region = np.where(income > 30_000, "north", rng.choice(["south", "east"], n))
    plan = rng.choice(["free", "pro", "team"], n, p=[0.6, 0.3, 0.1])
    if scale_from is not None:                                       # a client starts sending cents
        income[scale_from:][rng.random(n - scale_from) < 0.05] *= 100
    return income, age, basket, score, region, plan


def _events(rng, start: int, n: int, scale_from: int | None = None):
    income, age, basket, score, region, plan = _population(rng, n, scale_from)
    return [{"prediction_id": f"p{start + i}", "model": "m", "model_version": "1", "timestamp": 1e6 + start + i,
             "features": {"income": float(income[i]), "age": float(age[i]), "basket": int(basket[i]),
                          "plan": str(plan[i])},
             "prediction": bool(score[i] >= 0.5), "score": float(score[i]), "segment": {"region": str(region[i])},
             "latency_ms": None} for i in range(n)]


def _reference_from_csv(rng, tmp_path, n: int) -> ReferenceProfile:
    income, age, basket, score, _, plan = _population(rng, n)
    path = tmp_path / "reference.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["income", "age", "basket", "plan", "__score__"])
        writer.writerows(zip(income.round(2), age, basket, plan, score.round(6)))
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    numeric = {"income", "age", "basket", "__score__"}
    return ReferenceProfile.from_columns({name: [float(r[name]) if name in numeric else r[name] for r in rows]
                                          for name in rows[0]})


def _data_quality_alerts(monitor: ModelMonitor, rng, windows: int, window: int, scale_from=None) -> list:
    alerts = []
    for w in range(windows):
        out = monitor.add_predictions(_events(rng, w * window, window,
                                              None if scale_from is None or w < scale_from else 0),
                                      offset=w, partition=0)
        alerts += [(w, a) for what, a in out if what == "alert" and a["kind"] == "data_quality"]
    return alerts


@pytest.mark.parametrize("seed", [1, 2])
def test_silent_on_stationary_data_with_a_small_reference_from_a_file(seed, tmp_path):
    found = {}
    for alpha in (1e-4, 1.0):          # 1: the rate tolerance alone, about what the binomial bound allowed
        rng = np.random.default_rng(seed)
        settings = ModelSettings(reference_size=500, window_size=250, quality={"out_of_range_alpha": alpha})
        monitor = ModelMonitor("m", settings)
        monitor.set_reference("1", _reference_from_csv(rng, tmp_path, 500), source="file")
        found[alpha] = _data_quality_alerts(monitor, rng, 60, 250)
        assert monitor.versions["1"].window_index == 60
    assert found[1e-4] == []
    assert len(found[1.0]) >= 3        # the stream does reach past the reference's extremes


def test_fires_when_a_client_sends_values_in_another_unit(tmp_path):
    rng = np.random.default_rng(3)
    monitor = ModelMonitor("m", ModelSettings(reference_size=500, window_size=250))
    monitor.set_reference("1", _reference_from_csv(rng, tmp_path, 500), source="file")
    alerts = _data_quality_alerts(monitor, rng, 12, 250, scale_from=8)
    assert [w for w, _ in alerts] == [8]
    finding = alerts[0][1]["evidence"]["income"]
    assert finding["detector"] == "data_quality.out_of_range" and finding["above"] >= 8
    assert finding["p_value"] == stats.betabinom.sf(finding["n_outside"] - 1, finding["n_present"], 2,
                                                    finding["n_reference"] - 1)
    assert finding["p_value"] <= DataQuality().out_of_range_alpha
