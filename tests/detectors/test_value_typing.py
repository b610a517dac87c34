"""One typing of values for live events, first-N references and references built from files.

Issue 11: pandas and Python's csv module write booleans as ``True``/``False``,
live JSON as ``true``/``false``; a reference built from a pandas CSV saw every
live boolean as an unseen category, and every window raised input drift, data
quality, multivariate and segment drift alerts on traffic with no shift at all.
"""
from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
from click.testing import CliRunner

from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile, to_column
from detectors.settings import ModelSettings
from detectors.values import infer_type, parse_text
from sinks.status import get_reference_sync
from streams.cli import main as cli
from streams.files import read_rows
from streams.records import decode, validate_prediction

REGIONS = {"us": ["US"], "eu": ["DE", "FR", "IT"], "apac": ["JP", "AU"]}


def rows(n, seed):
    """Mixed types, correlated with each other and with the segment, some missing values."""
    rng = np.random.default_rng(seed)
    region = rng.choice(list(REGIONS), size=n, p=[0.5, 0.3, 0.2])
    country = [str(rng.choice(REGIONS[r])) for r in region]
    tenure = rng.normal(np.select([region == "us", region == "eu"], [5.0, 3.0], 1.0))
    amount = rng.lognormal(2.0 + 0.2 * tenure, 0.5)
    amount[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({"country": country, "amount": amount, "tenure": tenure,
                         "items": rng.poisson(3, size=n), "member": rng.random(n) < 0.2 + 0.1 * (tenure > 3),
                         "region": region})


def live_events(frame: pd.DataFrame, start: int) -> list[dict]:
    """Frame rows as a producer sends them (JSON: booleans true/false, NaN as null), decoded as the worker does."""
    payload = []
    for i, row in enumerate(frame.itertuples(index=False)):
        score = float(1 / (1 + np.exp(-(row.items - 3))))   # the same in every region: no fairness gap
        payload.append({"prediction_id": f"p{start + i}", "model": "m", "model_version": "1",
                        "timestamp": float(start + i), "prediction": score >= 0.5, "score": score,
                        "segment": {"region": row.region},
                        "features": {"country": row.country, "amount": None if np.isnan(row.amount) else row.amount,
                                     "tenure": row.tenure, "items": int(row.items), "member": bool(row.member)}})
    events = []
    for i in range(0, len(payload), 500):   # micro-batches, as a producer sends them
        good, bad = decode(orjson.dumps(payload[i:i + 500]), 0.0, validate_prediction)
        assert bad == []
        events += good
    return events


SPELLINGS = {
    "pandas bool (True/False)": lambda s: s,
    "R / spreadsheet (TRUE/FALSE)": lambda s: s.map({True: "TRUE", False: "FALSE"}),
    "SQL export (1/0)": lambda s: s.astype(int),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_reference_written_by_pandas_to_csv_raises_nothing_on_the_same_distribution(
        spelling, tmp_path, redis_url, redis_client):
    reference = rows(20_000, seed=1)
    reference["member"] = SPELLINGS[spelling](reference["member"])
    path = tmp_path / "reference.csv"
    reference.to_csv(path)   # pandas' defaults: index column, True/False, NaN as an empty cell
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "reference", "build", "--model", "m", "--version", "1",
                                      "--segment-column", "region", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    stored = ReferenceProfile.from_dict(get_reference_sync(redis_url, "m", "1"))
    expected_member = "numeric" if spelling == "SQL export (1/0)" else "boolean"
    assert stored.types == {"country": "categorical", "amount": "numeric", "tenure": "numeric",
                            "items": "numeric", "member": expected_member}
    for name, kind in stored.types.items():   # the inferred type of every column is printed
        assert any([c.strip() for c in line.split("│")[1:3]] == [name, kind] for line in result.output.splitlines())
    assert sorted(stored.segments) == ["region=apac", "region=eu", "region=us"]

    monitor = ModelMonitor("m", ModelSettings().merged({"window_size": 2000, "window_seconds": 1e9,
                                                        "segment_min_size": 100}))
    monitor.set_reference("1", stored)
    out = []
    events = live_events(rows(20_000, seed=2), start=0)
    for i in range(0, len(events), 500):
        out += monitor.add_predictions(events[i:i + 500])
    version = monitor.versions["1"]
    assert version.window_index == 10
    assert [(a["kind"], a["features"]) for k, a in out if k == "alert"] == []
    assert version.last_window["segment_drift"]["untested"] == {}


def test_declared_types_win_over_inference_and_keep_categorical_text(tmp_path, redis_url, redis_client):
    path = tmp_path / "ref.csv"
    path.write_text("zip,flag,amount,label\n01234,1,3.5,1\n02139,0,,0\n" + "01234,1,\"4\",1\n" * 300)
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "reference", "build", "--model", "m",
                                      "--types", "zip=categorical,flag=boolean", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    stored = ReferenceProfile.from_dict(get_reference_sync(redis_url, "m", "0"))
    assert stored.types == {"zip": "categorical", "flag": "boolean", "amount": "numeric"}
    assert stored.features["zip"].category_counts == {"01234": 301, "02139": 1}
    assert stored.features["flag"].category_counts == {"true": 301, "false": 1}
    assert stored.features["amount"].missing_rate == pytest.approx(1 / 302)
    bad = CliRunner().invoke(cli, ["--redis-url", redis_url, "reference", "build", "--model", "m",
                                   "--types", "zip=text", str(path)])
    assert bad.exit_code != 0 and "zip=text" in bad.output


def test_every_spelling_of_a_boolean_is_one_value_wherever_it_comes_from(tmp_path):
    spellings = [True, "True", "true", "TRUE", False, "False", "false", "FALSE"]
    assert to_column(spellings, "categorical").tolist() == ["true"] * 4 + ["false"] * 4
    assert to_column(spellings + [1, 0, "1", "0"], "boolean").tolist() == ["true"] * 4 + ["false"] * 4 + \
        ["true", "false", "true", "false"]
    assert to_column([True, False, 2.5], "numeric").tolist() == [1.0, 0.0, 2.5]
    assert [parse_text(t) for t in ("True", "FALSE", "", "7", "0.25", "x")] == [True, False, None, 7, 0.25, "x"]
    assert infer_type([True, "False", None]) == "boolean" and infer_type([1, 0]) == "numeric"
    # the same column from JSONL, from CSV and from live events gives one profile
    (tmp_path / "a.jsonl").write_bytes(b'{"b": true}\n{"b": false}\n{"b": null}\n')
    (tmp_path / "a.csv").write_text("b\nTrue\nFalse\n\n")
    profiles = [ReferenceProfile.from_columns(read_rows(tmp_path / name)).features["b"] for name in ("a.jsonl", "a.csv")]
    profiles.append(ReferenceProfile.from_columns({"b": [True, False, None]}).features["b"])
    assert [(p.value_type, p.category_counts, p.missing_rate) for p in profiles] == \
        [("boolean", {"false": 1, "true": 1}, pytest.approx(1 / 3))] * 3


def test_booleans_from_a_pandas_csv_and_from_live_json_are_the_same_categories(tmp_path):
    """The typing alone (no segments, no CLI): read_rows + from_columns, as `reference build` does."""
    path = tmp_path / "reference.csv"
    rows(10_000, seed=3).drop(columns="region").to_csv(path)
    reference = ReferenceProfile.from_columns(read_rows(path), reference_id="csv")
    assert reference.features["member"].category_counts.keys() == {"true", "false"}
    monitor = ModelMonitor("m", ModelSettings().merged({"window_size": 2000, "window_seconds": 1e9,
                                                        "segment_drift": False}))
    monitor.set_reference("1", reference)
    out = []
    events = live_events(rows(10_000, seed=4), start=0)
    for i in range(0, len(events), 500):
        out += monitor.add_predictions(events[i:i + 500])
    assert monitor.versions["1"].window_index == 5
    assert [(a["kind"], a["features"]) for k, a in out if k == "alert"] == []
