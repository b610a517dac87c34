"""The wire contract: decoding and validating prediction and label payloads.

Payloads are plain JSON decoded with orjson (not ``faust.Record``): decoding raw
bytes ourselves is what lets one bad message go to the dead-letter topic instead
of killing the stream, and it keeps per-event work to a decode, a few type
checks and an append. A message is one JSON object or a JSON array of them (a
micro-batch); each element is validated on its own, so one bad element does not
reject its neighbours.

Validated events are plain dicts with every optional field filled in, so later
stages never re-check types.

Two decoders implement that contract. The fast one (:class:`TypedDecoder`) decodes a
message with msgspec straight into :class:`PredictionEvent`/:class:`LabelEvent` Structs,
whose types state the rules; a message it accepts needs only a few fix-ups (defaults, a
numeric model version as a string). Its types accept a subset of what the rules accept, so
a message it refuses (a bad element, or an unusual but valid one such as a boolean feature
next to an integer over 64 bits) is decoded again by the reference path, ``orjson`` plus
:func:`validate_prediction`/:func:`validate_label` element by element: the reasons and the
dead-letter records are the reference's by construction, and
``tests/streams/test_records_typed.py`` checks both decoders agree on adversarial input.
"""
from __future__ import annotations

import base64
import hashlib
import math
import sys
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson

# decode()'s default limit, and the most an internal message holds (Kafka's default
# message.max.bytes is about 1 MB). The worker passes its max_message_bytes (streams.config).
MAX_MESSAGE_BYTES = 1_000_000
MAX_FEATURES = 2_000
MAX_NAME = 256
DEADLETTER_PAYLOAD_BYTES = 65_536


class InvalidEvent(ValueError):
    """A payload that breaks the wire contract; the message says which rule."""


def _finite(value: Any, what: str) -> float:
    if type(value) is float and value - value == 0.0:  # the usual case first (inf - inf and nan are nan)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent(f"{what} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidEvent(f"{what} must be finite")
    return value


def _name(value: Any, what: str) -> str:
    if type(value) is str and 0 < len(value) <= MAX_NAME:  # the usual case first
        return value
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise InvalidEvent(f"{what} must be a non-empty string of at most {MAX_NAME} characters")
    return value


def parse_timestamp(value: Any, default: float) -> float:
    if value is None:
        return default
    if type(value) is float and value - value == 0.0:  # the usual case first: finite epoch seconds
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise InvalidEvent("timestamp must be epoch seconds or an ISO-8601 string") from exc
    return _finite(value, "timestamp")


_FLOAT_MAX = sys.float_info.max


def _plain(values) -> bool:
    """True when every value is None, a str, a bool, an int or a finite float: the usual
    features, accepted in one tight loop. False means "look closer", not "invalid": the
    checks in :func:`_features` then name the feature at fault.
    """
    for value in values:
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # inf - inf and nan - nan are nan
                return False
        elif kind is int:
            if not -_FLOAT_MAX <= value <= _FLOAT_MAX:
                return False
        elif kind is not str and kind is not bool and value is not None:
            return False
    return True


def _features(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("features must be an object")
    if len(value) > MAX_FEATURES:
        raise InvalidEvent(f"more than {MAX_FEATURES} features")
    if _plain(value.values()):
        return value
    for name, item in value.items():
        if item is None or isinstance(item, (str, bool)):
            continue
        if isinstance(item, (int, float)):
            if not math.isfinite(item):
                raise InvalidEvent(f"feature {name!r} is not finite")
            continue
        raise InvalidEvent(f"feature {name!r} must be a number, string, bool or null")
    return value


def kpi_values(value: Any) -> tuple[dict, list]:
    """The ``kpis`` object of an event: (name -> finite float, names refused).

    A bad KPI never rejects the event it rides on (its prediction or label is still
    good): a value that is not a finite number is left out and its name returned, for
    the monitor to count as data quality; a ``kpis`` that is not an object is refused
    whole (``"(kpis)"``); so is a name that is empty or longer than MAX_NAME. Whether a name
    is a configured KPI is the monitor's question.

    >>> kpi_values({"revenue": 12.5, "converted": 1, "cost": "n/a", "x": True})
    ({'revenue': 12.5, 'converted': 1.0}, ['cost', 'x'])
    """
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, ["(kpis)"]
    good, bad = {}, []
    for name, item in value.items():
        if type(item) in (int, float) and -_FLOAT_MAX <= item <= _FLOAT_MAX and 0 < len(name) <= MAX_NAME:
            good[name] = float(item)
        else:
            bad.append(name[:MAX_NAME])
    return good, bad


def _outcome(value: Any, what: str) -> float | str | bool:
    if isinstance(value, (str, bool)):
        return value
    if value is None:
        raise InvalidEvent(f"{what} is required")
    return _finite(value, what)


def validate_prediction(obj: Any, default_ts: float) -> dict:
    if not isinstance(obj, dict):
        raise InvalidEvent("a prediction must be a JSON object")
    version = obj.get("model_version")
    if version is None:  # absent or null: the default, like every other optional field
        version = "0"
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)
    segment = obj.get("segment")
    if segment is not None and not (
        isinstance(segment, dict) and all(isinstance(v, str) for v in segment.values())
    ):
        raise InvalidEvent("segment must be an object of string values")
    score = obj.get("score")
    latency = obj.get("latency_ms")
    return {
        "prediction_id": _name(obj.get("prediction_id"), "prediction_id"),
        "model": _name(obj.get("model"), "model"),
        "model_version": _name(version, "model_version"),
        "timestamp": parse_timestamp(obj.get("timestamp"), default_ts),
        "features": _features(obj.get("features")),
        "prediction": _outcome(obj.get("prediction"), "prediction"),
        # out-of-range scores are kept: the monitor counts them as a data-quality signal
        "score": None if score is None else _finite(score, "score"),
        "segment": segment or None,
        # a negative latency is kept: the monitor counts it as data quality (detectors.latency)
        "latency_ms": None if latency is None else _finite(latency, "latency_ms"),
        **_kpi_fields(obj),
    }


def validate_label(obj: Any, default_ts: float) -> dict:
    if not isinstance(obj, dict):
        raise InvalidEvent("a label must be a JSON object")
    return {
        "prediction_id": _name(obj.get("prediction_id"), "prediction_id"),
        "model": _name(obj.get("model"), "model"),
        "label": _outcome(obj.get("label"), "label"),
        "timestamp": parse_timestamp(obj.get("timestamp"), default_ts),
        **_kpi_fields(obj),
    }


def _kpi_fields(obj: dict) -> dict:
    kpis, invalid = kpi_values(obj.get("kpis"))
    return {"kpis": kpis, "invalid_kpis": invalid}


def decode(raw: bytes | None, default_ts: float, validate, max_bytes: int = MAX_MESSAGE_BYTES):
    """Decode one message into (valid events, [(index or None, reason)]).

    With :func:`validate_prediction` or :func:`validate_label`, by the typed fast path
    (:class:`TypedDecoder`); with any other validator, by :func:`decode_reference`.
    """
    typed = _TYPED.get(validate)
    if typed is not None:
        return typed(raw, default_ts, max_bytes)
    return decode_reference(raw, default_ts, validate, max_bytes)


def decode_reference(raw: bytes | None, default_ts: float, validate, max_bytes: int = MAX_MESSAGE_BYTES):
    """Decode one message with orjson and ``validate`` element by element: the contract's reference.

    A single event larger than ``max_bytes`` is rejected before parsing. A micro-batch (a
    JSON array) is decoded whatever its size: the broker accepted it and the consumer has
    fetched it, and the worker forwards its events in internal messages of at most
    MAX_MESSAGE_BYTES (streams.app._bodies), so one large batch is split, not lost.
    """
    if raw is None:
        return [], [(None, "empty message")]
    if len(raw) > max_bytes and raw.lstrip()[:1] != b"[":
        return [], [(None, f"message of {len(raw)} bytes exceeds {max_bytes} (max_message_bytes; "
                           f"a micro-batch, a JSON array, may be larger)")]
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [], [(None, f"invalid JSON: {exc}")]
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        return [], [(None, "empty batch")]
    good, bad = [], []
    for index, item in enumerate(items):
        try:
            good.append(validate(item, default_ts))
        except InvalidEvent as exc:
            bad.append((index if isinstance(obj, list) else None, str(exc)))
    return good, bad


# -- the typed fast path ------------------------------------------------------------------
# Integers in int64: orjson keeps up to 2**64 - 1 as int and turns larger ones into floats,
# msgspec keeps them all as int (and bounds only in int64), so anything past int64 is left to
# the reference path: the fast path never accepts what the reference would decode differently.
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
_Feature = str | bool | _Int | float | None
_Outcome = str | bool | float          # an integer outcome is a float (as _finite makes it)
# KPIs: a value kpi_values would refuse (not a finite number, a bool) or a bad name fails the
# typed decode, and the message takes the reference path, which keeps the event and lists the name.
_Kpis = dict[_Name, Annotated[float, msgspec.Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX)]]


# forbid_unknown_fields: msgspec skips an unknown field without checking all of it (a number
# that overflows a double passes), where the reference rejects the whole message; so a message
# with fields outside the contract takes the reference path (same answer, reference speed).
class PredictionEvent(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A prediction as the wire contract types it (required fields first, as a Struct wants)."""
    prediction_id: _Name
    model: _Name
    prediction: _Outcome
    model_version: _Name | _Int | float | None = None
    timestamp: float | str | None = None
    features: Annotated[dict[str, _Feature], msgspec.Meta(max_length=MAX_FEATURES)] | None = None
    score: float | None = None
    segment: dict[str, str] | None = None
    latency_ms: float | None = None
    kpis: _Kpis | None = None


class LabelEvent(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    prediction_id: _Name
    model: _Name
    label: _Outcome
    timestamp: float | str | None = None
    kpis: _Kpis | None = None


def _prediction_dict(event: PredictionEvent, default_ts: float) -> dict:
    version = event.model_version
    if type(version) is not str:
        version = _name("0" if version is None else str(version), "model_version")
    timestamp = event.timestamp
    if type(timestamp) is not float:
        timestamp = parse_timestamp(timestamp, default_ts)
    return {"prediction_id": event.prediction_id, "model": event.model, "model_version": version,
            "timestamp": timestamp, "features": {} if event.features is None else event.features,
            "prediction": event.prediction, "score": event.score, "segment": event.segment or None,
            "latency_ms": event.latency_ms, "kpis": {} if event.kpis is None else event.kpis,
            "invalid_kpis": []}


def _label_dict(event: LabelEvent, default_ts: float) -> dict:
    timestamp = event.timestamp
    if type(timestamp) is not float:
        timestamp = parse_timestamp(timestamp, default_ts)
    return {"prediction_id": event.prediction_id, "model": event.model, "label": event.label,
            "timestamp": timestamp, "kpis": {} if event.kpis is None else event.kpis, "invalid_kpis": []}


class TypedDecoder:
    """One message (an event or a JSON array of them) into validated event dicts, typed by msgspec.

    Same answers as :func:`decode` with the reference validator; a message the typed decode
    refuses, or whose fix-ups refuse an element (an ISO timestamp that does not parse, a
    numeric model version longer than a name), is handed to that reference path whole.
    """

    def __init__(self, event_type: type, to_dict, validate) -> None:
        self._decoder = msgspec.json.Decoder(list[event_type] | event_type)
        self._to_dict = to_dict
        self.validate = validate

    def __call__(self, raw: bytes | None, default_ts: float, max_bytes: int = MAX_MESSAGE_BYTES):
        if raw is None or (len(raw) > max_bytes and raw.lstrip()[:1] != b"["):
            return decode_reference(raw, default_ts, self.validate, max_bytes)
        try:
            obj = self._decoder.decode(raw)
            if type(obj) is not list:
                return [self._to_dict(obj, default_ts)], []
            if not obj:
                return [], [(None, "empty batch")]
            to_dict = self._to_dict
            return [to_dict(event, default_ts) for event in obj], []
        except (msgspec.MsgspecError, ValueError):   # refused by the types, a fix-up, or invalid UTF-8
            return decode_reference(raw, default_ts, self.validate, max_bytes)


decode_predictions = TypedDecoder(PredictionEvent, _prediction_dict, validate_prediction)
decode_labels = TypedDecoder(LabelEvent, _label_dict, validate_label)
_TYPED = {validate_prediction: decode_predictions, validate_label: decode_labels}


def deadletter_record(raw: bytes | None, reason: str, topic: str, partition: int, offset: int,
                      index: int | None = None) -> dict:
    """What lands on the dead-letter topic: enough to find, read and replay the input.

    ``deadletter_id`` is derived from the input's position (topic, partition, offset, index):
    a message re-read after a crash yields the same id, which the worker uses to publish it
    once (and a consumer can use to drop a copy the worker could not recognise, Redis down).
    """
    raw = raw or b""
    head = raw[:DEADLETTER_PAYLOAD_BYTES]
    try:
        payload, encoding = head.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(head).decode("ascii"), "base64"
    position = f"{topic}\x00{partition}\x00{offset}\x00{'' if index is None else index}"
    return {
        "deadletter_id": hashlib.sha256(position.encode()).hexdigest()[:32],
        "reason": reason,
        "source_topic": topic,
        "partition": partition,
        "offset": offset,
        "index": index,
        "payload": payload,
        "payload_encoding": encoding,
        "payload_bytes": len(raw),
        "payload_truncated": len(raw) > DEADLETTER_PAYLOAD_BYTES,
        "payload_sha256": hashlib.sha256(raw).hexdigest(),
    }
