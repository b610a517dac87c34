"""The schemas and the worker's decoder agree: what a schema accepts is never dead-lettered,
what it rejects always is (``records.decode`` with ``validate_prediction``/``validate_label``).

Payloads come from the schemas' own structure (tests/schemas/strategies.py): valid ones from
their types, required fields, lengths and patterns; invalid ones by breaking exactly one rule of
a valid one. Two rules are soft on purpose (the issue's bad-input rule: never stop the other
fields of an event): a ``kpis`` value that is not a finite number and a negative ``latency_ms``
break the schema but are counted by the monitor, not dead-lettered; they have their own test.
"""
from __future__ import annotations

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from streams import records
from tests.schemas.strategies import SchemaStrategies



def soft(key: str, value) -> bool:
    """A rule whose breach the monitor counts instead of dead-lettering the event."""
    negative = isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0
    return key == "kpis" or (key == "latency_ms" and negative)

TOPICS = {"predictions": records.validate_prediction, "labels": records.validate_label}
CHECKS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _setup(name: str):
    schema = schemas.load(name)
    return schema, SchemaStrategies(schema), jsonschema.Draft202012Validator(schema)


def _decode(payload, name):
    return records.decode(orjson.dumps(payload), 1767225600.0, TOPICS[name])


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_a_schema_valid_payload_is_never_dead_lettered(name):
    schema, strategies, validator = _setup(name)

    @CHECKS
    @given(strategies.valid(schema))
    def check(payload):
        validator.validate(payload)
        good, bad = _decode(payload, name)
        assert bad == []
        items = payload if isinstance(payload, list) else [payload]
        assert [e["prediction_id"] for e in good] == [i["prediction_id"] for i in items]
        assert [e["model"] for e in good] == [i["model"] for i in items]

    check()


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_a_schema_invalid_event_is_always_dead_lettered(name):
    schema, strategies, validator = _setup(name)
    item = schema["$defs"][name.rstrip("s")]

    @CHECKS
    @given(strategies.invalid_object(item, skip=soft), st.booleans())
    def check(event, as_batch):
        payload = [event] if as_batch else event
        assert not validator.is_valid(payload)
        good, bad = _decode(payload, name)
        assert good == []
        assert [index for index, _ in bad] == [0 if as_batch else None]

    check()


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_in_a_micro_batch_only_the_invalid_elements_are_dead_lettered(name):
    schema, strategies, validator = _setup(name)
    item = schema["$defs"][name.rstrip("s")]

    @CHECKS
    @given(st.lists(st.tuples(st.booleans(), strategies.valid(item), strategies.invalid_object(item, skip=soft)),
                    min_size=1, max_size=5))
    def check(rows):
        batch = [good if ok else bad for ok, good, bad in rows]
        good, bad = _decode(batch, name)
        assert [i for i, _ in bad] == [i for i, (ok, _, _) in enumerate(rows) if not ok]
        assert len(good) == sum(ok for ok, _, _ in rows)
        assert validator.is_valid(batch) == all(ok for ok, _, _ in rows)

    check()


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_other_payloads_the_schema_rejects_are_dead_lettered(name):
    _, _, validator = _setup(name)
    for payload in ([], 1, "x", None, True, [1], [[]]):
        assert not validator.is_valid(payload)
        good, bad = _decode(payload, name)
        assert good == [] and bad


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_soft_rules_break_the_schema_but_keep_the_event(name):
    """A KPI that is not a finite number (or a negative latency): the schema says no, the worker keeps
    the event (the monitor counts the bad value; the other fields still count)."""
    schema, strategies, validator = _setup(name)
    item = schema["$defs"][name.rstrip("s")]
    base = {"prediction_id": "p1", "model": "m", "prediction": 1, "label": 1}
    broken = [{**base, "kpis": {"revenue": "12"}}, {**base, "kpis": {"": 1}}, {**base, "kpis": [1]}]
    if "latency_ms" in item["properties"]:
        broken.append({**base, "latency_ms": -3.0})
    for event in broken:
        assert not validator.is_valid(event), event
        good, bad = _decode(event, name)
        assert bad == [] and [e["prediction_id"] for e in good] == ["p1"]
