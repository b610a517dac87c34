"""The monitor stage's state records in the ``monitor-state`` table: checkpoints in parts, references once.

A checkpoint is a record of an explicit format (``"format": 2``, :data:`detectors.monitor_state.CHECKPOINT_FORMAT`):
the monitor's plain state, pickled; records of format 1 (the live objects pickled) still restore.

:class:`StateStore` wraps the table (any mapping with a ``write_partition`` attribute: the
Faust table in the worker, a dict in a unit test).
"""
from __future__ import annotations

import io
import pickle

import orjson

from detectors.monitor import ModelMonitor
from detectors.monitor_state import CHECKPOINT_FORMAT
from detectors.profile import ReferenceProfile

# A record over the producer's request size (8 MiB here, 1 MB on a default Kafka broker) makes
# Faust's producer crash the worker, and again after every restart. A wide model's reference or
# checkpoint passes that (600 features: ~15 MB), so large records are stored in parts.
STATE_PART_BYTES = 512 * 1024
_PARTS = b"driftline-parts\x00"     # head of a record stored in parts (a pickle starts with 0x80)


def _part_key(key: bytes, generation: int, index: int) -> bytes:
    return b"%s\x00part\x00%d\x00%d" % (key, generation, index)


def _parts_of(value: bytes | None) -> list | None:
    return orjson.loads(value[len(_PARTS):]) if value is not None and value.startswith(_PARTS) else None


class StateStore:
    """Checkpoints and references in the state table (see the functions' notes)."""

    def __init__(self, table) -> None:
        self.table = table
        self.stored_references: set[str] = set()

    def put(self, key: bytes, value: bytes) -> None:
        put_state(self.table, key, value)

    def get(self, key: bytes) -> bytes | None:
        return get_state(self.table, key)

    def save_checkpoint(self, key: bytes, checkpoint: dict, partition: int) -> int:
        """Write one model's checkpoint to ``partition`` (the model's, see _ModelStateTable in
        streams.app); returns its size in bytes."""
        self.table.write_partition = partition
        try:
            data = dump_checkpoint(self.table, checkpoint, self.stored_references)
            self.put(key, data)
        finally:
            self.table.write_partition = None
        return len(data)

    def load_checkpoint(self, key: bytes) -> dict | None:
        stored = self.get(key)
        return None if stored is None else load_checkpoint(self.table, stored)


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


def dump_checkpoint(table, checkpoint: dict, stored_references: set) -> bytes:
    """``{"monitor": ModelMonitor, "outbox": [...]}`` as a record of format CHECKPOINT_FORMAT: the
    monitor as its plain state (:meth:`detectors.monitor.ModelMonitor.to_state`), pickled.

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
    return pickle.dumps({**checkpoint, "format": CHECKPOINT_FORMAT, "monitor": state},
                        protocol=pickle.HIGHEST_PROTOCOL)


def load_checkpoint(table, data: bytes) -> dict:
    """The checkpoint ``dump_checkpoint`` wrote, ``{"monitor": ModelMonitor, "outbox": [...]}``; a
    record without ``"format"`` (format 1: the live objects pickled, by workers before format 2) is
    restored as it was pickled, older layouts migrated on the way (:mod:`detectors.monitor_state`)."""
    record = _CheckpointUnpickler(io.BytesIO(data), table).load()
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
