"""The README's configuration reference shows every sink type, and every option of the sinks that
take an envelope or talk to MLflow (the options themselves are checked by test_config_check)."""
from __future__ import annotations

from sinks import _OPTIONS
from tests.streams.test_config_check import _readme_config


def test_every_sink_type_and_the_new_options_are_in_the_reference():
    entries = _readme_config()["sinks"]
    assert {e["type"] for e in entries} >= set(_OPTIONS) - {"log"}
    for kind in ("kafka", "mlflow"):
        shown = set().union(*(set(e) for e in entries if e["type"] == kind))
        assert _OPTIONS[kind] <= shown, (kind, _OPTIONS[kind] - shown)
    webhook = set().union(*(set(e) for e in entries if e["type"] == "webhook"))
    assert _OPTIONS["webhook"] <= webhook, _OPTIONS["webhook"] - webhook
