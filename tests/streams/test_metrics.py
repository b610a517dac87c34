"""streams.metrics on real monitors (pure, in process): values equal the state they are read from."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from detectors.monitor import ModelMonitor
from sinks import SinkRouter
from streams.config import Settings
from streams.metrics import CONDITION_KINDS, Metrics
from tests.detectors.test_monitor import alerts, correct_label, run, settings, traffic

PROMTOOL = "/usr/bin/promtool"


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found[(name, frozenset(labels.items()))]


def worker_with(*monitors):
    return SimpleNamespace(monitors={m.model: (0, m) for m in monitors},
                           counts={"predictions": 0, "labels": 0, "alerts_sent": 2}, router=SinkRouter())


def drifting_then_clean():
    """Reference, 6 shifted windows, 3 clean ones (realert 4, resolve after 2)."""
    events = list(traffic(500 + 250 * 6, seed=3))
    for e in events[500:]:
        e["features"]["a"] += 2.0
    return events[:2000], events[2000:] + list(traffic(250 * 3, seed=4, start=len(events)))


def test_counters_and_condition_gauge_follow_the_monitor_state():
    monitor = ModelMonitor("m", settings(realert_windows=4, resolve_windows=2))
    drifting, clean = drifting_then_clean()
    out = run(monitor, drifting, correct_label)
    worker = worker_with(monitor)
    metrics = Metrics(worker, Settings())
    found = samples(metrics.exposition().decode())
    assert value(found, "driftline_events_total", model="m", model_version="1", kind="prediction") == 2000
    assert value(found, "driftline_events_total", model="m", model_version="1", kind="label") == 2000
    assert value(found, "driftline_windows_closed_total", model="m", model_version="1") == 6
    assert value(found, "driftline_model_alerts_total", model="m", model_version="1") == len(alerts(out))
    assert value(found, "driftline_active_condition", model="m", model_version="1", kind="input_drift") == 1
    assert value(found, "driftline_active_condition", model="m", model_version="1", kind="fairness") == 0
    assert value(found, "driftline_label_join_ratio", model="m", model_version="1") == 1.0
    assert value(found, "driftline_label_delay_seconds_count", model="m") == 2000
    assert value(found, "driftline_label_delay_seconds_sum", model="m") == pytest.approx(0.5 * 2000)
    assert value(found, "driftline_label_delay_seconds_bucket", model="m", le="1.0") == 2000
    assert value(found, "driftline_window_test_duration_seconds_count", model="m", model_version="1") == 6
    accuracy = monitor.versions["1"].rolling_metrics()["accuracy"]
    assert value(found, "driftline_rolling_metric", model="m", model_version="1", metric="accuracy") == accuracy
    assert value(found, "driftline_last_event_timestamp_seconds", model="m") == 1999.0
    assert value(found, "driftline_worker_events_total", kind="prediction") == 0
    assert value(found, "driftline_outputs_sent_total", kind="alert") == 2
    (info, one), = [(dict(labels), v) for (name, labels), v in found.items() if name == "driftline_build_info"]
    assert one == 1 and info["app_id"] == "driftline" and info["config_version"] == Settings().version_hash
    # per-feature gauges are opt-in
    assert not any(name == "driftline_feature_p_value" for name, _ in found)

    out += run(monitor, clean, correct_label)
    assert any(r["evidence"]["resolves"] == "input_drift" for r in alerts(out, "resolved"))
    found = samples(metrics.exposition().decode())
    assert value(found, "driftline_active_condition", model="m", model_version="1", kind="input_drift") == 0
    assert value(found, "driftline_events_total", model="m", model_version="1", kind="prediction") == 2750
    assert {labels for name, labels in found if name == "driftline_active_condition"} == {
        frozenset({"model": "m", "model_version": "1", "kind": kind}.items()) for kind in CONDITION_KINDS}


def test_models_no_longer_owned_leave_the_exposition():
    a, b = ModelMonitor("a", settings()), ModelMonitor("b", settings())
    run(a, traffic(600, model="a"))
    run(b, traffic(600, model="b"))
    worker = worker_with(a, b)
    metrics = Metrics(worker, Settings())
    models = lambda: {dict(labels).get("model") for _, labels in samples(metrics.exposition().decode())}  # noqa: E731
    assert {"a", "b"} <= models()
    del worker.monitors["a"]          # what Worker.forget_partitions does on a rebalance
    assert "a" not in models() and "b" in models()


def test_feature_gauges_are_opt_in_and_capped():
    monitors = [ModelMonitor(f"m{i}", settings()) for i in range(3)]
    for m in monitors:
        run(m, traffic(750, model=m.model))     # reference + one window: 3 features + prediction + score
    per_model = len(monitors[0].versions["1"].last_window["drift"])
    on = dataclasses.replace(Settings(), metrics_feature_gauges=True, metrics_max_feature_series=per_model + 2)
    found = samples(Metrics(worker_with(*monitors), on).exposition().decode())
    p_values = {(dict(l)["model"], dict(l)["feature"]): v for (n, l), v in found.items() if n == "driftline_feature_p_value"}
    assert len(p_values) == per_model + 2
    drift = monitors[0].versions["1"].last_window["drift"]
    assert p_values[("m0", "a")] == drift["a"]["p_value"]
    assert value(found, "driftline_feature_series_dropped") == 3 * per_model - (per_model + 2)
    threshold = [v for (n, l), v in found.items() if n == "driftline_feature_threshold" and dict(l)["feature"] == "a"]
    assert threshold and threshold[0] == drift["a"]["threshold"]


def test_instruments_count_alerts_by_kind_and_deadletters_by_reason():
    metrics = Metrics(worker_with(), Settings())
    metrics.instruments.sent("alert", {"kind": "input_drift", "severity": "critical", "window": {"end": 100.0}},
                             now=160.0)
    metrics.instruments.sent("retrain", {"kind": "retrain", "severity": "warning"})
    metrics.instruments.deadlettered("invalid JSON: unexpected end of data")
    metrics.instruments.deadlettered("timestamp must be finite")
    found = samples(metrics.exposition().decode())
    assert value(found, "driftline_alerts_total", kind="input_drift", severity="critical") == 1
    assert ("driftline_alerts_total", frozenset({"kind": "retrain", "severity": "warning"}.items())) not in found
    assert value(found, "driftline_alert_latency_seconds_sum") == 60.0
    assert value(found, "driftline_alert_latency_seconds_bucket", le="60.0") == 1
    assert value(found, "driftline_alert_latency_seconds_bucket", le="15.0") == 0
    assert value(found, "driftline_deadletter_total", reason="invalid_json") == 1
    assert value(found, "driftline_deadletter_total", reason="invalid_event") == 1
    assert value(found, "driftline_deadletter_total", reason="too_large") == 0


def test_promtool_finds_nothing_to_report():
    if not shutil.which(PROMTOOL):
        pytest.skip(f"{PROMTOOL} missing (Debian package prometheus; .ci/run installs it)")
    monitor = ModelMonitor("m", settings(realert_windows=4, resolve_windows=2))
    run(monitor, drifting_then_clean()[0], correct_label)
    on = dataclasses.replace(Settings(), metrics_feature_gauges=True)
    metrics = Metrics(worker_with(monitor), on)
    metrics.instruments.sent("alert", {"kind": "input_drift", "severity": "warning", "window": {"end": 1.0}})
    text = metrics.exposition()
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert checked.returncode == 0 and checked.stdout == b"" and checked.stderr == b"", checked
