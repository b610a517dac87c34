"""Checkpoints in the state table (streams.state): records of format 2 (``"format": 2``, the
monitor's plain state, references stored once apart), and format-1 records (the live objects
pickled, as workers wrote them before) still restored."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from detectors.monitor import ModelMonitor
from detectors.monitor_state import CHECKPOINT_FORMAT
from detectors.profile import ReferenceProfile
from streams.state import REFERENCE_PREFIX, StateStore, put_state
from tests.detectors.checkpoint_stream import comparable, feed
from tests.detectors.test_checkpoint_restore import FIXTURES, _plain


class Table(dict):
    write_partition = None


def _monitor() -> ModelMonitor:
    return pickle.loads((FIXTURES / "checkpoint_v1.pickle").read_bytes())["monitor"]


class _CheckpointPickler(pickle.Pickler):
    """The pickler of format 1 (streams.state before format 2): references as persistent ids."""

    def __init__(self, file, references: dict):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.references = references

    def persistent_id(self, obj):
        if isinstance(obj, ReferenceProfile):
            self.references[obj.reference_id] = obj
            return obj.reference_id
        return None


def test_a_checkpoint_is_a_record_of_format_2_with_the_references_apart():
    table = Table()
    outbox = [("alert", {"alert_id": "a1", "model": "m"}, 0)]
    store = StateStore(table)
    store.save_checkpoint(b"m", {"monitor": _monitor(), "outbox": outbox}, 0)
    record = store.record(b"m")
    assert CHECKPOINT_FORMAT == 2 and record["format"] == 2
    assert set(record) == {"format", "monitor", "outbox"} and record["outbox"] == outbox
    assert [v["reference"] for v in record["monitor"]["versions"]] == ["m:2:first-600", "m:1:first-600"]
    assert sorted(k for k in table if k.startswith(REFERENCE_PREFIX)) == [REFERENCE_PREFIX + b"m:1:first-600",
                                                                          REFERENCE_PREFIX + b"m:2:first-600"]


def _format_1(table, checkpoint: dict) -> bytes:
    """A record as StateStore wrote them before format 2: the live objects, references apart."""
    buffer, references = io.BytesIO(), {}
    _CheckpointPickler(buffer, references).dump(checkpoint)
    for reference_id, profile in references.items():
        put_state(table, REFERENCE_PREFIX + reference_id.encode(), pickle.dumps(profile))
    return buffer.getvalue()


def test_format_2_and_format_1_records_restore_to_monitors_that_go_on_identically():
    from tests.detectors.fixtures.make_checkpoint_v1 import continuation
    table = Table()
    store = StateStore(table)
    store.save_checkpoint(b"new", {"monitor": _monitor(), "outbox": []}, 0)
    store.put(b"old", _format_1(table, {"monitor": _monitor(), "outbox": [("alert", {"model": "m"}, 0)]}))
    new, old = store.load_checkpoint(b"new"), store.load_checkpoint(b"old")
    assert set(new) == {"monitor", "outbox"} and old["outbox"] == [("alert", {"model": "m"}, 0)]
    assert _plain(new["monitor"].status()) == _plain(old["monitor"].status()) == _plain(_monitor().status())
    later = continuation()
    want = comparable(feed(_monitor(), *later))
    assert comparable(feed(new["monitor"], *later)) == want and len(want) == 17
    # format 1 stored every latency reference under one id ("latency:first"): both versions of
    # the old record restored the first one stored, and their latency tests differ from here on
    restored = [v.outcomes.latency.reference.features["latency_ms"].sample for v in old["monitor"].versions.values()]
    assert np.array_equal(*restored)


def test_format_2_is_smaller_than_format_1():
    """The same monitor as a format-1 record (the live objects) and as format 2."""
    monitor = _monitor()
    old = len(_format_1(Table(), {"monitor": monitor, "outbox": []}))
    saved = StateStore(Table()).save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    assert saved.size < 0.75 * old


def test_a_record_of_an_unknown_format_is_refused_not_misread():
    table = Table()
    store = StateStore(table)
    store.put(b"m", pickle.dumps({"format": 3, "monitor": {}, "outbox": []}))
    with pytest.raises(ValueError, match="format 3"):
        store.load_checkpoint(b"m")
