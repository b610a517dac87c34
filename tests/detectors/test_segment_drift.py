"""Segment drift compares a segment value's window with the same value's reference rows.

Issue 11: with ``segment = {"region": "us"}`` and a feature ``country`` that is
always ``US`` there, segment drift compared the us rows with the whole
population and fired in window 0, before any shift, and stayed active.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import stats

from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile
from detectors.settings import ModelSettings
from tests.detectors.legacy_layout import flat_state

COUNTRIES = {"us": ["US"], "eu": ["DE", "FR", "IT", "ES"], "apac": ["JP", "AU", "IN"]}


def regional_traffic(n, seed=0, start=0, shift_at=None, region_shift="eu"):
    """Features correlated with the segment: country is a function of region, amount depends on it."""
    rng = np.random.default_rng(seed)
    regions = rng.choice(list(COUNTRIES), size=n, p=[0.5, 0.3, 0.2])
    for i in range(n):
        region = str(regions[i])
        country = str(rng.choice(COUNTRIES[region]))
        amount = float(rng.lognormal({"us": 3.0, "eu": 2.5, "apac": 2.0}[region], 0.5))
        if shift_at is not None and start + i >= shift_at and region == region_shift:
            amount *= 1.6
        tenure = float(rng.normal({"us": 5.0, "eu": 3.0, "apac": 1.0}[region]))
        score = float(1 / (1 + np.exp(-(tenure - 3) / 2)))
        yield {"prediction_id": f"p{start + i}", "model": "m", "model_version": "1", "timestamp": float(start + i),
               "features": {"country": country, "amount": amount, "tenure": tenure, "member": bool(rng.random() < 0.3)},
               "prediction": score >= 0.5, "score": score, "segment": {"region": region}, "latency_ms": None}


def settings(**overrides):
    base = dict(reference_size=4000, window_size=1000, performance_window=200, window_seconds=1e9,
                multivariate={"enabled": False}, segment_min_size=100)
    return ModelSettings().merged({**base, **overrides})


def run(monitor, events, batch=100):
    out, events = [], list(events)
    for i in range(0, len(events), batch):
        out += monitor.add_predictions(events[i:i + batch])
    return out


def kinds(out, kind):
    return [a for k, a in out if k == "alert" and a["kind"] == kind]


@pytest.mark.parametrize("calibrate", [100.0, 0.0])
def test_a_feature_correlated_with_the_segment_does_not_raise_segment_drift(calibrate):
    monitor = ModelMonitor("m", settings(calibrate_ert_windows=calibrate))
    out = run(monitor, regional_traffic(4000 + 20_000, seed=1))
    assert kinds(out, "segment_drift") == []
    version = monitor.versions["1"]
    assert sorted(version.reference.segments) == ["region=apac", "region=eu", "region=us"]
    report = version.last_window["segment_drift"]
    assert set(report["tested"]) == {"region=us", "region=eu", "region=apac"} and report["untested"] == {}
    # four features and their missing rates (outputs left out) for three segment values, one family;
    # country is constant inside us (one category, nothing for chi-squared to test)
    assert report["family_size"] == 3 * 4 * 2 - 1


def test_a_shift_inside_one_segment_is_caught_against_its_own_reference():
    monitor = ModelMonitor("m", settings())
    out = run(monitor, regional_traffic(4000 + 6000, seed=2, shift_at=7000))
    alerts = kinds(out, "segment_drift")
    assert alerts, "the eu amount shift must be reported"
    first = alerts[0]
    assert first["window"]["index"] == 3 and "region=eu:amount" in first["features"]
    assert not any(f.startswith(("region=us", "region=apac")) for a in alerts for f in a["features"])
    evidence = first["evidence"]["region=eu:amount"]
    assert evidence["segment"] == {"region": "eu"} and evidence["family_size"] == 23
    # the p-value is scipy's KS of the window's eu rows against the reference's eu rows
    events = list(regional_traffic(10_000, seed=2, shift_at=7000))
    ref = [e["features"]["amount"] for e in events[:4000] if e["segment"]["region"] == "eu"]
    cur = [e["features"]["amount"] for e in events[7000:8000] if e["segment"]["region"] == "eu"]
    assert evidence["p_value"] == pytest.approx(stats.ks_2samp(cur, ref).pvalue, rel=1e-9)
    assert evidence["segment_reference_rows"] == len(ref) and evidence["segment_rows"] == len(cur)


def test_segment_values_without_enough_reference_rows_are_reported_untested_not_tested():
    def traffic():
        for e in regional_traffic(4000 + 3000, seed=3):
            # a new region appears after the reference period: no reference rows of its own
            if e["timestamp"] >= 4000 and e["segment"]["region"] == "apac":
                e["segment"] = {"region": "latam"}
            yield e

    monitor = ModelMonitor("m", settings(calibrate_ert_windows=0))
    out = run(monitor, traffic())
    assert kinds(out, "segment_drift") == []
    report = monitor.versions["1"].last_window["segment_drift"]
    assert "region=latam" in report["untested"] and "0 reference rows" in report["untested"]["region=latam"]
    assert "region=latam" not in report["tested"]


def test_an_explicit_reference_without_segments_leaves_segments_untested():
    events = list(regional_traffic(3000, seed=4))
    columns = {name: [e["features"][name] for e in events[:2000]] for name in events[0]["features"]}
    monitor = ModelMonitor("m", settings())
    monitor.set_reference("1", ReferenceProfile.from_columns(columns, reference_id="file"))
    out = run(monitor, events[2000:])
    assert kinds(out, "segment_drift") == []
    assert monitor.versions["1"].last_window["segment_drift"]["untested"]["region=us"] == "the reference has no segments"


def test_segment_references_survive_json_and_old_checkpoints_restore():
    events = list(regional_traffic(4000, seed=5))
    columns = {name: [e["features"][name] for e in events] for name in events[0]["features"]}
    profile = ReferenceProfile.from_columns(columns, segments=[e["segment"] for e in events])
    again = ReferenceProfile.from_dict(profile.to_dict())
    assert again.segment_sizes == profile.segment_sizes
    assert again.segments["region=eu"].features["amount"].sample.tolist() == \
        profile.segments["region=eu"].features["amount"].sample.tolist()
    # a checkpoint from before per-segment references: the new fields are absent
    monitor = ModelMonitor("m", settings(reference_size=500))
    run(monitor, events[:300])
    version = monitor.versions["1"]
    state = flat_state(version)
    for name in ("_reference_segments", "segment_window_settings", "segment_calibration", "_segment_report"):
        del state[name]
    restored = pickle.loads(pickle.dumps(monitor))
    restored.versions["1"].__dict__.clear()
    restored.versions["1"].__setstate__(state)
    out = run(restored, events[300:2000])
    assert restored.versions["1"].reference is not None and restored.versions["1"].reference.segments is None
    assert kinds(out, "segment_drift") == []
