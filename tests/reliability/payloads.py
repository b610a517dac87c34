"""Hypothesis strategies for raw prediction and label messages, each with its expected outcome.

Every strategy draws a :class:`Payload`: the bytes a foreign producer would put
on the topic, plus what the wire contract (``streams.records``) must make of
them -- how many events are valid (and for which model) and how many elements
must go to the dead-letter topic. Bad payloads are built by breaking exactly one
rule of a valid event, so the oracle is known without re-implementing the
validator; a few kinds of input (invalid bytes, oversize messages, scalars,
empty or deeply nested arrays) are whole-message failures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from hypothesis import strategies as st

from streams.records import MAX_FEATURES, MAX_MESSAGE_BYTES, MAX_NAME


@dataclass
class Payload:
    raw: bytes | None
    valid: list = field(default_factory=list)   # the valid events (dicts as sent)
    bad: int = 0                                # dead-letter records this message must produce
    why: str = ""                               # what was broken (for failure messages)


# -- building blocks ---------------------------------------------------------------------
finite = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(-(2**63), 2**64 - 1)   # what JSON parsers keep as integers
numbers = st.one_of(ints, finite)
huge = st.sampled_from([1e308, -1e308, 2**64 - 1, -(2**63), 5e-324, 10**19])  # parse as int/float
names = st.text(min_size=1, max_size=40)
json_scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
feature_values = st.one_of(st.none(), st.booleans(), numbers, huge, st.text(max_size=20))
features = st.dictionaries(st.text(max_size=12), feature_values, max_size=8)
# naive ISO times are read in local time, which can fall outside the calendar near year 1 or 9999
# (a clean "bad timestamp", checked by the never-raises property, but not a valid event)
_dates = {"min_value": datetime(1900, 1, 1), "max_value": datetime(2200, 1, 1)}
timestamps = st.one_of(
    st.none(), finite, huge,
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes(**_dates).map(lambda d: d.isoformat()),
    st.datetimes(**_dates).map(lambda d: d.isoformat() + "Z"))
outcomes = st.one_of(st.booleans(), numbers, st.text(max_size=10))
NOT_NAME = st.one_of(st.none(), st.just(""), st.text(min_size=MAX_NAME + 1, max_size=MAX_NAME + 3),
                     ints, st.booleans(), st.lists(st.text(max_size=3), max_size=2),
                     st.dictionaries(st.text(max_size=3), ints, max_size=1))
NOT_NUMBER = st.one_of(st.booleans(), st.text(max_size=5), st.lists(ints, max_size=2),
                       st.dictionaries(st.text(max_size=3), ints, max_size=1))
NOT_OUTCOME = st.one_of(st.none(), st.lists(ints, max_size=2),
                        st.dictionaries(st.text(max_size=3), ints, max_size=1))


def deeply_nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


OPTIONAL_PREDICTION_FIELDS = {
    "model_version": st.one_of(names, ints, finite),
    "timestamp": timestamps,
    "features": features,
    "score": st.one_of(st.none(), numbers, huge),
    "segment": st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)),
    "latency_ms": st.one_of(st.none(), numbers),
    # extra fields are ignored by the contract, however deep
    "extra": json_values,
    "nested_extra": st.integers(1, 200).map(lambda d: orjson.loads(deeply_nested(d))),
}
_optional_keys = st.lists(st.sampled_from(sorted(OPTIONAL_PREDICTION_FIELDS)), unique=True)


@st.composite
def valid_prediction(draw, model: st.SearchStrategy, ids: st.SearchStrategy = names) -> dict:
    event = {"prediction_id": draw(ids), "model": draw(model), "prediction": draw(outcomes)}
    for key in draw(_optional_keys):
        event[key] = draw(OPTIONAL_PREDICTION_FIELDS[key])
    return event


@st.composite
def valid_label(draw, model: st.SearchStrategy) -> dict:
    event = {"prediction_id": draw(names), "model": draw(model), "label": draw(outcomes)}
    if draw(st.booleans()):
        event["timestamp"] = draw(timestamps)
    if draw(st.booleans()):
        event["extra"] = draw(json_values)
    return event


def _too_many_features(_):
    return {f"f{i}": i for i in range(MAX_FEATURES + 1)}


# one rule broken per entry: field -> strategy of a bad value; None means "drop the field", so it
# only appears for required fields (dropping an optional one breaks nothing)
PREDICTION_BREAKS = {
    "prediction_id": st.one_of(st.just(None), NOT_NAME),
    "model": st.one_of(st.just(None), NOT_NAME),
    "prediction": st.one_of(st.just(None), NOT_OUTCOME),
    "model_version": st.one_of(st.just(""), st.booleans(), st.lists(ints, max_size=2),
                               st.text(min_size=MAX_NAME + 1, max_size=MAX_NAME + 2)),
    "timestamp": st.one_of(NOT_NUMBER.filter(lambda v: not isinstance(v, str)),
                           st.sampled_from(["yesterday", "2026-13-01", "", "12:00", "2026-01-01T25:00"])),
    "features": st.one_of(st.text(max_size=5), st.lists(ints, max_size=2), ints,
                          st.dictionaries(st.text(max_size=5), st.one_of(
                              st.lists(ints, max_size=2),
                              st.dictionaries(st.text(max_size=3), ints, max_size=2)), min_size=1, max_size=3),
                          st.just(0).map(_too_many_features)),
    "score": NOT_NUMBER,
    "segment": st.one_of(st.text(max_size=3), st.lists(st.text(), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.one_of(ints, st.none()), min_size=1, max_size=2)),
    "latency_ms": NOT_NUMBER,
}
LABEL_BREAKS = {
    "prediction_id": PREDICTION_BREAKS["prediction_id"],
    "model": PREDICTION_BREAKS["model"],
    "label": st.one_of(st.just(None), NOT_OUTCOME),
    "timestamp": PREDICTION_BREAKS["timestamp"],
}


@st.composite
def broken(draw, valid: st.SearchStrategy, breaks: dict) -> dict:
    """A valid event with exactly one rule broken (drop a required field or give it a bad value)."""
    event = draw(valid)
    key = draw(st.sampled_from(sorted(breaks)))
    value = draw(breaks[key])
    if value is None:
        event.pop(key, None)
    else:
        event[key] = value
    return event


def _nan_literal(event: dict, literal: bytes) -> bytes:
    """JSON text with a bare NaN/Infinity literal in place of a number: not JSON, whole message bad."""
    event = {**event, "score": 0.123456789}
    return orjson.dumps(event).replace(b"0.123456789", literal)


@st.composite
def messages(draw, kind: str, model: st.SearchStrategy, ids: st.SearchStrategy = names, *,
             oversize: bool = True) -> Payload:
    """One raw message for the ``kind`` ("prediction" or "label") topic, with its expected outcome."""
    valid = valid_prediction(model, ids) if kind == "prediction" else valid_label(model)
    bad = broken(valid, PREDICTION_BREAKS if kind == "prediction" else LABEL_BREAKS)
    shape = draw(st.sampled_from(
        ["valid", "valid", "valid", "broken", "broken", "batch", "batch", "invalid_bytes", "nan", "bad_number",
         "scalar", "empty_array", "nested", "too_deep", "tombstone"] + (["oversize", "near_limit"] if oversize else [])))
    if shape == "valid":
        event = draw(valid)
        return Payload(orjson.dumps(event), [event], 0, shape)
    if shape == "broken":
        return Payload(orjson.dumps(draw(bad)), [], 1, shape)
    if shape == "batch":  # a micro-batch: each element is judged on its own
        items = draw(st.lists(st.one_of(valid.map(lambda e: (True, e)), bad.map(lambda e: (False, e)),
                                        json_scalars.map(lambda e: (False, e))), min_size=1, max_size=6))
        return Payload(orjson.dumps([e for _, e in items]), [e for ok, e in items if ok],
                       sum(not ok for ok, _ in items), shape)
    if shape == "invalid_bytes":
        raw = draw(st.one_of(
            st.binary(min_size=1, max_size=40).filter(lambda b: not _is_utf8_json(b)),
            st.just(b"\xff\xfe\x00garbage"), st.just(b'{"model": "\xc3\x28"}'), st.just(b""),
            valid.map(lambda e: orjson.dumps(e)[:-1]),                         # truncated
            valid.map(lambda e: orjson.dumps(e) + b"}")))                      # trailing garbage
        return Payload(raw, [], 1, shape)
    if shape == "nan":
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"]))
        return Payload(_nan_literal(draw(valid), literal), [], 1, shape)
    if shape == "bad_number":  # overflows a double: orjson refuses it
        literal = draw(st.sampled_from([b"1e999", b"-1e400", b"1" + b"0" * 400 + b".0"]))
        return Payload(_nan_literal(draw(valid), literal), [], 1, shape)
    if shape == "scalar":
        return Payload(orjson.dumps(draw(json_scalars)), [], 1, shape)
    if shape == "empty_array":
        return Payload(b"[]", [], 1, shape)
    if shape == "nested":  # an array of arrays: every element is not an object
        depth = draw(st.integers(2, 500))
        width = draw(st.integers(1, 3))
        return Payload(b"[" + b",".join([deeply_nested(depth - 1)] * width) + b"]", [], width, shape)
    if shape == "too_deep":  # deeper than any parser should follow
        return Payload(deeply_nested(draw(st.integers(1025, 5000))), [], 1, shape)
    if shape == "tombstone":
        return Payload(None, [], 1, shape)
    if shape == "oversize":  # 1 MB and over: rejected before parsing
        event = draw(valid)
        event["padding"] = "x" * (MAX_MESSAGE_BYTES + draw(st.integers(0, 50_000)))
        return Payload(orjson.dumps(event), [], 1, shape)
    # near_limit: a valid message just under the limit (one big string feature)
    event = draw(valid)
    pad = MAX_MESSAGE_BYTES - len(orjson.dumps({**event, "padding": ""})) - draw(st.integers(0, 1000))
    event["padding"] = "y" * max(pad, 0)
    return Payload(orjson.dumps(event), [event], 0, shape)


def _is_utf8_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
        return True
    except orjson.JSONDecodeError:
        return False


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
