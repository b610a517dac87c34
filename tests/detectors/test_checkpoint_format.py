"""The explicit checkpoint format (issue 13): ``ModelMonitor.to_state()`` is plain data, and
``from_state`` of it, through bytes, gives a monitor that goes on exactly as the original.

The stream layer adds ``"format"`` and the outbox and stores references apart
(tests/streams/test_checkpoint_format.py); here the state is pickled whole.
"""
from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np
import pytest

from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile
from detectors.settings import ModelSettings
from tests.detectors.checkpoint_stream import OUTCOME_SETTINGS, comparable, feed, outcome_stream
from tests.detectors.test_checkpoint_restore import FIXTURES, _plain, assert_same

PLAIN = (dict, list, str, int, float, bool, type(None), bytes, np.ndarray, tuple)
# the only objects a state holds: the version's reference (stored apart by the stream layer) and
# river's concept detector and baseline metric (no simpler public state)
OBJECTS = {("versions", "reference"): ReferenceProfile,
           ("versions", "performance", "concept"): object, ("versions", "performance", "baseline_metric"): object}


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item, path if not path or path[-1] != "versions" else path)
    else:
        yield path, value


def _named(path) -> tuple:
    return tuple(p for p in path if isinstance(p, str))


def restored(monitor: ModelMonitor) -> ModelMonitor:
    return ModelMonitor.from_state(pickle.loads(pickle.dumps(monitor.to_state(), protocol=pickle.HIGHEST_PROTOCOL)))


def same_state(a, b, where=""):
    """Two states equal field by field (arrays by value and dtype)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (where, list(a), list(b))
        for key in a:
            same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, PLAIN):
        assert a == b or (a != a and b != b), (where, a, b)
    else:
        assert pickle.dumps(a) == pickle.dumps(b), where


def _fixture_monitor() -> ModelMonitor:
    return pickle.loads((FIXTURES / "checkpoint_v1.pickle").read_bytes())["monitor"]


def test_the_state_is_plain_data_but_the_reference_and_rivers_objects():
    state = _fixture_monitor().to_state()
    seen = set()
    for path, leaf in _leaves(state):
        if isinstance(leaf, PLAIN):
            continue
        named = next(key for key in OBJECTS if _named(path)[:len(key)] == key)
        assert isinstance(leaf, OBJECTS[named]), (path, type(leaf))
        seen.add(named)
    assert seen == set(OBJECTS)
    assert state["versions"][0]["performance"]["metrics"]["task"] == "classification"


def test_from_state_of_to_state_gives_the_same_state():
    monitor = _fixture_monitor()
    state = monitor.to_state()
    again = restored(monitor).to_state()
    same_state(pickle.loads(pickle.dumps(state)), again)


def test_the_format_1_fixture_through_to_state_and_from_state_emits_what_its_code_emitted():
    """The checkpoint of main at 1aa65ca (two versions, a window half open, 490 predictions waiting
    for labels, 280 labels that came first, 18 active conditions, latency and KPI baselines),
    converted to the explicit format and back: what follows is what that code emitted."""
    from tests.detectors.fixtures.make_checkpoint_v1 import continuation
    monitor = restored(_fixture_monitor())
    status = monitor.status()
    assert status["pending_labels"] == 490 and status["early_labels"] == 280
    assert [v["open_window"]["n"] for v in status["versions"].values()] == [13, 107]
    out = feed(monitor, *continuation())
    expected = _expected_v1()
    assert [kind for kind, _ in out] == [kind for kind, _ in expected["emitted"]]
    assert {"latency", "kpi", "comparison", "input_drift", "resolved"} <= {r.get("kind") for _, r in out}
    assert_same(_plain(comparable(out)), expected["emitted"])
    assert_same(_plain(monitor.window_summaries()), expected["windows"])
    assert_same(_plain(monitor.status()), expected["status"])


def _expected_v1() -> dict:
    import orjson
    return _plain(orjson.loads((FIXTURES / "checkpoint_v1_expected.json").read_bytes()))


def test_a_monitor_restored_from_its_state_goes_on_identically():
    """A monitor restored from its state at 300 predictions (the references being built), again at
    1,750 (just before the shift) and at 2,450 (alerts active, a window half open), against the
    same monitor never restored: the same outputs, window summaries, status and ticks."""
    settings = ModelSettings(**OUTCOME_SETTINGS)
    predictions, labels = outcome_stream(0, 3550, seed=21, shift_from=1800, slow_from=2000)
    label_of = {label["prediction_id"]: label for label in labels}
    monitor, chain = ModelMonitor("m", settings, "cfg"), ModelMonitor("m", settings, "cfg")
    emitted = []
    for start, stop in ((0, 300), (300, 1750), (1750, 2450), (2450, 3550)):
        if start:
            chain = restored(chain)
        part = predictions[start:stop]
        part_labels = [label_of[p["prediction_id"]] for p in part if p["prediction_id"] in label_of]
        want, got = comparable(feed(monitor, part, part_labels)), comparable(feed(chain, part, part_labels))
        assert got == want, (start, stop)
        emitted += [kind for kind, _ in want]
        assert chain.window_summaries() == monitor.window_summaries()
        assert _plain(chain.status()) == _plain(monitor.status())
        assert chain.tick(5_000_000.0 + stop) == monitor.tick(5_000_000.0 + stop)
    assert emitted.count("alert") >= 5 and "retrain" in emitted


def test_a_typed_open_window_is_restored_typed_without_its_reference():
    """A window half open in the typed buffer is stored as its arrays (no reference inside: the
    stream layer stores references apart) and comes back typed, row for row."""
    from detectors.window_buffer import WindowBuffer
    settings = ModelSettings(**OUTCOME_SETTINGS)
    predictions, labels = outcome_stream(0, 2450, seed=21, shift_from=1800, slow_from=2000)
    monitor = ModelMonitor("m", settings, "cfg")
    feed(monitor, predictions, labels)
    version = next(iter(monitor.versions.values()))
    assert isinstance(version.open.rows, WindowBuffer) and version.open.n > 0
    state = version.open.to_state()
    assert "typed" in state and not any(isinstance(leaf, ReferenceProfile) for _, leaf in _leaves(state))
    back = restored(monitor)
    rows = next(iter(back.versions.values())).open.rows
    assert isinstance(rows, WindowBuffer) and rows.n == version.open.n
    assert _plain(rows.columns()) == _plain(version.open.rows.columns())


def test_shared_counts_and_settings_stay_shared_after_a_restore():
    monitor = restored(_fixture_monitor())
    for version in monitor.versions.values():
        for part in (version.performance, version.alerts, version.retrain):
            assert part.counts is version.counts and part.settings is monitor.settings
        assert version.settings is monitor.settings
    assert monitor.join.settings is monitor.settings
    assert isinstance(monitor.join.pending, OrderedDict) and isinstance(monitor.join.early, OrderedDict)


def test_each_version_keeps_its_own_latency_baseline():
    """Every latency tracker's reference is called ``latency:first``: format 1 stored it apart under
    that id, once per worker, so every version restored the first one stored. Format 2 keeps it
    in the version's state."""
    monitor = _fixture_monitor()
    samples = {name: v.outcomes.latency.reference.features["latency_ms"].sample for name, v in monitor.versions.items()}
    assert not np.array_equal(samples["1"], samples["2"])
    for name, version in restored(monitor).versions.items():
        np.testing.assert_array_equal(version.outcomes.latency.reference.features["latency_ms"].sample, samples[name])
