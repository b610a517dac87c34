"""``driftline audit``: the evidence behind an alert, and its statistics recomputed from the events.

An alert records the reference it was compared with (archived in Redis under its
id, with the window settings in force), the internal-topic partition and the
[offset, index] of its window's first and last event. Recomputing reads exactly
those events back from Kafka, rebuilds the window as the monitor did, and runs
the same tests: the statistics must come out the same.

Two kinds also depend on what labels did, which the window's events do not hold; their
alerts carry it in their evidence. ``estimated_performance``: CBPE's calibration map (its
knots), the reference accuracy and its error, ``z`` (detectors.cbpe): the estimator is
rebuilt from them and replayed on the window's scores. ``fairness``: every segment value's
counts the gap was judged on and the test's settings (detectors.fairness.judge_gap): the
test is re-run on them, and the positive-prediction counts are recounted from the window's
predictions; accuracy and true-positive counts are the labels that joined while the window
was open (labels of earlier windows' predictions included, through the worker's pending-
prediction join), which the events of the window alone cannot reproduce.
"""
from __future__ import annotations

import dataclasses
import math

import orjson
from kafka import KafkaConsumer, TopicPartition

from detectors.cbpe import CBPE
from detectors.fairness import judge_gap
from detectors.monitor import VersionMonitor
from detectors.profile import ReferenceProfile
from detectors.suite import WindowSettings
from sinks._redis import sync_client
from sinks.status import get_archived_reference_sync, get_reference_sync
from streams import internal_format, positions
from streams.producer import bootstrap_of

# alerts judged on one window of predictions, which `--recompute` rebuilds from that window's events
# (estimated performance and fairness with what their evidence stores of the labels)
WINDOW_KINDS = ("input_drift", "prediction_drift", "data_quality", "multivariate_drift", "segment_drift",
                "estimated_performance", "fairness")


MIN_PREFIX = 8


class AmbiguousId(LookupError):
    """An id prefix that matches more than one alert."""


def load_alert(redis_url: str, alert_id: str, prefix: str = "driftline") -> dict | None:
    """The stored alert whose id is ``alert_id`` or starts with it (at least MIN_PREFIX characters).

    The demo and ``tail`` print short ids; any unique prefix of 8 or more characters finds the alert.
    """
    client = sync_client(redis_url, 2.0)
    try:
        key = f"{prefix}:alert:{alert_id}"
        fields = client.hgetall(key)
        if not fields and len(alert_id) >= MIN_PREFIX:
            pattern = f"{prefix}:alert:{_glob_escape(alert_id)}*"
            matches = sorted({k.decode() for k in client.scan_iter(match=pattern, count=1000)})
            if len(matches) > 1:
                ids = ", ".join(m.rsplit(":", 1)[-1] for m in matches[:5])
                raise AmbiguousId(f"{alert_id} matches {len(matches)} alerts ({ids}{', ...' if len(matches) > 5 else ''});"
                                  f" give more characters")
            if matches:
                fields = client.hgetall(matches[0])
    finally:
        client.close()
    if not fields:
        return None
    return orjson.loads(fields.get(b"json") or next(iter(fields.values())))


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _reference_for(settings, alert: dict) -> tuple[ReferenceProfile, WindowSettings, WindowSettings | None]:
    """The reference, the window settings and the segment family's (calibrated apart) it was judged with."""
    ref = alert["reference"]
    archived = get_archived_reference_sync(settings.redis_url, ref["reference_id"], prefix=settings.redis_prefix)
    if archived:
        segment = archived.get("segment_window_settings")     # archives before it: the window's
        return (ReferenceProfile.from_dict(archived["profile"]),
                WindowSettings.from_dict(archived["window_settings"]),
                None if segment is None else WindowSettings.from_dict(segment))
    stored = get_reference_sync(settings.redis_url, alert["model"], alert["model_version"],
                                prefix=settings.redis_prefix)
    if not stored or stored.get("reference_id") != ref["reference_id"]:
        raise LookupError(f"reference {ref['reference_id']} is no longer stored")
    window = settings.for_model(alert["model"]).drift
    return ReferenceProfile.from_dict(stored), WindowSettings.from_dict(
        {**window, "alpha": ref.get("alpha", 0.01), "correction": ref.get("correction", "bh")}), None


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
            if internal_format.COLUMNS in body:   # predictions as columns (streams.internal_format)
                body = {"p": internal_format.prediction_events(body[internal_format.COLUMNS]), "src": body.get("src")}
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


class NotRecomputable(ValueError):
    """An alert kind whose evidence cannot be rebuilt from its window's events."""


# Why the other kinds cannot be recomputed from the window's events alone.
NOT_RECOMPUTABLE = {
    "performance": "it compares the rolling metric over the last performance_window labelled events with the "
                   "baseline, not one window of predictions",
    "comparison": "it compares two versions on their labelled events, not one window of predictions",
    "resolved": "it records that a condition cleared; audit the alert it resolves",
}

# Alerts of these kinds raised before their evidence stored what a recomputation needs.
WITHOUT_EVIDENCE = {
    "estimated_performance": "this alert was raised before the calibration it was estimated with (CBPE's, fitted "
                             "on the first labelled events of the version) was stored with the alert, so the "
                             "estimate cannot be rebuilt from this window",
    "fairness": "this alert was raised before the segment counts it was judged on were stored with the alert (they "
                "are the labels that joined while the window was open), so the test cannot be re-run",
}


def _has_evidence(alert: dict) -> bool:
    needs = {"estimated_performance": "calibration_map", "fairness": "counts"}.get(alert["kind"])
    return needs is None or bool(alert["evidence"]) and all(needs in e for e in alert["evidence"].values())


def check_recomputable(alert: dict) -> None:
    """Raise :class:`NotRecomputable`, saying why, for an alert ``--recompute`` cannot rebuild."""
    kind = alert["kind"]
    if kind in NOT_RECOMPUTABLE:
        raise NotRecomputable(f"{kind} alerts cannot be recomputed: {NOT_RECOMPUTABLE[kind]}")
    if kind not in WINDOW_KINDS:
        raise NotRecomputable(f"{kind} alerts cannot be recomputed (not a window alert)")
    if not _has_evidence(alert):
        raise NotRecomputable(f"{kind} alerts cannot be recomputed: {WITHOUT_EVIDENCE[kind]}")


def recompute(settings, alert: dict, progress=None) -> list[dict]:
    """Rows of (feature, detector, alerted statistic, recomputed statistic, p-values, match).

    The window's events are replayed into a fresh monitor of the version, with the reference and
    the (calibrated) window settings the alert was judged with, and the window is closed: the
    monitor's own checks produce the alert again, whichever kind it is (an estimate with the CBPE
    stored in its evidence). A fairness alert's test is re-run on its stored counts, the
    positive-prediction counts recounted from the events. ``progress(n)`` is told how many of
    :func:`messages_to_read` have been read.
    """
    check_recomputable(alert)
    profile, window_settings, segment_settings = _reference_for(settings, alert)
    events = window_events(settings, alert, progress=progress)
    if len(events) != alert["window"]["n"]:
        raise LookupError(f"found {len(events)} of the window's {alert['window']['n']} events in Kafka")
    return recompute_window(settings, alert, profile, window_settings, events, segment_settings)


def recompute_window(settings, alert: dict, profile: ReferenceProfile, window_settings: WindowSettings,
                     events: list[dict], segment_settings: WindowSettings | None = None) -> list[dict]:
    """:func:`recompute`'s rows from the window's ``events`` and what the alert was judged with."""
    kind = alert["kind"]
    monitor = _replayed_monitor(settings, alert, profile, window_settings, events, segment_settings)
    if kind == "fairness":
        return _fairness_rows(alert, monitor)
    if kind == "estimated_performance":
        stored = alert["evidence"]["__score__"]
        monitor.cbpe = CBPE.from_evidence(stored, stored["threshold"])
    again = _close_window(monitor, kind)
    evidence = (again or {}).get("evidence", {})
    rows = []
    for feature, stored in alert["evidence"].items():
        result = evidence.get(feature)
        statistic = None if result is None else result.get("statistic")
        p_value = None if result is None else result.get("p_value")
        match = result is not None and result.get("detector") == stored.get("detector") and _close(
            statistic, stored.get("statistic")) and _close(p_value, stored.get("p_value"))
        rows.append({"feature": feature, "detector": stored.get("detector"), "statistic": stored.get("statistic"),
                     "recomputed_statistic": statistic, "p_value": stored.get("p_value"),
                     "recomputed_p_value": p_value, "match": bool(match)})
    return rows


def _fairness_rows(alert: dict, monitor: VersionMonitor) -> list[dict]:
    """Each gap's test re-run on the counts stored with it; positive-prediction counts must also
    equal those recounted from the window's predictions (``monitor`` has them folded in)."""
    rows = []
    for feature, stored in alert["evidence"].items():
        attr, metric = stored["attribute"], stored["metric"]
        counts = {value: (x, n) for value, x, n in stored["counts"]}
        note = "counts as stored (labels joined while the window was open)"
        recounted = True
        if metric == "positive_rate":
            seen = monitor.segments.counts(metric).get(attr, {})
            recounted = {str(v): tuple(c) for v, c in seen.items()} == {str(v): c for v, c in counts.items()}
            note = ("counts recounted from the window's predictions" if recounted else
                    "counts differ from the window's predictions")
        result = judge_gap(attr, metric, counts, stored["min_size"], stored["threshold"], stored["alpha"],
                           stored["active"], stored["hold"])
        statistic = None if result is None else result.statistic
        p_value = None if result is None else result.p_value
        match = (recounted and result is not None and result.detector == stored.get("detector")
                 and _close(statistic, stored.get("statistic")) and _close(p_value, stored.get("p_value")))
        rows.append({"feature": feature, "detector": stored.get("detector"), "statistic": stored.get("statistic"),
                     "recomputed_statistic": statistic, "p_value": stored.get("p_value"),
                     "recomputed_p_value": p_value, "match": bool(match), "note": note})
    return rows


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def _replayed_monitor(settings, alert: dict, profile: ReferenceProfile, window_settings: WindowSettings,
                      events: list[dict], segment_settings: WindowSettings | None = None) -> VersionMonitor:
    """A fresh monitor of the alert's version holding exactly these events in an open window."""
    model_settings = dataclasses.replace(
        settings.for_model(settings.model_of(alert["model"])),
        window_size=len(events) + 1, window_seconds=math.inf,   # the window closes when we say so
        retrain_max_interval=0.0)
    monitor = VersionMonitor(alert["model"], alert["model_version"], model_settings, alert.get("config_version", ""))
    monitor.window_settings = window_settings
    monitor.set_reference(profile, source=alert["reference"].get("source", "explicit"))
    # after set_reference, which resets it: the segment family is calibrated apart (its own ERT)
    monitor.segment_window_settings = segment_settings or window_settings
    monitor.window_index = alert["window"]["index"]        # multivariate `every` and alert ids depend on it
    monitor.partition = alert["window"].get("partition")
    out: list = []
    for event in events:
        out += monitor.add_prediction(event, None)
    return monitor


def _close_window(monitor: VersionMonitor, kind: str) -> dict | None:
    """The alert of ``kind`` that closing the monitor's window raises, if any."""
    return next((record.to_dict() for record in monitor.close_window()
                 if record.TAG == "alert" and record.kind == kind), None)

