"""The archived reference carries both calibrations an audit needs (the window's and the segment family's)."""
import numpy as np

from detectors.monitor import ModelMonitor
from detectors.settings import ModelSettings
from streams.records import validate_prediction


def test_archive_holds_the_segment_family_settings_calibrated_apart():
    rng = np.random.default_rng(4)
    events = []
    for i in range(1200):
        channel = "web" if rng.random() < 0.6 else "app"
        x = rng.normal(1.0 if channel == "web" else 0.0)
        events.append(validate_prediction({
            "prediction_id": f"p{i}", "model": "m", "model_version": "1", "prediction": int(x > 0.5),
            "score": float(1 / (1 + np.exp(-x))), "segment": {"channel": channel},
            "features": {"x": x, "region": str(rng.choice(["n", "s"]))}}, 1.0e9 + i))
    monitor = ModelMonitor("m", ModelSettings(reference_size=1000, window_size=500))
    monitor.add_predictions(events, offset=0, partition=0)
    [entry] = monitor.archive()
    version = monitor.versions["1"]
    assert version.segment_calibration is not None                 # the segment family was calibrated...
    assert entry["segment_window_settings"] == version.segment_window_settings.to_dict()
    assert entry["segment_window_settings"]["alpha"] != entry["window_settings"]["alpha"]   # ...apart
