"""Alerts and retrain requests are typed records inside the monitor (issue 13) and the wire
format's dicts only where they leave it (``ModelMonitor``'s methods)."""
import pickle

from detectors.alerts import Alert, RetrainRequest, build_alert, make_alert, wire
from detectors.monitor import ModelMonitor, VersionMonitor
from detectors.settings import ModelSettings
from tests.detectors.checkpoint_stream import SETTINGS, stream


def test_the_wire_dict_is_the_records_fields_in_order():
    fields = dict(model="m", model_version="1", kind="input_drift", severity="warning", detector="ks",
                  feature="x", statistic=0.3, p_value=1e-6, threshold=0.01, window={"index": 2},
                  reference={"n": 10}, evidence={"x": {}}, id_parts=(2, "x"), now=5.0, conditions=["x"])
    alert = build_alert(**fields)
    assert alert.to_dict() == make_alert(**fields)
    assert list(alert.to_dict()) == ["alert_id", "model", "model_version", "kind", "severity", "feature", "features",
                                     "detector", "statistic", "p_value", "threshold", "window", "reference",
                                     "evidence", "message", "conditions", "config_version", "created_at"]
    assert alert.features == ["x"] and wire([alert]) == [("alert", alert.to_dict())]


def _without_clock(items):
    return [(tag, {k: v for k, v in record.items() if k not in ("created_at", "requested_at")}) for tag, record in items]


def test_versions_emit_records_and_the_model_emits_their_dicts():
    settings = ModelSettings(**{**SETTINGS, "retrain_min_interval": 0.0})
    predictions, _ = stream(0, 2400, seed=3, shift_from=1200)
    model, version = ModelMonitor("m", settings), VersionMonitor("m", "1", settings)
    from_model, records = [], []
    for event in predictions:   # one at a time: the model's row-by-row path, as the version's own
        from_model += model.add_predictions([event])
        records += version.add_prediction(event, None)
    assert {"alert", "retrain"} <= {tag for tag, _ in from_model}
    assert all(type(record) is dict for _, record in from_model)
    assert records and all(isinstance(record, (Alert, RetrainRequest)) for record in records)
    assert _without_clock(wire(records)) == _without_clock(from_model)
    restored = pickle.loads(pickle.dumps(version))   # records are not state: the version pickles as before
    assert restored.status()["counts"] == version.status()["counts"]
