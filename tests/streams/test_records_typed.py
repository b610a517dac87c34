"""The typed (msgspec) decoder against the reference (orjson + the validators), on adversarial input.

``streams.records.decode`` takes the typed fast path for predictions and labels and falls back
to the reference path for any message the types refuse. Both must give the same valid events
(equal values *and* types: an int feature stays an int, an integer outcome becomes a float) and
the same rejections with the same reasons, whatever the bytes.
"""
from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import records
from tests.reliability.payloads import json_values, messages, names

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=600,
                suppress_health_check=list(HealthCheck))
DEFAULT_TS = 1_767_225_600.0
KINDS = {"prediction": (records.decode_predictions, records.validate_prediction),
         "label": (records.decode_labels, records.validate_label)}


def _typed(value):
    """A value with its type spelled out, so 1 == 1.0 == True do not pass for each other."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return (type(value).__name__, value)


def _same(raw, kind: str, max_bytes: int = records.MAX_MESSAGE_BYTES) -> tuple:
    typed, validate = KINDS[kind]
    new = typed(raw, DEFAULT_TS, max_bytes)
    old = records.decode_reference(raw, DEFAULT_TS, validate, max_bytes)
    assert _typed(new[0]) == _typed(old[0])
    assert new[1] == old[1]
    assert records.decode(raw, DEFAULT_TS, validate, max_bytes) == new   # the public API takes the typed path
    return new


FIELDS = ["prediction_id", "model", "model_version", "timestamp", "features", "prediction", "score",
          "segment", "latency_ms", "kpis", "label", "x"]
edge_values = st.sampled_from([
    2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30), 1e308, -1e308, 5e-324,
    0, 1, -1, 0.0, -0.0, True, False, None, "", "0", "x" * 256, "x" * 257, "\U0001F600" * 256,
    "\U0001F600" * 257, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+05:30", "2026-13-01", "yesterday",
    [], {}, [1], {"a": "b"}, {"a": 1}, {"a": None}, {"a": 2**64}, {"a": [1]}, {"": True}])
field_values = st.one_of(edge_values, json_values, names)
objects = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=9)
# near-valid events: the required fields present, every other field anything
near_valid = st.fixed_dictionaries(
    {"prediction_id": st.one_of(names, edge_values), "model": st.one_of(names, edge_values),
     "prediction": field_values, "label": field_values},
    optional={k: field_values for k in ("model_version", "timestamp", "features", "score", "segment",
                                        "latency_ms", "kpis", "x")})


def _dumps(value) -> bytes:
    """JSON text as another producer writes it: integers of any size, escaped or raw non-ASCII."""
    return json.dumps(value, ensure_ascii=len(str(value)) % 2 == 0).encode()


payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(_dumps),
    objects.map(_dumps),
    near_valid.map(_dumps),
    st.lists(st.one_of(near_valid, objects, json_values), max_size=6).map(_dumps),
)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_typed_decoder_agrees_with_the_reference_on_adversarial_payloads(kind):
    @FUZZ
    @given(payloads)
    def one(raw):
        _same(raw, kind)

    one()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_typed_decoder_agrees_with_the_reference_on_the_contract_payloads(kind):
    """The payloads of tests/reliability/test_bad_input.py (one rule broken at a time, whole-message failures)."""
    @FUZZ
    @given(messages(kind, st.sampled_from(["m1", "m2"])))
    def one(payload):
        _same(payload.raw, kind)

    one()


@pytest.mark.parametrize("raw", [
    None, b"", b"[]", b"  [ ]  ", b"\xef\xbb\xbf{}", b'{"a":1} x', b"NaN", b"[" * 2000 + b"]" * 2000,
    b'{"prediction_id":"p","model":"m","prediction":1,"features":{"a":1e400}}',
    b'{"prediction_id":"p","model":"m","prediction":1,"features":{"a":18446744073709551616}}',
    b'{"prediction_id":"p","model":"m","prediction":1,"features":{"a":9223372036854775808}}',
    b'{"prediction_id":"p","model":"m","prediction":1,"model_version":18446744073709551615}',
    b'{"prediction_id":"p","model":"m","prediction":1,"model_version":1e300}',
    b'{"prediction_id":"p","model":"m","prediction":1,"model_version":' + b"1" * 300 + b"}",
    b'{"prediction_id":"p","model":"m","prediction":1,"prediction":null}',      # duplicate key: the last wins
    b'{"prediction_id":"p","model":"m","prediction":1,"model":""}',
    b'{"prediction_id":"\\ud800","model":"m","prediction":1}',
    b'{"prediction_id":"p\\u0000","model":"m","prediction":1,"label":2}',
    b'{"prediction_id":"p","model":"m","prediction":1,"label":true,"timestamp":"2026-01-01T00:00:00"}',
    b'{"prediction_id":"p","model":"m","prediction":1,"label":1,"timestamp":true}',
    b'{"prediction_id":"p","model":"m","prediction":1,"label":1,"timestamp":12}',
    b'{"prediction_id":"p","model":"m","prediction":1,"label":1,"segment":{},"features":{}}',
    b'[{"prediction_id":"p","model":"m","prediction":1,"label":1},3,{"model":"m"},[]]',
    # KPIs (issue 15): a refused value or name keeps the event and lists the name (reference path)
    b'{"prediction_id":"p","model":"m","prediction":1,"label":1,"kpis":{"revenue":12.5,"converted":1}}',
    b'{"prediction_id":"p","model":"m","prediction":1,"label":1,"kpis":{"a":true,"b":1e400,"c":"x","d":null}}',
    b'{"prediction_id":"p","model":"m","prediction":1,"label":1,"kpis":{"a":18446744073709551616,"b":-1e308}}',
    b'{"prediction_id":"p","model":"m","prediction":1,"label":1,"kpis":{"":1,"ok":2}}',
    b'{"prediction_id":"p","model":"m","prediction":1,"label":1,"kpis":[1,2]}',
    b'{"prediction_id":"p","model":"m","prediction":1,"label":1,"kpis":null,"latency_ms":-5}',
])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_typed_decoder_agrees_with_the_reference_on_edge_cases(kind, raw):
    _same(raw, kind)


def test_oversize_single_event_is_rejected_before_parsing_and_a_large_batch_is_not():
    event = orjson.dumps({"prediction_id": "p", "model": "m", "prediction": 1, "pad": "x" * 200})
    good, bad = _same(event, "prediction", max_bytes=100)
    assert good == [] and "exceeds 100" in bad[0][1]
    good, bad = _same(b"[" + event + b"]", "prediction", max_bytes=100)
    assert [e["prediction_id"] for e in good] == ["p"] and bad == []


def test_typed_path_fills_the_defaults_like_the_reference():
    good, bad = records.decode(b'[{"prediction_id":"p","model":"m","prediction":2,"model_version":3}]',
                               DEFAULT_TS, records.validate_prediction)
    assert bad == []
    assert good == [{"prediction_id": "p", "model": "m", "model_version": "3", "timestamp": DEFAULT_TS,
                     "features": {}, "prediction": 2.0, "score": None, "segment": None, "latency_ms": None,
                     "kpis": {}, "invalid_kpis": []}]
    assert type(good[0]["prediction"]) is float
    labels, _ = records.decode(b'{"prediction_id":"p","model":"m","label":1,"kpis":{"revenue":3}}',
                               DEFAULT_TS, records.validate_label)
    assert labels[0]["kpis"] == {"revenue": 3.0} and labels[0]["invalid_kpis"] == []
    assert type(labels[0]["kpis"]["revenue"]) is float
