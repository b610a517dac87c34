"""Serving latency and business KPIs (issue 15): silent on stationary traffic, fire on a change,
every number equal to numpy's / scipy's on the same data.

The traffic has the structure real traffic has: latency depends on the region (a segment)
and on a feature (bigger requests are slower), the label depends on the features, and
revenue is earned only on a converted (positive) label, its amount another feature.
"""
from __future__ import annotations

import pickle

import numpy as np
import orjson
import pytest
from scipy import stats

from detectors.kpi import KpiTracker, compare_kpi, mean_ci
from detectors.latency import LatencyTracker
from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings
from streams.records import validate_label, validate_prediction
from tests.schemas.outputs import problems, validators
from tests.detectors.legacy_layout import flat_state

REGIONS = np.array(["eu", "us", "apac"])
REGION_MS = {"eu": 40.0, "us": 60.0, "apac": 95.0}


def traffic(n: int, seed: int, **kwargs):
    """Predictions and labels through the real validators (wire format in, validated dicts out)."""
    predictions, labels = wire_traffic(n, seed, **kwargs)
    return ([validate_prediction(p, 0.0) for p in predictions], [validate_label(label, 0.0) for label in labels])


def wire_traffic(n: int, seed: int, start: int = 0, version: str = "1", slow_from: int | None = None,
                 slow_factor: float = 1.6, revenue_drop_from: int | None = None, revenue_factor: float = 0.7,
                 model: str = "shop", epoch: float = 0.0):
    """Predictions and labels as a producer sends them."""
    rng = np.random.default_rng(seed)
    predictions, labels = [], []
    for i in range(start, start + n):
        region = str(REGIONS[rng.choice(3, p=[0.5, 0.3, 0.2])])
        size = float(rng.lognormal(0.0, 0.5))                      # request size: slower and pricier
        x = float(rng.normal())
        score = float(1 / (1 + np.exp(-(1.4 * x + 0.3 * np.log(size) - 0.4))))
        label = bool(rng.random() < score)
        latency = REGION_MS[region] * (0.8 + 0.2 * size) * float(rng.gamma(9.0, 1 / 9.0))
        if slow_from is not None and i >= slow_from:
            latency *= slow_factor
        revenue = 8.0 * size * float(rng.gamma(4.0, 0.25)) if label else 0.0
        if revenue_drop_from is not None and i >= revenue_drop_from:
            revenue *= revenue_factor
        pid = f"{model}-{version}-{i}"
        predictions.append({
            "prediction_id": pid, "model": model, "model_version": version, "timestamp": epoch + i,
            "features": {"x": x, "size": size, "region": region}, "prediction": score >= 0.5, "score": score,
            "segment": {"region": region}, "latency_ms": round(latency, 3),
            "kpis": {"cost": 0.01 * size}})
        labels.append({"prediction_id": pid, "model": model, "label": label, "timestamp": epoch + i,
                       "kpis": {"revenue": revenue}})
    return predictions, labels


def settings(**overrides) -> ModelSettings:
    base = dict(reference_size=2000, window_size=500, window_seconds=1e9, performance_window=400,
                multivariate={"enabled": False}, estimate_performance=False, segment_drift=False,
                feature_types={"region": "categorical"},
                latency_slo_ms={"p99": 250.0}, kpis={"revenue": "higher", "cost": "lower"})
    return ModelSettings().merged({**base, **overrides})


def run(monitor: ModelMonitor, predictions, labels, batch: int = 50) -> list:
    out = []
    for i in range(0, len(predictions), batch):
        out += monitor.add_predictions(predictions[i:i + batch])
        out += monitor.add_labels(labels[i:i + batch])
    return out


def alerts(out, kind):
    return [a for k, a in out if k == "alert" and a["kind"] == kind]


# -- latency ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [11, 12])
def test_stationary_latency_correlated_with_segment_and_feature_raises_no_latency_alert(seed):
    monitor = ModelMonitor("shop", settings())
    out = run(monitor, *traffic(2000 + 40 * 500, seed))
    version = monitor.versions["1"]
    assert version.counts["windows"] == 40
    assert alerts(out, "latency") == [], [a["message"] for a in alerts(out, "latency")]
    assert all(a["features"] != ["latency_ms"] for a in alerts(out, "data_quality"))
    # the p99 of every window stayed under the SLO, and status shows rolling percentiles
    rolling = version.status()["latency"]["rolling"]
    assert 0 < rolling["p50"] < rolling["p95"] < rolling["p99"] < 250


def test_a_slowdown_raises_one_latency_alert_with_numpy_and_scipy_numbers():
    predictions, labels = traffic(2000 + 12 * 500, 21, slow_from=2000 + 6 * 500, slow_factor=1.8)
    monitor = ModelMonitor("shop", settings())
    out = run(monitor, predictions, labels)
    found = alerts(out, "latency")
    assert len(found) == 1, [a["message"] for a in found]
    alert = found[0]
    assert alert["window"]["index"] == 6                     # the first slow window: delay 0 windows
    latencies = np.array([p["latency_ms"] for p in predictions])
    window = latencies[2000 + 6 * 500:2000 + 7 * 500]
    baseline = latencies[:2000]
    assert alert["evidence"]["latency_ms:p99"]["statistic"] == pytest.approx(np.percentile(window, 99), rel=1e-12)
    assert alert["statistic"] == pytest.approx(np.percentile(window, 99), rel=1e-12)
    assert np.percentile(window, 99) > 250 and alert["threshold"] == 250.0
    drift = alert["evidence"]["latency_ms"]
    scipy = stats.ks_2samp(window, baseline)
    assert drift["p_value"] == pytest.approx(scipy.pvalue, rel=1e-9, abs=1e-300)
    assert drift["statistic"] == pytest.approx(scipy.statistic, rel=1e-12)
    assert alert["evidence"]["percentiles"]["p50"] == pytest.approx(np.percentile(window, 50), rel=1e-12)
    # its own family: latency never shows up as input drift
    assert all("latency_ms" not in a["features"] for a in alerts(out, "input_drift"))
    summary = monitor.versions["1"].last_window["latency"]
    assert summary["slo"]["p99"]["breached"] is True
    # the window history's entry (sinks.history stores these summaries as they are)
    entry = next(w for w in monitor.window_summaries() if w["index"] == 6)
    assert entry["latency"]["percentiles"]["p99"] == pytest.approx(np.percentile(window, 99), rel=1e-12)
    assert entry["latency"]["drift"]["drifted"] is True and entry["kpis"]["revenue"]["n"] > 0
    assert any(a["kind"] == "latency" for a in entry["alerts"])


def test_latency_false_alarm_rate_matches_its_ert_calibration():
    """300 stationary windows of a region x size mixture at ERT 100: about 3 false alarms expected."""
    rng = np.random.default_rng(5)

    def draw(n):
        region = rng.choice(3, p=[0.5, 0.3, 0.2], size=n)
        size = rng.lognormal(0.0, 0.5, size=n)
        return np.array([40.0, 60.0, 95.0])[region] * (0.8 + 0.2 * size) * rng.gamma(9.0, 1 / 9.0, size=n)

    tracker = LatencyTracker(reference_size=2000, window_size=500, ert_windows=100)
    tracker.observe(draw(2000))
    alarms = 0
    for _ in range(300):
        tracker.observe(draw(500))
        alarms += "latency_ms" in tracker.close_window().findings()
    assert alarms <= 9, alarms                               # mean run length >= ERT / 3
    tracker.observe(draw(500) * 1.15)                        # 15% slower
    assert "latency_ms" in tracker.close_window().findings()


def test_negative_latency_is_counted_and_reported_as_data_quality_not_a_crash():
    predictions, labels = traffic(2000 + 2 * 500, 31)
    for p in predictions[2000 + 500:2000 + 510]:
        p["latency_ms"] = -3.0
    monitor = ModelMonitor("shop", settings())
    out = run(monitor, predictions, labels)
    version = monitor.versions["1"]
    assert version.counts["predictions"] == 3000           # the events themselves were folded in
    assert version.latency.status()["counts"]["invalid"] == 10
    quality = [a for a in alerts(out, "data_quality") if "latency_ms" in a["features"]]
    assert len(quality) == 1 and quality[0]["evidence"]["latency_ms"]["invalid"] == 10
    assert version.last_window["latency"]["invalid"] == 10


# -- KPIs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [41, 42])
def test_stationary_kpis_correlated_with_the_label_raise_no_kpi_alert(seed):
    monitor = ModelMonitor("shop", settings())
    out = run(monitor, *traffic(2000 + 30 * 500, seed))
    assert alerts(out, "kpi") == [], [a["message"] for a in alerts(out, "kpi")]
    kpis = monitor.versions["1"].status()["kpis"]["kpis"]
    assert kpis["revenue"]["baseline"]["complete"] and kpis["revenue"]["n_rolling"] == 400
    assert set(kpis["revenue"]["segments"]) == {"region=eu", "region=us", "region=apac"}


def test_a_revenue_drop_raises_a_kpi_alert_whose_p_value_is_scipys_welch():
    drop_at = 2000 + 10 * 500
    predictions, labels = traffic(2000 + 16 * 500, 52, revenue_drop_from=drop_at, revenue_factor=0.6)
    monitor = ModelMonitor("shop", settings())
    out = run(monitor, predictions, labels)
    found = alerts(out, "kpi")
    assert found and found[0]["window"]["labelled"] > drop_at, [a["message"] for a in found]
    alert = found[0]                                         # raised while labels came in
    assert "revenue" in alert["features"]
    seen = alert["window"]["labelled"]                       # labels folded in when it was raised
    revenue = np.array([label["kpis"]["revenue"] for label in labels[:seen]])
    baseline, rolling = revenue[:400], revenue[400:][-400:]
    welch = stats.ttest_ind(rolling, baseline, equal_var=False, alternative="less")
    evidence = alert["evidence"]["revenue"]
    assert evidence["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert evidence["rolling_mean"] == pytest.approx(rolling.mean(), rel=1e-12)
    assert evidence["baseline_mean"] == pytest.approx(baseline.mean(), rel=1e-12)
    assert evidence["gap"] > 0.05 and evidence["p_value"] < 0.001 and "revenue" in evidence["scopes"]
    # the previous check (100 labels earlier) did not find it yet: the alert is the first look that does
    earlier = revenue[:seen - 100]
    before = stats.ttest_ind(earlier[400:][-400:], earlier[:400], equal_var=False, alternative="less").pvalue
    assert before >= 0.001 or earlier[400:][-400:].mean() > 0.95 * earlier[:400].mean()
    delay = seen - drop_at
    assert 0 < delay <= 2 * 400, delay                           # labels after the drop until the alert
    # raised between window closes: its window is the rolling KPI sample tested, and the alert is schema-valid
    assert alert["window"]["n"] == evidence["n_rolling"] == 400 and alert["window"]["size"] == 400
    checks = validators()
    assert [problem for a in alerts(out, "kpi") for problem in problems("alerts", orjson.dumps(a), {}, checks)] == []


def test_kpi_false_alarms_on_stationary_heavy_tailed_revenue_are_rare():
    """200 stationary streams of 8,000 labels (revenue only on a converted label, lognormal basket),
    checked as the monitor does (every window // 4 values): at most 10% of them see a false alarm,
    i.e. about one per 80,000 labels or more (measured: 3.5%)."""
    fired = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        size, converted = rng.lognormal(0.0, 0.5, 8000), rng.random(8000) < 0.45
        revenue = np.where(converted, 8.0 * size * rng.gamma(4.0, 0.25, 8000), 0.0)
        kpis = KpiTracker({"revenue": "higher"}, window=400, tolerance=0.05, alpha=0.001)
        for i in range(0, 8000, 100):
            kpis.observe("revenue", revenue[i:i + 100])
            if kpis.check():
                fired += 1
                break
    assert fired <= 20, fired


def test_kpi_direction_lower_is_better_fires_on_a_rise():
    rng = np.random.default_rng(3)
    kpis = KpiTracker({"cost": "lower"}, window=300, tolerance=0.05, alpha=0.001)
    kpis.observe("cost", rng.gamma(2.0, 1.0, size=600))
    assert kpis.check() == {}
    kpis.observe("cost", rng.gamma(2.0, 1.0, size=300) * 0.7)   # cheaper: good news, silent
    assert kpis.check() == {}
    kpis.observe("cost", rng.gamma(2.0, 1.0, size=300) * 1.5)
    finding = kpis.check()["cost"]
    base = np.asarray(kpis._stats["cost"][""].baseline)
    rolling = np.asarray(kpis._stats["cost"][""].rolling)
    assert finding.p_value == pytest.approx(stats.ttest_ind(rolling, base, equal_var=False,
                                                            alternative="greater").pvalue, rel=1e-9)


def test_kpi_confidence_interval_is_scipys_t_interval():
    values = np.random.default_rng(0).exponential(3.0, size=250)
    mean, low, high = mean_ci(values)
    expected = stats.t.interval(0.95, values.size - 1, loc=values.mean(), scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected, rel=1e-12) and mean == pytest.approx(values.mean())


def test_bad_kpis_are_counted_never_stop_the_event():
    label = validate_label({"prediction_id": "a", "model": "shop", "label": True,
                            "kpis": {"revenue": 5.0, "margin": 1.0, "cost": "free", "x": None}}, 0.0)
    assert label["kpis"] == {"revenue": 5.0, "margin": 1.0} and label["invalid_kpis"] == ["cost", "x"]
    not_object = validate_prediction({"prediction_id": "b", "model": "shop", "prediction": 1, "kpis": [1, 2]}, 0.0)
    assert not_object["kpis"] == {} and not_object["invalid_kpis"] == ["(kpis)"]
    monitor = ModelMonitor("shop", settings())
    prediction = validate_prediction({"prediction_id": "a", "model": "shop", "prediction": True, "score": 0.9,
                                      "features": {"x": 1.0}}, 0.0)
    monitor.add_predictions([prediction])
    monitor.add_labels([label])
    kpis = monitor.versions["0"].kpis
    assert kpis.status()["counts"] == {"observed": 1, "invalid": 2, "unknown": 1, "segments_dropped": 0}
    assert list(kpis.unknown_names) == ["margin"]             # never configured: not tracked
    assert monitor.versions["0"].counts["labelled"] == 1     # the label itself counted


def test_label_before_prediction_keeps_its_kpis():
    monitor = ModelMonitor("shop", settings())
    monitor.add_labels([validate_label({"prediction_id": "a", "model": "shop", "label": True,
                                        "kpis": {"revenue": 7.0}}, 0.0)])
    monitor.add_predictions([validate_prediction({"prediction_id": "a", "model": "shop", "prediction": True,
                                                  "score": 0.8, "segment": {"region": "eu"}}, 0.0)])
    summary = monitor.versions["0"].kpis.summary()["revenue"]
    assert summary["n"] == 1 and summary["segments"]["region=eu"]["n"] == 1


# -- champion / challenger -----------------------------------------------------------------
def test_comparison_reports_latency_and_kpi_differences_and_can_decide_on_a_kpi():
    monitor = ModelMonitor("shop", settings(compare_on="kpi:revenue", comparison_min_labelled=300, champion="1"))
    champion = traffic(3000, 61, version="1")
    challenger = traffic(3000, 62, version="2", slow_from=0, slow_factor=1.3, revenue_drop_from=0,
                         revenue_factor=0.6)
    out = []
    for i in range(0, 3000, 50):
        for predictions, labels in (champion, challenger):
            out += monitor.add_predictions(predictions[i:i + 50])
            out += monitor.add_labels(labels[i:i + 50])
    found = alerts(out, "comparison")
    assert found, "no comparison"
    last = found[-1]
    assert last["evidence"]["compare_on"] == "kpi:revenue"
    assert last["evidence"]["recommendation"] == "rollback"   # less revenue, whatever the error says
    assert "revenue" in last["message"] and "decided on it" in last["message"]
    kpi = last["evidence"]["kpis"]["revenue"]
    assert kpi["difference"] < 0 and kpi["p_value"] < 0.05
    assert last["detector"] == "comparison.kpi_welch_t"
    assert (last["statistic"], last["p_value"]) == (kpi["difference"], kpi["p_value"])
    latency = last["evidence"]["latency"]
    assert latency["difference_ms"]["p50"] > 0                # the challenger is slower
    a = monitor.versions["1"].kpis.values("revenue")
    b = monitor.versions["2"].kpis.values("revenue")
    assert compare_kpi("revenue", a, b).difference == pytest.approx(b.mean() - a.mean())
    assert compare_kpi("revenue", a, b).p_value == pytest.approx(
        stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-12)


def test_compare_on_must_name_a_configured_kpi():
    with pytest.raises(ValueError, match="names a KPI not in kpis"):
        ModelSettings().merged({"compare_on": "kpi:revenue"})


def test_trackers_pickle_small_and_resume():
    monitor = ModelMonitor("shop", settings())
    run(monitor, *traffic(2000 + 2 * 500, 71))
    version = monitor.versions["1"]
    latency, kpis = pickle.dumps(version.latency), pickle.dumps(version.kpis)
    assert len(latency) < 150_000 and len(kpis) < 100_000, (len(latency), len(kpis))
    restored = pickle.loads(pickle.dumps(monitor))
    assert restored.versions["1"].latency.rolling_percentiles() == version.latency.rolling_percentiles()
    assert restored.versions["1"].kpis.summary() == version.kpis.summary()


def test_checkpoints_from_before_latency_and_kpis_get_fresh_trackers():
    monitor = ModelMonitor("shop", settings())
    run(monitor, *traffic(100, 81))
    state = flat_state(monitor.versions["1"])
    del state["latency"], state["kpis"]
    version = object.__new__(type(monitor.versions["1"]))
    version.__setstate__(state)
    assert version.latency.counts["observed"] == 0 and version.kpis.directions == {"revenue": "higher",
                                                                                    "cost": "lower"}


def test_prometheus_exposes_latency_percentiles_kpis_and_invalid_counts():
    from tests.streams.test_metrics import samples, value, worker_with
    from streams.config import Settings
    from streams.metrics import Metrics

    predictions, labels = traffic(2000 + 2 * 500, 91)
    predictions[-1]["latency_ms"] = -1.0
    monitor = ModelMonitor("shop", settings())
    run(monitor, predictions, labels)
    version = monitor.versions["1"]
    found = samples(Metrics(worker_with(monitor), Settings()).exposition().decode())
    latencies = np.array([p["latency_ms"] for p in predictions])
    window = latencies[2500:3000]
    assert value(found, "driftline_latency_ms", model="shop", model_version="1", quantile="p99",
                 scope="window") == pytest.approx(np.percentile(window[window >= 0], 99))
    assert value(found, "driftline_latency_ms", model="shop", model_version="1", quantile="p50",
                 scope="rolling") == pytest.approx(version.latency.rolling_percentiles()["p50"])
    revenue = version.kpis.summary()["revenue"]
    assert value(found, "driftline_kpi", model="shop", model_version="1", kpi="revenue",
                 stat="mean") == pytest.approx(revenue["mean"])
    assert value(found, "driftline_invalid_values_total", model="shop", model_version="1",
                 field="latency_ms") == 1
    assert value(found, "driftline_active_condition", model="shop", model_version="1", kind="latency") == 0


@pytest.mark.parametrize("text, expected", [
    ("[models.shop]\nlatency_slo_ms = { q99 = 250 }\n", "models.shop.latency_slo_ms: a percentile is named like 'p99'"),
    ("[models.shop]\nlatency_slo_ms = { p99 = -1 }\n", "models.shop.latency_slo_ms: p99: the limit must be a positive"),
    ("[models.shop]\nkpis = { revenue = \"up\" }\n", "models.shop.kpis.revenue: 'up' is not one of 'higher', 'lower'"),
    ("[defaults]\ncompare_on = \"revenue\"\n", "defaults.compare_on: must be \"error\" or \"kpi:NAME\""),
    ("[defaults]\nretrain_on = [\"kpi:critical\", \"latency:warning\"]\n", None),
])
def test_latency_and_kpi_settings_are_checked_at_start_up(tmp_path, text, expected):
    from streams import config
    from streams.config_check import ConfigError

    path = tmp_path / "driftline.toml"
    path.write_text(text)
    if expected is None:
        assert config.load(path, env={"HOME": "/nonexistent-home"}).defaults.retrain_on[0] == "kpi:critical"
        return
    with pytest.raises(ConfigError) as info:
        config.load(path, env={"HOME": "/nonexistent-home"})
    assert any(line.split(": ", 1)[1].startswith(expected) for line in info.value.lines), info.value.lines


def test_the_report_draws_latency_percentiles_and_kpis_from_the_window_history():
    from streams.report import model_page

    monitor = ModelMonitor("shop", settings())
    run(monitor, *traffic(2000 + 3 * 500, 95))
    page = model_page("shop", {"1": monitor.window_summaries()})
    assert 'id="outcomes-1"' in page and "latency p99 (ms)" in page and "revenue (rolling mean)" in page
    assert "SLO p99 250 ms" in page
    plain = ModelMonitor("shop", settings(kpis={}, latency_slo_ms={}))
    predictions, labels = traffic(2000 + 500, 96)
    for p in predictions:
        p["latency_ms"] = None
    run(plain, predictions, labels)
    assert 'id="outcomes-1"' not in model_page("shop", {"1": plain.window_summaries()})


@pytest.mark.parametrize("make, feed", [
    (lambda: LatencyTracker(reference_size=300, window_size=100, slo_ms={"p99": 50.0}),
     lambda t, rng: t.observe(rng.gamma(4.0, 3.0, size=500))),
    (lambda: KpiTracker({"revenue": "higher"}, window=100),
     lambda t, rng: t.observe("revenue", rng.normal(5.0, 1.0, size=300), [{"region": "eu"}] * 300)),
], ids=["LatencyTracker", "KpiTracker"])
def test_trackers_follow_the_estimator_protocol(make, feed):
    """repr shows the parameters, clone() is fresh with the same ones, a pickle resumes identically."""
    tracker = make()
    feed(tracker, np.random.default_rng(0))
    assert repr(tracker).startswith(type(tracker).__name__ + "(")
    fresh = tracker.clone()
    assert repr(fresh) == repr(tracker) and fresh.status()["counts"] != tracker.status()["counts"]
    restored = pickle.loads(pickle.dumps(tracker))
    for t in (tracker, restored):
        feed(t, np.random.default_rng(1))
    assert restored.status() == tracker.status()


def test_driftline_status_shows_latency_percentiles_and_kpis():
    import io

    import orjson
    from rich.console import Console

    from streams.cli import _status_view
    from streams.config import Settings

    monitor = ModelMonitor("shop", settings())
    run(monitor, *traffic(2000 + 2 * 500, 97))
    status = orjson.loads(orjson.dumps(monitor.versions["1"].status()))   # as Redis holds it
    out = io.StringIO()
    Console(file=out, width=300).print(_status_view(Settings(), [status]))
    line = next(line for line in out.getvalue().splitlines() if line.startswith("serving and KPIs"))
    p99 = monitor.versions["1"].latency.rolling_percentiles()["p99"]
    assert f"p99 {p99:.1f} ms" in line and "revenue" in line and "cost" in line
