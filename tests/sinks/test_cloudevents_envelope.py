"""The CloudEvents envelope and its configuration (end to end: tests/integration/test_cloudevents.py)."""
from __future__ import annotations

import pytest
from cloudevents.http import from_dict
from cloudevents.kafka import KafkaMessage, from_binary

import schemas
from sinks import build_sink, envelope_of
from sinks.cloudevents import CloudEventsEnvelope, unwrap
from streams.config_check import ConfigError, check

ALERT = {"alert_id": "a" * 24, "kind": "performance", "model": "fraud", "model_version": "7", "created_at": 1767225600.25}
RETRAIN = {"event_id": "b" * 24, "kind": "retrain", "model": "fraud", "model_version": "7", "requested_at": 1767225601.0}


def test_structured_events_decode_with_the_sdk_and_leave_the_record_alone():
    envelope = CloudEventsEnvelope(source="/driftline/prod")
    event = from_dict(envelope.structured(ALERT))
    assert (event["id"], event["type"], event["source"]) == ("a" * 24, "io.driftline.alert.performance", "/driftline/prod")
    assert event["time"] == "2026-01-01T00:00:00.250000Z" and event["dataschema"] == schemas.uri("alerts")
    assert event.get_data() == ALERT and unwrap(envelope.structured(ALERT)) == ALERT and unwrap(ALERT) == ALERT
    retrain = from_dict(envelope.structured(RETRAIN))
    assert (retrain["id"], retrain["type"], retrain["dataschema"]) == ("b" * 24, "io.driftline.retrain", schemas.uri("retrain"))


def test_binary_headers_decode_with_the_sdk():
    envelope = CloudEventsEnvelope(source="/d", mode="binary")
    import orjson

    event = from_binary(KafkaMessage(headers=dict(envelope.kafka_headers(RETRAIN)), key=b"fraud",
                                     value=orjson.dumps(RETRAIN)))
    assert event["id"] == "b" * 24 and event["subject"] == "fraud" and event.get_data() == RETRAIN


@pytest.mark.parametrize("entry, problem", [
    ({"type": "webhook", "url": "http://127.0.0.1:1/", "slack": True, "envelope": "cloudevents"}, "exclude each other"),
    ({"type": "webhook", "url": "http://127.0.0.1:1/", "envelope": "cloudevent"}, "did you mean 'cloudevents'"),
    ({"type": "kafka", "source": "/x"}, "needs envelope"),
    ({"type": "kafka", "envelope": "cloudevents", "mode": "binary!"}, "mode"),
])
def test_bad_envelope_configuration_is_a_configuration_error(entry, problem):
    with pytest.raises(ConfigError) as caught:
        check("x.toml", {"sinks": [entry]})
    assert problem in "\n".join(caught.value.lines)


def test_webhook_entries_build_with_their_envelope():
    sink, _ = build_sink({"type": "webhook", "url": "http://127.0.0.1:1/", "envelope": "cloudevents", "source": "/s"})
    assert sink.envelope.source == "/s" and sink.envelope.mode == "structured"
    assert envelope_of({"type": "kafka"}) is None
    check("x.toml", {"sinks": [{"type": "kafka", "envelope": "cloudevents", "mode": "binary"}]})
