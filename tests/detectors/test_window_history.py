"""The window summaries a monitor hands the window history: one per tested window, numbers as scipy's."""
from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.monitor import ModelMonitor
from tests.detectors.test_monitor import alerts, run, settings, traffic


def test_one_summary_per_window_with_the_tests_the_summaries_and_the_alerts_raised():
    events = list(traffic(500 + 250 * 4, seed=3, shift_at=1000, shift=1.0))
    monitor = ModelMonitor("m", settings(realert_windows=100))
    out = run(monitor, events)
    summaries = monitor.window_summaries()
    assert [s["index"] for s in summaries] == [0, 1, 2, 3] and monitor.window_summaries() == []
    reference = np.array([e["features"]["a"] for e in events[:500]])
    for s in summaries:
        rows = events[500 + 250 * s["index"]:500 + 250 * (s["index"] + 1)]
        current = np.array([e["features"]["a"] for e in rows])
        expected = stats.ks_2samp(reference, current)
        feature = s["features"]["a"]
        assert feature["detector"] == "ks"
        assert feature["statistic"] == expected.statistic and feature["p_value"] == expected.pvalue
        assert feature["current"]["mean"] == current.mean() and feature["reference"]["mean"] == reference.mean()
        assert (s["start"], s["end"], s["n"]) == (rows[0]["timestamp"], rows[-1]["timestamp"], 250)
    raised = {a["window"]["index"]: a["alert_id"] for a in alerts(out, "input_drift")}
    assert raised == {2: summaries[2]["alerts"][0]["alert_id"]}     # the shift starts at window 2
    assert summaries[2]["drifted_features"] == ["a"] and summaries[0]["alerts"] == []
