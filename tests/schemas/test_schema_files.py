"""The schema files: valid JSON Schema, shipped and printed by the CLI, named alike in the README,
and able to tell a broken output record (the integration tests' check relies on that)."""
from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import orjson
import pytest
from click.testing import CliRunner

import schemas
from detectors.alerts import ALERT_KINDS, make_alert, make_retrain_request
from streams import records
from streams.cli import main
from tests.schemas.outputs import problems, schema_for_topic, validators

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("name", schemas.names())
def test_each_schema_is_a_2020_12_schema_with_its_uri(name):
    schema = schemas.load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == schemas.uri(name)


def test_the_cli_lists_and_prints_the_schemas():
    runner = CliRunner()
    listing = runner.invoke(main, ["schema"])
    assert listing.exit_code == 0
    assert [line.split("\t")[0] for line in listing.output.splitlines()] == schemas.names()
    printed = runner.invoke(main, ["schema", "alerts"])
    assert printed.exit_code == 0 and orjson.loads(printed.output) == schemas.load("alerts")
    unknown = runner.invoke(main, ["schema", "nope"])
    assert unknown.exit_code == 1 and "no schema 'nope'" in unknown.output


def _readme_fields(topic: str) -> set[str]:
    text = README.read_text()
    start = text.index(f"### `driftline.{topic}`")
    end = min(i for i in (text.find("\n### ", start + 1), text.find("\n## ", start + 1)) if i > 0)
    fields: set[str] = set()
    for line in text[start:end].splitlines():
        if line.startswith("| `"):
            fields |= set(re.findall(r"`([a-z0-9_]+)`", line.split("|")[1]))
    return fields


def _schema_fields(name: str) -> set[str]:
    schema = schemas.load(name)
    item = schema.get("$defs", {}).get(name.rstrip("s"), schema)
    return set(item["properties"])


@pytest.mark.parametrize("name", schemas.names())
def test_the_readme_tables_and_the_schemas_name_the_same_fields(name):
    assert _readme_fields(name) == _schema_fields(name)


def test_the_alert_kinds_of_the_schema_are_the_worker_s():
    assert set(schemas.load("alerts")["properties"]["kind"]["enum"]) == set(ALERT_KINDS)
    assert {"latency", "kpi"} <= set(ALERT_KINDS)


def _alert(**change):
    alert = make_alert(model="m", model_version="1", kind="input_drift", severity="warning", detector="ks",
                       feature="x", statistic=0.3, p_value=1e-9, threshold=0.001,
                       window={"index": 3, "start": 1.0, "end": 2.0, "n": 500, "partition": 0,
                               "offsets": {"first": [1, 0], "last": [9, 4]}},
                       reference={"reference_id": "r", "source": "first_predictions", "n": 1000},
                       evidence={"x": {"statistic": 0.3}}, id_parts=(3, "x"), conditions=["x"], message="m")
    return {**alert, **change}


def test_the_output_check_accepts_real_records_and_tells_broken_ones():
    checks = validators()
    retrain = make_retrain_request(model="m", model_version="1", reason="r", alert_ids=["a"],
                                   data_range={"since": 1.0, "until": 2.0, "model_version": "1"}, id_parts=(1,))
    dead = records.deadletter_record(b"\xff", "invalid JSON", "driftline.predictions", 0, 7, None)
    for name, record in (("alerts", _alert()), ("retrain", retrain), ("deadletter", dead)):
        assert problems(name, orjson.dumps(record), {}, checks) == []
    assert problems("alerts", orjson.dumps(_alert(kind="nope")), {}, checks)
    assert problems("alerts", orjson.dumps({k: v for k, v in _alert().items() if k != "window"}), {}, checks)
    assert problems("retrain", orjson.dumps({**retrain, "alert_ids": "a"}), {}, checks)
    assert problems("deadletter", orjson.dumps({**dead, "offset": -1}), {}, checks)
    # inside a CloudEvent, structured or binary, the data is what is checked, and dataschema must match
    structured = {"specversion": "1.0", "dataschema": schemas.uri("alerts"), "data": _alert(severity="loud")}
    assert problems("alerts", orjson.dumps(structured), {}, checks)
    assert problems("alerts", orjson.dumps(_alert()), {"ce_specversion": b"1.0",
                                                       "ce_dataschema": schemas.uri("retrain").encode()}, checks)
    assert schema_for_topic("ab12.alerts") == "alerts" and schema_for_topic("ab12.predictions") is None
