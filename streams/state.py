"""The monitor stage's state records in the ``monitor-state`` table: checkpoints as blocks, references once.

A checkpoint is a record of an explicit format (``"format": 2``, :data:`detectors.monitor_state.CHECKPOINT_FORMAT`):
the monitor's plain state. It is stored as content-defined blocks (:mod:`streams.state_blocks`), each
under ``<model>\\0blk\\0<digest>``, and a small head under the model's key naming the blocks of the
record: a checkpoint writes the blocks that changed since the model's last one, the head, and
deletes for the blocks no longer named. Records stored whole (the pickle itself, as workers before
the blocks wrote them) and records of format 1 (the live objects pickled) still restore.

:class:`StateStore` wraps the table (any mapping with a ``write_partition`` attribute: the
Faust table in the worker, a dict in a unit test).
"""
from __future__ import annotations

import io
import pickle
from typing import NamedTuple

import orjson

from detectors.monitor import ModelMonitor
from detectors.monitor_state import CHECKPOINT_FORMAT
from detectors.profile import ReferenceProfile
from streams.state_blocks import Blocks, assemble, split

# A record over the producer's request size (8 MiB here, 1 MB on a default Kafka broker) makes
# Faust's producer crash the worker, and again after every restart. A wide model's reference or
# checkpoint passes that (600 features: ~15 MB), so large records are stored in parts.
STATE_PART_BYTES = 512 * 1024
_PARTS = b"driftline-parts\x00"     # head of a record stored in parts (a pickle starts with 0x80)
_BLOCKS = b"driftline-blocks\x00"   # head of a checkpoint stored as blocks


def _part_key(key: bytes, generation: int, index: int) -> bytes:
    return b"%s\x00part\x00%d\x00%d" % (key, generation, index)


def _parts_of(value: bytes | None) -> list | None:
    return orjson.loads(value[len(_PARTS):]) if value is not None and value.startswith(_PARTS) else None


class SavedCheckpoint(NamedTuple):
    """What one checkpoint wrote: ``written`` bytes (the new blocks and the head), ``skeleton`` the
    bytes of the record without its large leaves, which any checkpoint may rewrite (the worker
    checkpoints a model once its input since the last one is worth a few of these), and ``size``
    the bytes of the whole record."""
    written: int
    skeleton: int
    size: int


def _block_key(key: bytes, name: bytes) -> bytes:
    return key + b"\x00blk\x00" + name


class StateStore:
    """Checkpoints and references in the state table (see the functions' notes).

    For each model it knows (saved or loaded here) it keeps the names of the blocks its last head
    names (``blocks``), so that the next checkpoint writes only new blocks, and the names that head
    released: deletes that a crash may have cut short, issued again with the next checkpoint.
    """

    def __init__(self, table) -> None:
        self.table = table
        self.stored_references: set[str] = set()
        self.blocks: dict[bytes, set[bytes]] = {}
        self.released: dict[bytes, set[bytes]] = {}

    def put(self, key: bytes, value: bytes) -> None:
        put_state(self.table, key, value)

    def get(self, key: bytes) -> bytes | None:
        return get_state(self.table, key)

    def save_checkpoint(self, key: bytes, checkpoint: dict, partition: int) -> SavedCheckpoint:
        """Write one model's checkpoint to ``partition`` (the model's, see _ModelStateTable in
        streams.app): its new blocks, then the head naming them, then deletes for the blocks the
        previous head named and this one does not.

        All go to one partition in this order, so a crash at any point leaves a changelog whose last
        head has all its blocks: the new blocks are written before the head that names them, and a
        block is deleted only after a head that no longer names it.
        """
        table = self.table
        table.write_partition = partition
        try:
            record, blocks = dump_checkpoint(table, checkpoint, self.stored_references)
            root = blocks.cut(record)
            stored, names = self.blocks.get(key, set()), set(blocks.names)
            written = 0
            for name, block in blocks.new.items():
                if name not in stored:
                    table[_block_key(key, name)] = block
                    written += len(block)
            released = (stored | self.released.pop(key, set())) - names
            head = _BLOCKS + pickle.dumps({"root": root, "released": sorted(released)}, protocol=pickle.HIGHEST_PROTOCOL)
            self.put(key, head)
            for name in released:
                table.pop(_block_key(key, name), None)
            self.blocks[key] = names
        finally:
            table.write_partition = None
        return SavedCheckpoint(written + len(head), len(record), sum(map(len, blocks.new.values())))

    def load_checkpoint(self, key: bytes) -> dict | None:
        """The model's last checkpoint (None: it has none); from here this store writes the
        model's next checkpoints as changes to this one."""
        stored = self.get(key)
        self.blocks[key], self.released[key] = set(), set()
        if stored is None:
            return None
        if not stored.startswith(_BLOCKS):
            return load_checkpoint(self.table, stored)
        return restore_checkpoint(self.table, self._record(key, stored))

    def record(self, key: bytes) -> dict | None:
        """The record of the model's last checkpoint as stored in blocks (format 2: plain data, the
        references by id), None if it has none."""
        stored = self.get(key)
        return None if stored is None else self._record(key, stored)

    def _record(self, key: bytes, stored: bytes) -> dict:
        head = pickle.loads(stored[len(_BLOCKS):])
        names = set(head["root"])
        record = pickle.loads(b"".join(self._block(key, name) for name in head["root"]))
        record = assemble(record, lambda name: self._block(key, name), names)
        self.blocks[key], self.released[key] = names, set(head["released"])
        return record

    def _block(self, key: bytes, name: bytes) -> bytes:
        block = self.table.get(_block_key(key, name))
        if block is None:
            raise LookupError(f"checkpoint {key!r} is missing block {name.hex()}")
        return block

    def forget(self, key: bytes) -> None:
        """The model moved to another worker: what this store knew of its blocks may be stale."""
        self.blocks.pop(key, None)
        self.released.pop(key, None)


def put_state(table, key: bytes, value: bytes) -> None:
    """Write a state record; past STATE_PART_BYTES as parts, then a head naming them.

    All of a model's records go to its partition in write order (streams.app._ModelStateTable), so a
    crash at any point leaves the last head written with its parts intact; the previous
    generation's parts are deleted only after the new head.
    """
    old = _parts_of(table.get(key))
    if len(value) <= STATE_PART_BYTES:
        table[key] = value
    else:
        generation, count = (old[0] + 1 if old else 0), -(-len(value) // STATE_PART_BYTES)
        for i in range(count):
            table[_part_key(key, generation, i)] = value[i * STATE_PART_BYTES:(i + 1) * STATE_PART_BYTES]
        table[key] = _PARTS + orjson.dumps([generation, count])
    if old:
        for i in range(old[1]):
            table.pop(_part_key(key, old[0], i), None)


def get_state(table, key: bytes) -> bytes | None:
    value = table.get(key)
    parts = _parts_of(value)
    if parts is None:
        return value
    chunks = [table.get(_part_key(key, parts[0], i)) for i in range(parts[1])]
    if any(chunk is None for chunk in chunks):
        raise LookupError(f"state record {key!r} is missing parts")
    return b"".join(chunks)


REFERENCE_PREFIX = b"ref\x00"


class _CheckpointUnpickler(pickle.Unpickler):
    """Reads format-1 records, in which each reference profile was a persistent id (its
    ``reference_id``) written by the pickler of those workers; format 2 has none."""

    def __init__(self, file, table):
        super().__init__(file)
        self.table = table

    def persistent_load(self, reference_id):
        return load_reference(self.table, reference_id)


def load_reference(table, reference_id: str) -> ReferenceProfile:
    stored = get_state(table, REFERENCE_PREFIX + reference_id.encode())
    if stored is None:
        raise pickle.UnpicklingError(f"reference {reference_id} missing from the state table")
    return pickle.loads(stored)


def dump_checkpoint(table, checkpoint: dict, stored_references: set) -> tuple[bytes, Blocks]:
    """``{"monitor": ModelMonitor, "outbox": [...]}`` as a record of format CHECKPOINT_FORMAT: the
    monitor as its plain state (:meth:`detectors.monitor.ModelMonitor.to_state`), pickled, its large
    leaves taken out as blocks (:func:`streams.state_blocks.split`): (the record, its leaves' blocks).

    A version's reference profile (immutable, most of a version's bytes) is written to the
    table once per worker under its own key; the checkpoint holds its ``reference_id``, so a
    checkpoint costs the changing state only.
    """
    state = checkpoint["monitor"].to_state()
    for version in state["versions"]:
        profile = version["reference"]
        if profile is not None:
            if profile.reference_id not in stored_references:
                put_state(table, REFERENCE_PREFIX + profile.reference_id.encode(),
                          pickle.dumps(profile, protocol=pickle.HIGHEST_PROTOCOL))
                stored_references.add(profile.reference_id)
            version["reference"] = profile.reference_id
    blocks = Blocks()
    record = {**checkpoint, "format": CHECKPOINT_FORMAT, "monitor": split(state, blocks)}
    return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL), blocks


def load_checkpoint(table, data: bytes) -> dict:
    """A checkpoint stored whole, ``{"monitor": ModelMonitor, "outbox": [...]}``: a record of format
    2, or one without ``"format"`` (format 1: the live objects pickled, by workers before format 2),
    restored as it was pickled, older layouts migrated on the way (:mod:`detectors.monitor_state`)."""
    return restore_checkpoint(table, _CheckpointUnpickler(io.BytesIO(data), table).load())


def restore_checkpoint(table, record: dict) -> dict:
    """The checkpoint a record holds (its leaves assembled), its references read from ``table``."""
    found = record.get("format")
    if found is None:
        return record
    if found != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {found} is not one this worker reads (1, {CHECKPOINT_FORMAT})")
    record = dict(record)
    del record["format"]
    state = record["monitor"]
    for version in state["versions"]:
        if version["reference"] is not None:
            version["reference"] = load_reference(table, version["reference"])
    record["monitor"] = ModelMonitor.from_state(state)
    return record
