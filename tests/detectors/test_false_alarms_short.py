"""The short version of ``python -m bench.false_alarms`` (issue 11, item 6): real data, every alert kind.

River's bundled Phishing data, shuffled and resampled so the stream is stationary,
with a segment that is a function of a feature, a boolean and a categorical
column; references from the first predictions and from a CSV file. The full
run (three data sets, 100 windows each) is in BENCHMARKS.md.
"""
from __future__ import annotations

import pytest

from bench import false_alarms as bench


@pytest.fixture(scope="module")
def phishing():
    return bench.Population("phishing")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["first", "csv"])
def test_no_alert_kind_raises_false_alarms_on_stationary_real_data(phishing, source, tmp_path):
    reference = bench.csv_reference(phishing, 101, tmp_path) if source == "csv" else None
    alerts, version = bench.run(phishing, reference, 25, seed=1)
    assert version.window_index == 25
    result = bench.false_alarms(alerts, 25, bench.population_gaps(phishing), 0.1)
    assert result["per_100_windows"] == dict.fromkeys(bench.KINDS, 0.0)


@pytest.mark.slow
def test_every_injected_change_is_caught_within_two_windows(phishing):
    shift_at = bench.REFERENCE + bench.SHIFT_WINDOW * bench.WINDOW
    delays = {}
    for kind, change in bench.changes(phishing, shift_at).items():
        alerts, _ = bench.run(phishing, None, bench.SHIFT_WINDOW + 3, seed=8, change=change)
        delays[kind] = bench.delay(alerts, kind)
    assert all(d is not None and d <= 2 for d in delays.values()), delays
