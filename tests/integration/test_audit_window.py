"""driftline audit reads a window back as the worker saw it: re-forwarded events count once."""
from __future__ import annotations

import orjson
import pytest
from confluent_kafka import Producer

from streams.audit import window_events
from streams.config import Settings
from streams.internal_format import prediction_columns
from tests.integration.harness import bootstrap

pytestmark = [pytest.mark.integration,
              # kafka-python's protocol schemas use importlib.resources' legacy API
              pytest.mark.filterwarnings("ignore:read_text is deprecated", "ignore:open_text is deprecated")]


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "event-dicts"])
def test_window_events_skip_what_the_ingest_stage_forwarded_twice(broker_url, unique, columns):
    settings = Settings(broker=broker_url, app_id=f"audit-{unique}-{columns}")
    model = "m"
    e = [{"prediction_id": f"id-{i}", "model": model, "model_version": "1", "timestamp": 1.0e9 + i,
          "features": {"x": i}, "prediction": 1, "score": None, "segment": None, "latency_ms": None,
          "kpis": {}, "invalid_kpis": []} for i in range(7)]
    messages = [  # internal messages as the ingest stage writes them: events + source positions
        (model, {"p": e[0:3], "src": [[0, 10, 0, 3]]}),                          # offset 0, before the window
        (model, {"p": e[3:5], "src": [[0, 11, 0, 2]]}),                          # 1: the window opens at [1, 0]
        (model, {"p": [e[2], e[3], e[5]], "src": [[0, 10, 2, 1], [0, 11, 0, 1], [1, 5, 0, 1]]}),  # 2: two again
        ("other", {"p": [{**e[6], "model": "other"}], "src": [[0, 12, 0, 1]]}),  # 3: another model
        (model, {"p": [e[6]], "src": [[1, 6, 0, 1]]}),                           # 4: the window closes at [4, 0]
    ]
    if columns:   # what ingest writes since the columnar hop (streams.internal_format)
        messages = [(key, {"pc": prediction_columns(body["p"]), "src": body["src"]}) for key, body in messages]
    producer = Producer({"bootstrap.servers": bootstrap(broker_url)})
    for key, body in messages:
        producer.produce(settings.internal_topic, key=key.encode(), value=orjson.dumps(body), partition=0)
        producer.flush(10)   # one record per batch, offsets 0..4
    alert = {"model": model, "model_version": "1",
             "window": {"partition": 0, "n": 4, "offsets": {"first": [1, 0], "last": [4, 0]}}}

    events = window_events(settings, alert)

    assert [x["prediction_id"] for x in events] == ["id-3", "id-4", "id-5", "id-6"]
