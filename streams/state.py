"""The monitor stage's state records in the ``monitor-state`` table: checkpoints as blocks, references once.

A checkpoint is a record of an explicit format (``"format": 2``, :data:`detectors.monitor_state.CHECKPOINT_FORMAT`):
the monitor's plain state. It is stored as content-defined blocks (:mod:`streams.state_blocks`) in
packs, each under ``<model>\\0pack\\0<n>``, and a small head under the model's key naming the packs
and the record's blocks: a checkpoint writes one or two packs of the blocks that changed since the
model's last one, the head, and deletes for the packs no longer named. Records stored whole (the
pickle itself, as workers wrote them before blocks) and records of format 1 (the live objects
pickled) still restore.

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
from streams.state_blocks import Blocks, Leaf, assemble, pack, split, unpack

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
    """What one checkpoint wrote: ``written`` bytes (its pack and its head), and ``size``, the bytes
    of the whole record (every block of it)."""
    written: int
    size: int


# A pack stays while half its bytes are blocks of the model's last checkpoint; below that, its
# blocks still in use go into the next pack and it is deleted: the table holds at most about twice
# a model's state, and no pack lives on for one block.
PACK_KEEP = 0.5


def _pack_key(key: bytes, pack_id: int) -> bytes:
    return b"%s\x00pack\x00%d" % (key, pack_id)


class _Packs:
    """What a store knows of one model's last checkpoint: the pack of each block, the bytes of each
    pack, how each leaf was cut (:class:`streams.state_blocks.Leaf`), the next pack's id, and the
    packs the last head released (deletes a crash may have cut short)."""

    def __init__(self, head: dict | None = None) -> None:
        self.where: dict[bytes, int] = {}
        self.sizes: dict[int, int] = {}
        self.leaves: dict[tuple, Leaf] = {}
        self.next = 0 if head is None else head["next"]
        # with the packs a save that a crash cut short before its head may have written (its ids are
        # used again; any not used by the next save are deleted after its head)
        self.released: set[int] = set() if head is None else {*head["released"], self.next, self.next + 1}

    def add(self, pack_id: int, blocks) -> None:
        self.sizes[pack_id] = self.sizes.get(pack_id, 0)
        for name, block in blocks:
            self.where[name] = pack_id
            self.sizes[pack_id] += len(block)

    def after(self, blocks: Blocks) -> tuple["_Packs", list, set]:
        """(where the blocks will be once a checkpoint of ``blocks`` is written, the packs to write as
        ``(id, names of their blocks)``, the ids of the packs to delete after its head).

        Kept: the packs still PACK_KEEP in use. Written: the blocks in no kept pack, those likely
        to stay apart from those likely to change (the skeleton's that are new, a leaf's last
        block: :class:`streams.state_blocks.Blocks`), so that most packs go out of use whole; a
        block that outlived a checkpoint already is likely to stay."""
        live: dict[int, int] = {}
        for name, size in blocks.sizes.items():
            pack_id = self.where.get(name)
            if pack_id is not None:
                live[pack_id] = live.get(pack_id, 0) + size
        kept = {pack_id for pack_id, size in self.sizes.items() if live.get(pack_id, 0) >= PACK_KEEP * size}
        now = _Packs()
        now.sizes = {pack_id: self.sizes[pack_id] for pack_id in kept}
        now.where = {name: pack_id for name, pack_id in self.where.items() if pack_id in kept}
        now.leaves, now.next = blocks.leaves, self.next
        stay, change = [], []
        for name in blocks.sizes:
            if self.where.get(name) not in kept:
                (change if name in blocks.volatile and name not in self.where else stay).append(name)
        packs = [(now.next + i, names) for i, names in enumerate(names for names in (stay, change) if names)]
        now.next += len(packs)
        return now, packs, ((set(self.sizes) - kept) | self.released) - {pack_id for pack_id, _ in packs}


class StateStore:
    """Checkpoints and references in the state table (see the functions' notes).

    For each model it saved or loaded it knows which pack holds each block of the model's last
    checkpoint (:class:`_Packs`), so that the next checkpoint writes only the blocks that are new.
    """

    def __init__(self, table) -> None:
        self.table = table
        self.stored_references: set[str] = set()
        self.packs: dict[bytes, _Packs] = {}

    def put(self, key: bytes, value: bytes) -> None:
        put_state(self.table, key, value)

    def get(self, key: bytes) -> bytes | None:
        return get_state(self.table, key)

    def save_checkpoint(self, key: bytes, checkpoint: dict, partition: int) -> SavedCheckpoint:
        """Write one model's checkpoint to ``partition`` (the model's, see _ModelStateTable in
        streams.app): one or two packs of the blocks the table does not hold yet (:meth:`_Packs.after`),
        then the head naming the packs in use, then deletes for the packs it no longer names.

        All go to one partition in this order, so a crash at any point leaves a changelog whose last
        head has all its packs: a pack is written before the head that names it, and deleted only
        after a head that no longer names it.
        """
        table = self.table
        table.write_partition = partition
        try:
            known = self.packs.get(key) or _Packs()
            record, blocks = dump_checkpoint(table, checkpoint, self.stored_references, known.leaves)
            root = blocks.cut(record)
            now, packs, released = known.after(blocks)
            moved = self._blocks_of(key, known, [name for _, names in packs for name in names
                                                 if name not in blocks.new])
            written = 0
            for pack_id, names in packs:
                group = [(name, blocks.new[name] if name in blocks.new else moved[name]) for name in names]
                data = pack(group)
                put_state(table, _pack_key(key, pack_id), data)
                now.add(pack_id, group)
                written += len(data)
            head = _BLOCKS + pickle.dumps({"root": root, "packs": sorted(now.sizes), "next": now.next,
                                           "released": sorted(released)}, protocol=pickle.HIGHEST_PROTOCOL)
            self.put(key, head)
            self.packs[key] = now       # before the deletes: a save after an error here reuses no id in use
            for pack_id in released:
                delete_state(table, _pack_key(key, pack_id))
        finally:
            table.write_partition = None
        return SavedCheckpoint(written + len(head), sum(blocks.sizes.values()))

    def _blocks_of(self, key: bytes, known: _Packs, names: list) -> dict[bytes, bytes]:
        """The bytes of blocks kept from the last checkpoint that move to a new pack (their pack
        fell below PACK_KEEP), read from their packs in the table."""
        found: dict[bytes, bytes] = {}
        for pack_id in {known.where[name] for name in names}:
            found.update(unpack(get_state(self.table, _pack_key(key, pack_id))))
        return found

    def load_checkpoint(self, key: bytes) -> dict | None:
        """The model's last checkpoint (None: it has none); from here this store writes the
        model's next checkpoints as changes to this one."""
        stored = self.get(key)
        self.packs[key] = _Packs()
        if stored is None:
            return None
        if not stored.startswith(_BLOCKS):
            return load_checkpoint(self.table, stored)
        return restore_checkpoint(self.table, self._record(key, stored))

    def record(self, key: bytes) -> dict | None:
        """The record of the model's last checkpoint as stored in packs (format 2: plain data, the
        references by id), None if it has none."""
        stored = self.get(key)
        return None if stored is None else self._record(key, stored)

    def _record(self, key: bytes, stored: bytes) -> dict:
        head = pickle.loads(stored[len(_BLOCKS):])
        known, blocks = _Packs(head), {}
        for pack_id in head["packs"]:
            data = get_state(self.table, _pack_key(key, pack_id))
            if data is None:
                raise LookupError(f"checkpoint {key!r} is missing pack {pack_id}")
            unpacked = unpack(data)
            known.add(pack_id, unpacked.items())
            blocks.update(unpacked)

        def block(name: bytes) -> bytes:
            found = blocks.get(name)
            if found is None:
                raise LookupError(f"checkpoint {key!r} is missing block {name.hex()}")
            return found

        record = assemble(pickle.loads(b"".join(map(block, head["root"]))), block, known.leaves)
        self.packs[key] = known
        return record

    def forget(self, key: bytes) -> None:
        """The model moved to another worker: what this store knew of its packs may be stale."""
        self.packs.pop(key, None)

    def rewrite(self, key: bytes) -> None:
        """The changelog may have lost what the table holds (a memory-only broker restarted: the
        model's internal log was recreated): the model's next checkpoint writes every block of it
        again, and every reference, in new packs; its old packs are deleted after that head."""
        known = self.packs.get(key)
        if known is not None:
            known.where, known.leaves = {}, {}
        self.stored_references.clear()


def put_state(table, key: bytes, value: bytes) -> None:
    """Write a state record; past STATE_PART_BYTES as parts, then a head naming them.

    All of a model's records go to its partition in write order (streams.app._ModelStateTable), so a
    crash at any point leaves the last head written with its parts intact; the previous
    generation's parts are deleted only after the new head. A key written for the first time may
    have parts of a write a crash cut short before its head (a pack's id is used again after a
    restore): they are deleted too.
    """
    old = _parts_of(table.get(key))
    written = 0
    if len(value) <= STATE_PART_BYTES:
        table[key] = value
    else:
        generation, written = (old[0] + 1 if old else 0), -(-len(value) // STATE_PART_BYTES)
        for i in range(written):
            table[_part_key(key, generation, i)] = value[i * STATE_PART_BYTES:(i + 1) * STATE_PART_BYTES]
        table[key] = _PARTS + orjson.dumps([generation, written])
    if old:
        for i in range(old[1]):
            table.pop(_part_key(key, old[0], i), None)
    else:
        stale = written
        while table.get(_part_key(key, 0, stale)) is not None:
            table.pop(_part_key(key, 0, stale), None)
            stale += 1


def delete_state(table, key: bytes) -> None:
    """Delete a state record and its parts, if it has any."""
    parts = _parts_of(table.get(key))
    table.pop(key, None)
    for i in range(parts[1] if parts else 0):
        table.pop(_part_key(key, parts[0], i), None)


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


def dump_checkpoint(table, checkpoint: dict, stored_references: set, leaves: dict | None = None) -> tuple[bytes, Blocks]:
    """``{"monitor": ModelMonitor, "outbox": [...]}`` as a record of format CHECKPOINT_FORMAT: the
    monitor as its plain state (:meth:`detectors.monitor.ModelMonitor.to_state`), pickled, its large
    leaves taken out as blocks (:func:`streams.state_blocks.split`; ``leaves``: how the last checkpoint
    cut them): (the record, its leaves' blocks).

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
    blocks = Blocks(leaves)
    # split as a whole: a leaf's path is the one assemble gives it on restore (the next checkpoint
    # after a restore keeps the blocks of the leaves that grew)
    record = split({**checkpoint, "format": CHECKPOINT_FORMAT, "monitor": state}, blocks)
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
