"""Checkpoints as content-defined blocks (streams.state_blocks, streams.state.StateStore): a
checkpoint writes what changed, as one pack; the changelog left by a crash at any write restores a
whole checkpoint (the last or the one before); deletes a crash cut short are issued again; the
table holds about the state, not every pack ever written."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from detectors.monitor import ModelMonitor
from detectors.monitor_state import CHECKPOINT_FORMAT
from detectors.settings import ModelSettings
from streams.state import REFERENCE_PREFIX, StateStore, put_state
from streams.state_blocks import Blocks, assemble, split
from tests.detectors.checkpoint_stream import SETTINGS, comparable, feed, stream
from tests.detectors.test_checkpoint_restore import _plain


class Table(dict):
    """A state table that logs its writes in order, as the changelog receives them."""
    write_partition = None

    def __init__(self, *args):
        super().__init__(*args)
        self.log: list = []

    def __setitem__(self, key, value):
        self.log.append(("set", key, value))
        super().__setitem__(key, value)

    def pop(self, key, default=None):
        self.log.append(("del", key, None))
        return super().pop(key, default)


def _replayed(snapshot: dict, ops: list) -> Table:
    """The table a new owner restores from a changelog that ends after ``ops``."""
    table = Table(snapshot)
    for op, key, value in ops:
        if op == "set":
            dict.__setitem__(table, key, value)
        else:
            dict.pop(table, key, None)
    return table


def _packs_in(table, key: bytes) -> set:
    prefix = key + b"\x00pack\x00"
    return {int(k[len(prefix):]) for k in table if k.startswith(prefix)}


def _fed(n: int, start: int = 0, monitor: ModelMonitor | None = None, **settings) -> ModelMonitor:
    monitor = monitor or ModelMonitor("m", ModelSettings(**{**SETTINGS, **settings}), "cfg-1")
    feed(monitor, *stream(start, n, seed=5, shift_from=900))
    for version in monitor.versions.values():
        version.closed_windows.clear()    # the stream layer takes them after each message
    return monitor


def test_a_leaf_split_into_blocks_comes_back_equal():
    rng = np.random.default_rng(3)
    state = {"floats": rng.normal(size=(700, 3)), "codes": rng.integers(0, 5, 3000).astype(np.int8),
             "small": np.arange(4.0), "raw": rng.bytes(2000), "buffer": bytearray(rng.bytes(900)),
             "ids": [f"p{i}" for i in range(500)], "rows": [[1, "a", None]] * 3, "pair": (1.5, [2, 3]),
             "none": None}
    blocks = Blocks()
    skeleton = split(state, blocks)
    assert len(pickle.dumps(skeleton)) < 2000 and len(blocks.new) > 20
    back = assemble(skeleton, blocks.new.__getitem__, {})
    for key in ("floats", "codes", "small"):
        assert back[key].dtype == state[key].dtype and np.array_equal(back[key], state[key])
    back["floats"][0, 0] = 1.0      # writable, as the live state it restores
    assert {k: back[k] for k in ("raw", "buffer", "ids", "rows", "pair", "none")} == \
           {k: state[k] for k in ("raw", "buffer", "ids", "rows", "pair", "none")}
    assert type(back["buffer"]) is bytearray and type(back["pair"]) is tuple


def test_a_column_that_grows_or_slides_changes_only_its_end_blocks():
    column = np.random.default_rng(4).integers(0, 2, 4000).astype(np.float64)   # errors: 0s and 1s
    before = Blocks()
    split({"errors": column[:3000]}, before)
    for later in (column[:3100], column[100:3100]):     # 100 appended; and the first 100 dropped too
        after = Blocks()
        split({"errors": later}, after)
        new = [name for name in after.sizes if name not in before.sizes]
        assert sum(after.sizes[name] for name in new) < 0.25 * later.nbytes, len(new)
    # told how the last checkpoint cut it, a column that grew keeps its blocks but the last, and
    # cuts only the bytes from there
    grown, leaf = Blocks(before.leaves), before.leaves[("errors",)]
    split({"errors": column[:3100]}, grown)
    assert grown.leaves[("errors",)].names[:len(leaf.names) - 1] == leaf.names[:-1]
    assert sum(size for name, size in grown.sizes.items() if name not in before.sizes) <= 800 + leaf.sizes[-1]
    assert sum(map(len, grown.new.values())) == 3100 * 8 - sum(leaf.sizes[:-1])
    slid = Blocks(before.leaves)     # not a prefix: cut again, content-defined
    assert assemble(split({"errors": column[100:3100]}, slid), slid.new.__getitem__, {})["errors"].tolist() == \
        column[100:3100].tolist()


def test_a_checkpoint_after_more_traffic_writes_what_changed_and_restores_the_same_monitor():
    table = Table()
    store = StateStore(table)
    monitor = _fed(1100, window_size=1000, performance_window=1000)
    first = store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    _fed(50, 1100, monitor)
    store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)  # moves the unchanged skeleton blocks
    _fed(50, 1150, monitor)
    third = store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    assert first.written > first.size and third.size > first.size
    assert third.written < 0.35 * third.size, third     # the skeleton's changes, and the columns' ends
    restored = StateStore(table).load_checkpoint(b"m")["monitor"]
    assert _plain(restored.status()) == _plain(monitor.status())
    later = stream(1200, 1200, seed=6, shift_from=1400)
    want = comparable(feed(monitor, *later))
    assert comparable(feed(restored, *later)) == want and any(kind == "alert" for kind, _ in want)


def test_the_changelog_a_crash_leaves_at_any_write_restores_the_last_checkpoint_or_the_one_before():
    table = Table()
    store = StateStore(table)
    monitor = _fed(700)
    store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    before, snapshot = _plain(monitor.status()), dict(table)
    table.log.clear()
    _fed(300, 700, monitor)          # the window closes at 900: its blocks are released
    store.save_checkpoint(b"m", {"monitor": monitor, "outbox": [("alert", {"model": "m"}, 0)]}, 0)
    after, ops = _plain(monitor.status()), list(table.log)
    head = next(i for i, (op, key, _) in enumerate(ops) if key == b"m")
    assert before != after and 0 < head and ops[head + 1:] and all(op == "del" for op, _, _ in ops[head + 1:])
    assert all(op == "set" for op, _, _ in ops[:head])
    for cut in range(len(ops) + 1):
        restored = StateStore(_replayed(snapshot, ops[:cut])).load_checkpoint(b"m")
        assert _plain(restored["monitor"].status()) == (after if cut > head else before), cut
        assert restored["outbox"] == ([("alert", {"model": "m"}, 0)] if cut > head else [])
    assert _packs_in(table, b"m") == set(store.packs[b"m"].sizes) and len(ops) < 6    # nothing left behind


def _second_save() -> tuple[dict, list, int]:
    """A model saved at 700 predictions and again at 1,000 (a window closed between): the table
    after the first save, the writes of the second, and where in them its head is."""
    table = Table()
    store = StateStore(table)
    monitor = _fed(700)
    store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    snapshot = dict(table)
    table.log.clear()
    _fed(300, 700, monitor)
    store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    return snapshot, list(table.log), next(i for i, (_, key, _) in enumerate(table.log) if key == b"m")


def test_deletes_a_crash_cut_short_are_issued_with_the_next_checkpoint():
    snapshot, ops, head = _second_save()
    crashed = _replayed(snapshot, ops[:head + 1])       # the head, none of its deletes
    owner = StateStore(crashed)
    restored = owner.load_checkpoint(b"m")["monitor"]
    assert _packs_in(crashed, b"m") > set(owner.packs[b"m"].sizes)      # a pack the crash left behind...
    _fed(20, 1000, restored)
    owner.save_checkpoint(b"m", {"monitor": restored, "outbox": []}, 0)
    assert _packs_in(crashed, b"m") == set(owner.packs[b"m"].sizes)     # ...deleted by the next checkpoint


def test_a_store_writes_on_top_of_what_another_worker_wrote_since():
    """A model moved away and back: the store learns its blocks from the head it loads, not from
    what it wrote itself before (the other owner deleted some of those)."""
    table = Table()
    ours, theirs = StateStore(table), StateStore(table)
    monitor = _fed(700)
    ours.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    ours.forget(b"m")
    moved = theirs.load_checkpoint(b"m")["monitor"]
    _fed(300, 700, moved)
    theirs.save_checkpoint(b"m", {"monitor": moved, "outbox": []}, 0)
    back = ours.load_checkpoint(b"m")["monitor"]
    _fed(100, 1000, back)
    ours.save_checkpoint(b"m", {"monitor": back, "outbox": []}, 0)
    assert _plain(StateStore(table).load_checkpoint(b"m")["monitor"].status()) == _plain(back.status())
    assert _packs_in(table, b"m") == set(ours.packs[b"m"].sizes)


def test_a_checkpoint_written_whole_by_a_worker_before_blocks_still_restores():
    table = Table()
    monitor = _fed(800)
    state = monitor.to_state()
    for version in state["versions"]:
        profile = version["reference"]
        put_state(table, REFERENCE_PREFIX + profile.reference_id.encode(), pickle.dumps(profile))
        version["reference"] = profile.reference_id
    put_state(table, b"m", pickle.dumps({"monitor": state, "outbox": [], "format": CHECKPOINT_FORMAT}))
    store = StateStore(table)
    restored = store.load_checkpoint(b"m")["monitor"]
    assert _plain(restored.status()) == _plain(monitor.status())
    store.save_checkpoint(b"m", {"monitor": restored, "outbox": []}, 0)     # from here on as blocks
    assert _plain(store.load_checkpoint(b"m")["monitor"].status()) == _plain(monitor.status())


def test_a_missing_block_is_an_error_not_a_wrong_state():
    table = Table()
    store = StateStore(table)
    store.save_checkpoint(b"m", {"monitor": _fed(800), "outbox": []}, 0)
    dict.pop(table, b"m\x00pack\x000")
    with pytest.raises(LookupError, match="missing pack 0"):
        StateStore(table).load_checkpoint(b"m")


def test_packs_whose_blocks_went_out_of_use_are_deleted_and_the_table_stays_near_the_state():
    """Windows close, rows slide out of the rolling metrics: a pack below PACK_KEEP in use is
    folded into the next one, so the table holds at most about twice the state."""
    table = Table()
    store = StateStore(table)
    monitor = _fed(700)
    for start in range(700, 3700, 60):
        _fed(60, start, monitor)
        saved = store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
        held = sum(len(v) for k, v in table.items() if b"\x00pack\x00" in k)
        assert held <= 2 * saved.size, (start, held, saved)
    packs = _packs_in(table, b"m")
    assert max(packs) >= 50 and len(packs) < 0.25 * max(packs)       # one or two packs a checkpoint
    assert _plain(StateStore(table).load_checkpoint(b"m")["monitor"].status()) == _plain(monitor.status())


def test_after_the_changelog_was_lost_the_next_checkpoint_is_whole_in_the_new_one():
    """A memory-only broker restarted: the table still holds the packs and references, the new
    changelog none of them. Told so (streams.monitor_stage, a recreated log), the store writes the
    next checkpoint whole, so that a worker restoring from the new changelog alone has all of it."""
    table = Table()
    store = StateStore(table)
    monitor = _fed(700)
    store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    _fed(50, 700, monitor)
    table.log.clear()                                   # the changelog from here on
    store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    with pytest.raises(LookupError):                    # a checkpoint of changes only: not enough
        StateStore(_replayed({}, table.log)).load_checkpoint(b"m")
    table.log.clear()
    store.rewrite(b"m")
    _fed(50, 750, monitor)
    store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    restored = StateStore(_replayed({}, table.log)).load_checkpoint(b"m")["monitor"]
    assert _plain(restored.status()) == _plain(monitor.status())
    assert _packs_in(table, b"m") == set(store.packs[b"m"].sizes)      # the old packs deleted


def test_the_first_checkpoint_after_a_restore_writes_only_what_changed_too():
    """A restore learns how each leaf was cut (by the paths the next checkpoint gives them)."""
    sizes = dict(window_size=1000, performance_window=1000)
    table = Table()
    live = StateStore(table)
    monitor = _fed(1100, **sizes)
    for start in (1100, 1150):               # the skeleton's unchanged blocks move to a stable pack
        live.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
        _fed(50, start, monitor)
    restored_store = StateStore(Table(table))
    restored = restored_store.load_checkpoint(b"m")["monitor"]
    assert restored_store.packs[b"m"].leaves == live.packs[b"m"].leaves      # the same paths, the same cuts
    _fed(50, 1200, monitor)
    _fed(50, 1200, restored)
    after_restore = restored_store.save_checkpoint(b"m", {"monitor": restored, "outbox": []}, 0)
    without = live.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
    assert after_restore.written < 1.2 * without.written and after_restore.written < 0.4 * after_restore.size


def test_parts_a_crash_left_behind_a_key_written_again_are_deleted(monkeypatch):
    import streams.state as state
    monkeypatch.setattr(state, "STATE_PART_BYTES", 100)
    table = Table()
    put_state(table, b"pack", b"x" * 450)          # 5 parts and a head...
    crashed = {k: v for k, v in table.items() if k != b"pack"}   # ...the head lost
    again = Table(crashed)
    put_state(again, b"pack", b"y" * 250)          # the same key again: 3 parts
    assert sorted(k for k in again if k != b"pack") == [b"pack\x00part\x000\x00%d" % i for i in range(3)]
    assert state.get_state(again, b"pack") == b"y" * 250
    small = Table(crashed)
    put_state(small, b"pack", b"z")                # or small enough for one record
    assert dict(small) == {b"pack": b"z"}


def test_packs_of_a_save_a_crash_cut_before_its_head_are_deleted_by_the_next_save():
    """The cut save wrote its packs, not its head: the new owner uses their ids again, and deletes
    those it does not use (here: a save with nothing new to write)."""
    snapshot, ops, head = _second_save()
    crashed = _replayed(snapshot, ops[:head])       # both packs, no head
    owner = StateStore(crashed)
    restored = owner.load_checkpoint(b"m")["monitor"]
    assert len(_packs_in(crashed, b"m") - set(owner.packs[b"m"].sizes)) == 2
    owner.save_checkpoint(b"m", {"monitor": restored, "outbox": []}, 0)
    assert _packs_in(crashed, b"m") == set(owner.packs[b"m"].sizes)
    assert _plain(StateStore(crashed).load_checkpoint(b"m")["monitor"].status()) == _plain(restored.status())
