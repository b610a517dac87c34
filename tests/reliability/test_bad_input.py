"""Bad input, fuzzed: the wire contract in-process on thousands of payloads, then a real worker.

In-process, hypothesis checks that ``streams.records.decode`` never raises, sorts every
element of a message into valid or dead-lettered, and agrees with an oracle built by
breaking one rule of a valid event at a time. Then a few hundred of those payloads go
through one real worker on the real broker: it must stay up, dead-letter exactly the
bad elements (with a reason) and fold every valid prediction into its model's state.
"""
from __future__ import annotations

import itertools
import re
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streams.records import decode, validate_label, validate_prediction
from tests.integration.harness import Reader, isolated_env, processed, produce_raw, topic, wait_until
from tests.reliability.payloads import is_finite_number, json_values, messages, names

pytestmark = pytest.mark.integration

FUZZ = settings(derandomize=True, database=None, deadline=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck))
VALIDATORS = {"prediction": validate_prediction, "label": validate_label}
EXAMPLES = {"prediction": 1500, "label": 1000}   # hypothesis draws ~100 payloads/s here


def _check_good(kind: str, event: dict) -> None:
    """A validated event has every field filled with the type later stages rely on."""
    assert isinstance(event["prediction_id"], str) and event["prediction_id"]
    assert isinstance(event["model"], str) and event["model"]
    assert is_finite_number(event["timestamp"])
    if kind == "prediction":
        assert isinstance(event["model_version"], str) and event["model_version"]
        assert isinstance(event["features"], dict)
        assert event["score"] is None or is_finite_number(event["score"])
        outcome = event["prediction"]
    else:
        outcome = event["label"]
    assert isinstance(outcome, (str, bool)) or is_finite_number(outcome)
    # a bad KPI never rejects its event: what is kept is finite, what is not is named (issue 15)
    assert all(isinstance(k, str) and is_finite_number(v) for k, v in event["kpis"].items())
    assert isinstance(event["invalid_kpis"], list)
    orjson.dumps(event)  # the ingest stage re-serialises it for the internal topic


def _run(test) -> int:
    """Run a hypothesis test and return how many payloads it decoded."""
    tried = Counter()
    test(tried)
    return tried["payloads"]


@pytest.mark.parametrize("kind", ["prediction", "label"])
def test_decode_never_raises_on_arbitrary_bytes_or_json(kind):
    validate = VALIDATORS[kind]
    raw_inputs = st.one_of(
        st.binary(max_size=200),
        json_values.map(orjson.dumps),
        st.lists(json_values, max_size=5).map(orjson.dumps),
        # valid-looking objects whose fields take any JSON value
        st.dictionaries(st.sampled_from(["prediction_id", "model", "model_version", "timestamp", "features",
                                         "prediction", "score", "segment", "latency_ms", "label", "kpis", "x"]),
                        st.one_of(json_values, st.datetimes().map(lambda d: d.isoformat()),
                                  st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())),
                        max_size=9).map(orjson.dumps),
    )

    def check(tried):
        @settings(FUZZ, max_examples=800)
        @given(raw_inputs)
        def one(raw):
            tried["payloads"] += 1
            good, bad = decode(raw, 1_767_225_600.0, validate)
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                assert good == [] and len(bad) == 1 and "invalid JSON" in bad[0][1]
                return
            elements = len(obj) if isinstance(obj, list) else 1
            assert len(good) + len(bad) == max(elements, 1)
            for index, reason in bad:
                assert isinstance(reason, str) and reason
                assert index is None or 0 <= index < elements
            for event in good:
                _check_good(kind, event)
        one()

    tried = _run(check)
    print(f"\n[fuzz] decode({kind}) never raised on {tried} arbitrary payloads")
    assert tried >= 800, f"only {tried} payloads tried"


@pytest.mark.parametrize("kind", ["prediction", "label"])
def test_decode_sorts_every_element_like_the_contract_says(kind):
    validate = VALIDATORS[kind]
    shapes = Counter()

    def check(tried):
        @settings(FUZZ, max_examples=EXAMPLES[kind])
        @given(messages(kind, names))
        def one(payload):
            tried["payloads"] += 1
            shapes[payload.why] += 1
            good, bad = decode(payload.raw, 1_767_225_600.0, validate)
            assert len(bad) == payload.bad, (payload.why, bad)
            assert len(good) == len(payload.valid), (payload.why, bad)
            assert [e["prediction_id"] for e in good] == [e["prediction_id"] for e in payload.valid]
            assert all(reason for _, reason in bad)
            for event in good:
                _check_good(kind, event)
        one()

    tried = _run(check)
    print(f"\n[fuzz] decode({kind}) matched the oracle on {tried} payloads: {dict(shapes)}")
    assert tried >= EXAMPLES[kind] and len(shapes) == 13, f"{tried} payloads, shapes {dict(shapes)}"


def _generate(strategy, n: int) -> list:
    """``n`` examples of ``strategy``, the same on every run."""
    out: list = []

    @settings(FUZZ, max_examples=n)
    @given(strategy)
    def collect(example):
        out.append(example)

    collect()
    return out


@pytest.mark.slow
def test_fuzzed_traffic_through_a_real_worker(broker_url, redis_url, unique, start_worker, write_config):
    """A few hundred fuzzed messages, mixed with valid events, through ONE real worker."""
    counter = itertools.count()
    ids = st.builds(lambda: f"fz-{unique}-{next(counter)}")
    known = [f"fz-{unique}-a", f"fz-{unique}-b"]
    # known models plus unknown ones with arbitrary (valid) names
    models = st.one_of(st.sampled_from(known), st.text(max_size=12).map(lambda s: f"fz-{unique}-u{s}"))
    predictions = _generate(messages("prediction", models, ids), 300)
    labels = _generate(messages("label", models, ids, oversize=False), 100)

    env = isolated_env(broker_url, redis_url)
    worker = start_worker(env, config=write_config())
    produce_raw(broker_url, topic(env, "predictions"), [p.raw for p in predictions])
    produce_raw(broker_url, topic(env, "labels"), [p.raw for p in labels])

    expected_by_model = Counter(e["model"] for p in predictions for e in p.valid)
    expected_bad = sum(p.bad for p in predictions + labels)
    valid_predictions = sum(expected_by_model.values())
    tried = len(predictions) + len(labels)
    print(f"\n[fuzz] through the worker: {tried} messages ({len(predictions)} prediction, {len(labels)} label), "
          f"{valid_predictions} valid predictions for {len(expected_by_model)} models, "
          f"{expected_bad} bad elements; shapes {dict(Counter(p.why for p in predictions + labels))}")

    reader = Reader(broker_url, topic(env, "deadletter"))
    try:
        reader.poll_until(lambda r: len(r) >= expected_bad, timeout=90)
        letters = reader.drain(idle=3.0, timeout=30)
    finally:
        reader.close()

    def all_processed():
        return all(processed(redis_url, m) >= n for m, n in expected_by_model.items())

    wait_until(all_processed, timeout=90, interval=0.5, what="every valid prediction processed")
    counts = {m: processed(redis_url, m) for m in expected_by_model}
    log = worker.log()
    assert worker.proc.poll() is None, f"worker died:\n{log[-3000:]}"
    assert not re.search(r"processing error|processing .* failed|Crashed|Traceback", log), log[-5000:]
    assert counts == dict(expected_by_model), f"of {tried} fuzzed messages: processed {counts}"
    assert len(letters) == expected_bad, (
        f"{len(letters)} dead letters for {expected_bad} bad elements in {tried} fuzzed messages")
    sources = Counter(letter["source_topic"] for letter in letters)
    assert set(sources) <= {topic(env, "predictions"), topic(env, "labels")}, sources
    for letter in letters:
        assert letter["reason"] and letter["offset"] >= 0 and letter["payload_sha256"]
