"""What the worker writes follows the schemas: drifting traffic, delayed and wrong labels, bad input."""
from __future__ import annotations

import orjson
import pytest

from tests.integration.harness import bootstrap, drift_traffic, produce, topic, wait_processed, wait_until
from tests.schemas.outputs import check_topics, read_output_topics

pytestmark = pytest.mark.integration



def _bad(model: str) -> list[bytes]:
    return [b"{not json", b"\xff\xfe\x00garbage", b"[]", orjson.dumps({"prediction_id": "x", "model": model}),
            orjson.dumps({"prediction_id": "", "model": model, "prediction": 1}),
            orjson.dumps([{"prediction_id": "ok", "model": model, "prediction": 1}, {"model": model, "prediction": 1}])]


def test_every_output_record_validates_against_its_schema(shared_worker, broker_url, redis_url, unique):
    model, n, k = f"contract-{unique}", 3500, 2000
    events = list(drift_traffic(n, shift_at=k, model=model, shift=1.5))
    produce(broker_url, topic(shared_worker.env, "predictions"), [events[i:i + 50] for i in range(0, n, 50)],
            key=model.encode())   # one partition: the reference is the first events sent
    produce(broker_url, topic(shared_worker.env, "predictions"), _bad(f"{model}-bad"))
    # labels: right before the shift, wrong after it -> a performance alert
    labels = [{"prediction_id": e["prediction_id"], "model": model,
               "label": e["prediction"] if i < k else 1 - e["prediction"]} for i, e in enumerate(events)]
    produce(broker_url, topic(shared_worker.env, "labels"), [labels[i:i + 100] for i in range(0, n, 100)])
    produce(broker_url, topic(shared_worker.env, "labels"), [b'{"model": "m", "label": 1}'])
    wait_processed(redis_url, {model: n})

    mine = {t: topic(shared_worker.env, t) for t in ("alerts", "retrain", "deadletter")}

    def outputs():
        found = read_output_topics(bootstrap(broker_url), only=set(mine.values()))
        kinds = {orjson.loads(v)["kind"] for v, _ in found.get(mine["alerts"], [])
                 if orjson.loads(v)["model"] == model}
        complete = ({"input_drift", "performance"} <= kinds and found.get(mine["retrain"])
                    and len(found.get(mine["deadletter"], [])) >= 6)
        return found if complete else None

    found = wait_until(outputs, timeout=90, interval=2, what="drift and performance alerts, a retrain, 6 dead letters")
    checked, problems = check_topics(found)
    assert problems == []
    assert checked >= 9
    dead = [orjson.loads(v) for v, _ in found[mine["deadletter"]]]
    assert {d["index"] for d in dead} >= {None, 1}
