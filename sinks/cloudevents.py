"""Alerts and retrain requests as CloudEvents 1.0 (https://cloudevents.io), for receivers that route on them.

    id           the alert id (retrain: its event id): deterministic, so a redelivered copy has the same id
    type         io.driftline.alert.<kind> / io.driftline.retrain
    source       /driftline/<app_id> unless configured
    time         when the alert was raised (RFC 3339, UTC)
    dataschema   the schema's URI (``driftline schema alerts`` prints it)
    subject      the model

Structured mode wraps the record (``data``) in one JSON object, sent as
``application/cloudevents+json``; binary mode (Kafka) keeps the record as the value and puts
the attributes in ``ce_*`` headers, so consumers that ignore headers still read a plain record.
The envelope is a handful of fields: built here, decoded in the tests by the CloudEvents SDK.
"""
from __future__ import annotations

import datetime as dt

import schemas

ENVELOPES = ("none", "cloudevents")
MODES = ("structured", "binary")
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


def _rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(float(epoch), dt.timezone.utc).isoformat().replace("+00:00", "Z")


class CloudEventsEnvelope:
    """Builds the envelope of one record (never changes the record).

    >>> envelope = CloudEventsEnvelope(source="/driftline/prod")
    >>> event = envelope.structured({"alert_id": "41708839b6", "kind": "input_drift", "model": "fraud",
    ...                              "created_at": 1767225600.0})
    >>> event["type"], event["id"], event["time"], event["dataschema"]
    ('io.driftline.alert.input_drift', '41708839b6', '2026-01-01T00:00:00Z', 'urn:driftline:schema:alerts:1')
    """

    def __init__(self, source: str, mode: str = "structured"):
        if not source:
            raise ValueError("a CloudEvents envelope needs a source")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        self.source = source
        self.mode = mode

    def attributes(self, record: dict) -> dict:
        retrain = record.get("kind") == "retrain"
        return {
            "specversion": "1.0",
            "id": str(record["event_id"] if retrain else record["alert_id"]),
            "type": "io.driftline.retrain" if retrain else f"io.driftline.alert.{record['kind']}",
            "source": self.source,
            "time": _rfc3339(record["requested_at"] if retrain else record["created_at"]),
            "dataschema": schemas.uri("retrain" if retrain else "alerts"),
            "datacontenttype": "application/json",
            "subject": str(record["model"]),
        }

    def structured(self, record: dict) -> dict:
        return {**self.attributes(record), "data": record}

    def kafka_headers(self, record: dict) -> list[tuple[str, bytes]]:
        """Binary mode's headers (Kafka protocol binding: ``ce_`` prefix, ``content-type`` for the data)."""
        attributes = self.attributes(record)
        content_type = attributes.pop("datacontenttype")
        return [("content-type", content_type.encode())] + [(f"ce_{k}", v.encode()) for k, v in attributes.items()]

    def __repr__(self) -> str:
        return f"CloudEventsEnvelope(source={self.source!r}, mode={self.mode!r})"


def unwrap(value: dict) -> dict:
    """The record inside a structured CloudEvent, or ``value`` itself (readers of the alerts topic)."""
    if isinstance(value, dict) and value.get("specversion") and isinstance(value.get("data"), dict):
        return value["data"]
    return value
