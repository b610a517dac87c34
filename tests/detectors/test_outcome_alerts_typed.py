"""Latency and KPI alerts are typed records (detectors.alerts.Alert) until the stream layer takes
them, like every other alert; their wire form is what the dict-building code emitted (the
latency and KPI alerts of fixtures/checkpoint_v1_expected.json, written by that code, are
compared in test_checkpoint_restore.py and test_checkpoint_format.py)."""
import numpy as np

from detectors.alerts import Alert
from detectors.kpi import KpiTracker, kpi_alert
from detectors.latency import LatencyTracker, latency_alert

COMMON = dict(model="m", model_version="1", window={"index": 3, "n": 200}, reference={"reference_id": "r"},
              window_index=3, config_version="c")


def test_a_latency_alert_is_a_typed_record_with_the_wire_fields():
    rng = np.random.default_rng(3)
    tracker = LatencyTracker(reference_size=400, window_size=200, slo_ms={"p99": 40.0}, ert_windows=0)
    tracker.observe(rng.gamma(9.0, 2.0, size=400))
    tracker.observe(rng.gamma(9.0, 2.0, size=200) * 2.5)
    report = tracker.close_window()
    alert = latency_alert(keys=sorted(report.findings()), report=report, **COMMON)
    assert isinstance(alert, Alert) and alert.kind == "latency" and alert.features == ["latency_ms"]
    wire = alert.to_dict()
    assert wire["evidence"]["latency_ms:p99"]["statistic"] == report.percentiles["p99"] > 40.0
    critical = report.percentiles["p99"] >= 80.0     # twice the SLO
    assert wire["conditions"] == ["latency_ms", "latency_ms:p99"] and critical
    assert wire["severity"] == "critical"
    assert wire["reference"]["latency"]["n"] == 400


def test_a_kpi_alert_is_a_typed_record_with_the_wire_fields():
    rng = np.random.default_rng(4)
    kpis = KpiTracker({"revenue": "higher"}, window=300, tolerance=0.05, alpha=0.001)
    kpis.observe("revenue", rng.normal(10.0, 3.0, size=600))
    kpis.observe("revenue", rng.normal(8.0, 3.0, size=300))
    findings = kpis.check()
    alert = kpi_alert(keys=["revenue"], findings=findings, **COMMON)
    assert isinstance(alert, Alert) and alert.kind == "kpi" and alert.features == ["revenue"]
    wire = alert.to_dict()
    assert wire["p_value"] == findings["revenue"].p_value and wire["conditions"] == ["revenue"]
    assert wire["message"].startswith("kpi: revenue ")
