"""The whole path on real parts: foreign producer -> broker -> worker -> alerts/dead letters, Redis status."""
from __future__ import annotations

import time

import orjson
import pytest

from tests.integration.harness import Reader, all_statuses, drift_traffic, produce, topic

pytestmark = pytest.mark.integration

START = 1_767_225_600.0


def _status(redis_url: str, model: str) -> dict:
    for s in all_statuses(redis_url):
        if s.get("model") == model:
            return s
    return {}


def _wait_processed(redis_url: str, model: str, n: int, timeout: float = 90.0, labelled: int = 0) -> dict:
    deadline = time.monotonic() + timeout
    status = {}
    while time.monotonic() < deadline:
        status = _status(redis_url, model)
        counts = status.get("counts", {})
        if counts.get("predictions", 0) >= n and counts.get("labelled", 0) >= labelled:
            return status
        time.sleep(0.3)
    raise AssertionError(f"{model}: only {status.get('counts')} processed after {timeout}s")


def test_shift_after_k_alerts_on_that_feature_and_nothing_before(shared_worker, broker_url, redis_url, unique):
    model, n, k = f"credit-{unique}", 4500, 2500
    events = list(drift_traffic(n, shift_at=k, model=model, shift=0.5))
    # micro-batches of 50, as a JSON array per message; labels agree with predictions. Keyed by
    # model, so one partition holds them in event order and every window is the same seeded
    # sample in every run: spread over partitions by the producer's timing, the three stationary
    # windows differed from run to run, each with the calibrated false-alarm chance (~1 in 100)
    produce(broker_url, topic(shared_worker.env, "predictions"),
            [events[i:i + 50] for i in range(0, n, 50)], key=model.encode())
    produce(broker_url, topic(shared_worker.env, "labels"),
            [[{"prediction_id": e["prediction_id"], "model": model, "label": e["prediction"]}
              for e in events[i:i + 100]] for i in range(0, n, 100)], key=model.encode())
    _wait_processed(redis_url, model, n, labelled=n)
    reader = Reader(broker_url, topic(shared_worker.env, "alerts"))
    alerts = [a for a in reader.drain(idle=3.0) if a["model"] == model]
    reader.close()

    drift = [a for a in alerts if a["kind"] == "input_drift"]
    before = [a for a in drift if a["window"]["end"] < START + k]
    assert before == [], f"false alarms before the shift: {[a['features'] for a in before]}"
    caught = [a for a in drift if "income" in a["features"]]
    assert caught, f"no input_drift alert on income; got {[(a['kind'], a['features']) for a in alerts]}"
    # bound by the window's event times (windows follow arrival order)
    first = min(caught, key=lambda a: a["window"]["index"])
    assert first["window"]["end"] >= START + k
    assert first["window"]["start"] <= START + k + 1000, "caught within two windows of the shift"
    assert first["feature"] == "income" and first["detector"] == "ks"
    assert first["p_value"] is not None and first["p_value"] < first["threshold"]
    assert set(first["features"]) <= {"income"}, f"only income drifted: {first['features']}"
    # well-formed: the contract's fields, evidence with reference vs current summaries
    for field in ("alert_id", "model", "model_version", "kind", "severity", "feature", "detector",
                  "statistic", "p_value", "threshold", "window", "reference", "created_at", "evidence"):
        assert field in first, field
    evidence = first["evidence"]["income"]
    # the window may straddle the shift (arrival order), so the mean moved by up to 0.5 std
    assert 0.15 < evidence["current"]["mean"] - evidence["reference"]["mean"] < 0.7
    assert first["window"]["n"] == 500 and first["reference"]["source"] == "first_predictions"
    # predictions agree with labels: no performance alert
    assert not [a for a in alerts if a["kind"] == "performance"]
    status = _status(redis_url, model)
    assert status["counts"]["labelled"] == n
    assert status["metrics"]["accuracy"] == pytest.approx(1.0)


BAD_PAYLOADS = [
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"NaN",
    b'{"prediction_id": "x", "model": "m", "prediction": NaN}',
    orjson.dumps({"model": "m", "prediction": 1}),                                   # no prediction_id
    orjson.dumps({"prediction_id": "x", "prediction": 1}),                           # no model
    orjson.dumps({"prediction_id": "x", "model": "m"}),                              # no prediction
    orjson.dumps({"prediction_id": 5, "model": "m", "prediction": 1}),               # wrong type
    orjson.dumps({"prediction_id": "x", "model": "m", "prediction": 1, "features": {"a": [1, 2]}}),
    orjson.dumps({"prediction_id": "x", "model": "m", "prediction": 1, "features": "oops"}),
    b'{"prediction_id": "x", "model": "m", "prediction": 1e999}',
    b"[]",
    b"1" * 1_100_000,                                                                 # over 1 MB
]


def test_bad_input_goes_to_deadletter_and_valid_events_keep_flowing(shared_worker, broker_url, redis_url, unique):
    model = f"dq-{unique}"
    good = list(drift_traffic(300, shift_at=10_000, model=model))
    mixed_batch = [good[0], {"prediction_id": "y", "model": model}]  # one bad element in a batch
    messages = [mixed_batch] + [item for pair in zip(BAD_PAYLOADS, good[1:]) for item in pair] + good[len(BAD_PAYLOADS) + 1:]
    produce(broker_url, topic(shared_worker.env, "predictions"), messages)
    produce(broker_url, topic(shared_worker.env, "labels"), [b"{}", b"oops", {"prediction_id": "z", "model": model}])
    status = _wait_processed(redis_url, model, len(good))
    assert status["counts"]["predictions"] == len(good)

    reader = Reader(broker_url, topic(shared_worker.env, "deadletter"))
    expected = len(BAD_PAYLOADS) + 1 + 3
    letters = reader.poll_until(lambda r: len(r) >= expected, timeout=30)
    reader.close()
    assert len(letters) == expected
    by_topic = {}
    for letter in letters:
        by_topic.setdefault(letter["source_topic"], []).append(letter)
        assert letter["reason"] and letter["offset"] >= 0 and letter["partition"] >= 0
    assert len(by_topic[topic(shared_worker.env, "labels")]) == 3
    reasons = " | ".join(letter["reason"] for letter in letters)
    for needle in ("invalid JSON", "prediction_id", "model must", "prediction is required", "exceeds",
                   "empty batch", "features must be an object"):
        assert needle in reasons, needle
    big = next(letter for letter in letters if "exceeds" in letter["reason"])
    assert big["payload_bytes"] == 1_100_000 and big["payload_truncated"]
    binary = next(letter for letter in letters if letter["payload_encoding"] == "base64")
    assert "invalid JSON" in binary["reason"]
    in_batch = next(letter for letter in letters if letter["index"] == 1)
    assert "prediction is required" in in_batch["reason"]
