"""``driftline audit``: the evidence behind an alert, and its statistics recomputed from the events.

An alert records the reference it was compared with (archived in Redis under its
id, with the window settings in force), the internal-topic partition and the
[offset, index] of its window's first and last event. Recomputing reads exactly
those events back from Kafka, rebuilds the window as the monitor did, and runs
the same tests: the statistics must come out the same.
"""
from __future__ import annotations

import orjson
from kafka import KafkaConsumer, TopicPartition

from detectors.monitor import PREDICTION, SCORE, ColumnBuffer
from detectors.profile import ReferenceProfile
from detectors.suite import WindowSettings, evaluate_window
from sinks._redis import sync_client
from sinks.status import get_archived_reference_sync, get_reference_sync
from streams import positions
from streams.producer import bootstrap_of

WINDOW_KINDS = ("input_drift", "prediction_drift")


def load_alert(redis_url: str, alert_id: str) -> dict | None:
    client = sync_client(redis_url, 2.0)
    try:
        fields = client.hgetall(f"driftline:alert:{alert_id}")
    finally:
        client.close()
    if not fields:
        return None
    return orjson.loads(fields.get(b"json") or next(iter(fields.values())))


def _reference_for(settings, alert: dict) -> tuple[ReferenceProfile, WindowSettings]:
    ref = alert["reference"]
    archived = get_archived_reference_sync(settings.redis_url, ref["reference_id"])
    if archived:
        return (ReferenceProfile.from_dict(archived["profile"]),
                WindowSettings.from_dict(archived["window_settings"]))
    stored = get_reference_sync(settings.redis_url, alert["model"], alert["model_version"])
    if not stored or stored.get("reference_id") != ref["reference_id"]:
        raise LookupError(f"reference {ref['reference_id']} is no longer stored")
    window = settings.for_model(alert["model"]).drift
    return ReferenceProfile.from_dict(stored), WindowSettings.from_dict(
        {**window, "alpha": ref.get("alpha", 0.01), "correction": ref.get("correction", "bh")})


# Internal messages read before the window to learn the source positions already applied: a
# re-delivery follows its original closely (ingest re-forwards what it had not committed).
LOOKBACK_MESSAGES = 5000


def messages_to_read(alert: dict) -> int:
    """How many internal messages :func:`window_events` reads for ``alert`` (for a progress bar)."""
    first, last = alert["window"]["offsets"]["first"], alert["window"]["offsets"]["last"]
    return last[0] - max(0, first[0] - LOOKBACK_MESSAGES) + 1


def window_events(settings, alert: dict, timeout: float = 10.0, progress=None) -> list[dict]:
    """The predictions of the alert's window, read back from the internal topic.

    They are filtered as the worker filtered them (streams.positions): events that
    the ingest stage forwarded twice count once, and ``[offset, index]`` counts the
    events the monitor kept, so the window's bounds select exactly its events.
    """
    window, model = alert["window"], alert["model"]
    first, last = window["offsets"]["first"], window["offsets"]["last"]
    tp = TopicPartition(settings.internal_topic, window["partition"])
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_of(settings.broker), enable_auto_commit=False,
                             consumer_timeout_ms=int(timeout * 1000))
    events, marks = [], {}
    try:
        consumer.assign([tp])
        consumer.seek(tp, max(0, first[0] - LOOKBACK_MESSAGES))   # the same start as messages_to_read
        start = max(0, first[0] - LOOKBACK_MESSAGES)
        for message in consumer:
            if progress is not None:
                progress(message.offset - start + 1)
            if message.offset > last[0]:
                break
            if message.key != model.encode():
                continue
            body = orjson.loads(message.value)
            if "p" not in body:
                continue
            kept, _ = positions.fresh(marks, "p", body["p"], body.get("src"))
            if message.offset < first[0]:
                continue
            for index, event in enumerate(kept):
                if not [first[0], first[1]] <= [message.offset, index] <= [last[0], last[1]]:
                    continue
                if event["model_version"] == alert["model_version"]:
                    events.append(event)
            if message.offset == last[0]:
                break
    finally:
        consumer.close()
    return events


def recompute(settings, alert: dict, progress=None) -> list[dict]:
    """Rows of (feature, detector, alerted statistic, recomputed statistic, p-values, match).

    ``progress(n)`` is told how many of :func:`messages_to_read` have been read."""
    if alert["kind"] not in WINDOW_KINDS:
        raise ValueError(f"recomputing is for {', '.join(WINDOW_KINDS)} alerts, not {alert['kind']}")
    profile, window_settings = _reference_for(settings, alert)
    events = window_events(settings, alert, progress=progress)
    if len(events) != alert["window"]["n"]:
        raise LookupError(f"found {len(events)} of the window's {alert['window']['n']} events in Kafka")
    buffer = ColumnBuffer(profile.features)
    for event in events:
        buffer.append({**event["features"], PREDICTION: event["prediction"], SCORE: event["score"]})
    report = evaluate_window(profile, buffer.columns(), window_settings)
    rows = []
    for feature, stored in alert["evidence"].items():
        result = next((r for r in report.results if r.feature == feature and r.detector == stored["detector"]), None)
        again = (result.statistic, result.p_value) if result else (None, None)
        match = result is not None and abs(result.statistic - stored["statistic"]) <= 1e-9 and (
            stored["p_value"] is None or abs(result.p_value - stored["p_value"]) <= 1e-9 * max(1.0, stored["p_value"]))
        rows.append({"feature": feature, "detector": stored["detector"], "statistic": stored["statistic"],
                     "recomputed_statistic": again[0], "p_value": stored["p_value"],
                     "recomputed_p_value": again[1], "match": bool(match)})
    return rows
