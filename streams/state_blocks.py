"""Checkpoints as content-defined blocks: a checkpoint writes what changed since the last one, not the whole state.

A model's state is mostly sequences that grow at the end or slide (the open window's columns, the
reference being filled, the rolling metrics, the pending joins), between small fields that change
in place (counts, clocks). :func:`split` takes the state apart: every large leaf (a numpy array,
``bytes``, a long list) is cut into blocks at points chosen by the content (a gear hash over the
last 128 bytes, as rsync and restic cut files), and the rest (the *skeleton*, leaves replaced by
:class:`Chunked`) is pickled and cut the same way. A block's name is its BLAKE2b digest.

Rows appended to a column change the last block of that column; rows dropped from its front
change the first; a count that moves changes the one skeleton block it sits in. Every other block
has the name it had, is already in the table, and is not written again: a checkpoint costs about
the bytes that changed, plus one block per place they changed. (The skeleton's changes are spread
out: most of its ~10 KB change between two checkpoints; BENCHMARKS.md 11e.)

A checkpoint's new blocks go to the table as one *pack* (:func:`pack`): a record per block would
cost the worker more than the bytes it saves (Faust spends ~0.2 ms of CPU on each changelog record).

The layer has no I/O: :class:`streams.state.StateStore` writes the packs and the head.
"""
from __future__ import annotations

import hashlib
import pickle
import struct
from typing import Callable, NamedTuple

import numpy as np

AVERAGE_BITS = 9           # a cut point every 2**9 = 512 bytes on average...
MIN_BLOCK = 128            # ...but no block shorter than this (but the last)...
MAX_BLOCK = 8192           # ...nor longer than this (low-entropy bytes have few cut points)
LEAF_BYTES = 512           # arrays and bytes from this size are blocks of their own, not skeleton
LEAF_ITEMS = 64            # lists from this length too (pickled alone)...
LIST_PROTOCOL = 3          # ...by a protocol without frames: a frame starts with its length, which
                           # changes with every item appended and would change the first block too
DIGEST_BYTES = 16

# one random 64-bit value per byte value, fixed forever: the cut points depend on it
_GEAR = np.random.default_rng(0x6472696674).integers(0, 2 ** 64 - 1, size=256, dtype=np.uint64, endpoint=True)
_TOP = np.uint64(64 - AVERAGE_BITS)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def cut_points(data: bytes) -> list[int]:
    """The end offsets of ``data``'s blocks (the last is ``len(data)``).

    The gear hash at byte i is ``g(i) = sum(G[data[i - j]] << j for j < 64)``, mixed with
    ``g(i - 64)``: its top bits depend on the 128 bytes before i and nothing else, so a change moves
    the cut points around it only. (Over 64 bytes, a column of floats that are 0 or 1 has 256
    patterns and often no cut point: it would be cut at MAX_BLOCK by position, and every block of
    a sliding one would change.) It is built by doubling the window (six numpy passes), not byte by
    byte.

    >>> data = np.random.default_rng(1).bytes(50_000)
    >>> cuts = cut_points(data)
    >>> cuts[-1] == len(data) and all(MIN_BLOCK <= b - a <= MAX_BLOCK for a, b in zip([0] + cuts, cuts[:-1]))
    True
    >>> before, after = Blocks().cut(data), Blocks().cut(data[:20_000] + b"a change" + data[20_000:])
    >>> len(after), len(set(after) - set(before))   # blocks of ~700 bytes: one is new
    (72, 1)
    """
    n = len(data)
    if n <= MIN_BLOCK:
        return [n]
    h = _GEAR[np.frombuffer(data, dtype=np.uint8)]
    for step in (1, 2, 4, 8, 16, 32):
        h[step:] += h[:-step] << np.uint64(step)
    h[64:] ^= h[:-64] * _MIX     # and the 64 bytes before those: columns of 0s and 1s still have cut points
    candidates = (np.flatnonzero((h >> _TOP) == 0) + 1).tolist()
    cuts, last = [], 0
    for cut in candidates:
        if cut - last < MIN_BLOCK:
            continue
        while cut - last > MAX_BLOCK:
            last += MAX_BLOCK
            cuts.append(last)
        cuts.append(cut)
        last = cut
    while n - last > MAX_BLOCK:
        last += MAX_BLOCK
        cuts.append(last)
    if last < n:
        cuts.append(n)
    return cuts


def digest(block: bytes) -> bytes:
    return hashlib.blake2b(block, digest_size=DIGEST_BYTES).digest()


class Chunked(NamedTuple):
    """A leaf of the state, stored as blocks: ``kind`` says how its bytes are read back
    (``ndarray``: ``meta`` is the dtype and shape; ``bytes``, ``bytearray``; ``pickle``: a list)."""
    kind: str
    meta: tuple
    refs: tuple


class Leaf(NamedTuple):
    """How the last checkpoint cut a leaf: its blocks' names and lengths, and the digest of the bytes
    of all but its last block (a leaf that grew keeps those blocks)."""
    names: tuple
    sizes: tuple
    digest: bytes


class Blocks:
    """The blocks one checkpoint is made of: ``new`` (name -> bytes: the blocks cut now), ``sizes``
    (name -> length: every block in use), and which are *volatile*: the skeleton's (where the counts
    and clocks are) and a leaf's last block, likely to change by the next checkpoint; a leaf's other
    blocks are likely to stay until it is dropped whole (a window closes) or slides past them.

    ``previous`` is how the last checkpoint cut each leaf (by its path in the state): a leaf whose
    bytes begin with those of all but its last block then (rows were appended; a pickled list
    ends in a mark that moves) keeps those blocks, and only the bytes after them are cut, which
    costs the new bytes, not the leaf's; ``leaves`` is the same for this checkpoint."""

    def __init__(self, previous: dict | None = None) -> None:
        self.new: dict[bytes, bytes] = {}
        self.sizes: dict[bytes, int] = {}
        self.volatile: set[bytes] = set()
        self.previous = previous or {}
        self.leaves: dict[tuple, Leaf] = {}

    def cut(self, data: bytes) -> tuple:
        """The skeleton's blocks (all volatile)."""
        names, _ = self._cut(memoryview(data), 0)
        self.volatile.update(names)
        return tuple(names)

    def leaf(self, path: tuple, data: bytes) -> tuple:
        """The names of a leaf's blocks; those not kept from the last checkpoint are added to ``new``."""
        view, names, sizes, start = memoryview(data), [], [], 0
        hashed = hashlib.blake2b(digest_size=DIGEST_BYTES)
        before = self.previous.get(path)
        if before is not None and len(before.names) > 1:
            kept = sum(before.sizes[:-1])
            hashed.update(view[:kept])
            if kept < len(data) and hashed.digest() == before.digest:
                names, sizes, start = list(before.names[:-1]), list(before.sizes[:-1]), kept
            else:
                hashed = hashlib.blake2b(digest_size=DIGEST_BYTES)
        for name, size in zip(names, sizes):
            self.sizes[name] = size
        cut, cut_sizes = self._cut(view, start)
        names += cut
        sizes += cut_sizes
        self.volatile.add(names[-1])
        hashed.update(view[start:len(data) - sizes[-1]])
        self.leaves[path] = Leaf(tuple(names), tuple(sizes), hashed.digest())
        return tuple(names)

    def _cut(self, view: memoryview, start: int) -> tuple[list, list]:
        names, sizes, offset = [], [], start
        for end in cut_points(view[start:]) if start < len(view) else ():
            block = bytes(view[offset:start + end])
            name = digest(block)
            self.new.setdefault(name, block)
            self.sizes[name] = len(block)
            names.append(name)
            sizes.append(len(block))
            offset = start + end
        return names, sizes


def split(value, blocks: Blocks, path: tuple = ()):
    """``value`` with its large leaves replaced by :class:`Chunked` (their blocks added to ``blocks``)."""
    kind = type(value)
    if kind is dict:
        return {key: split(item, blocks, (*path, key)) for key, item in value.items()}
    if kind is tuple or (kind is list and len(value) < LEAF_ITEMS):
        return kind(split(item, blocks, (*path, i)) for i, item in enumerate(value))
    if kind is list:
        return Chunked("pickle", (), blocks.leaf(path, pickle.dumps(value, protocol=LIST_PROTOCOL)))
    if kind is np.ndarray and value.dtype.kind != "O" and value.dtype.fields is None and value.nbytes >= LEAF_BYTES:
        return Chunked("ndarray", (value.dtype.str, value.shape), blocks.leaf(path, np.ascontiguousarray(value).tobytes()))
    if (kind is bytes or kind is bytearray) and len(value) >= LEAF_BYTES:
        return Chunked(kind.__name__, (), blocks.leaf(path, bytes(value)))
    return value


def assemble(value, block: Callable[[bytes], bytes], leaves: dict, path: tuple = ()):
    """The value :func:`split` took apart, its blocks read with ``block(name)``; how each leaf is
    stored goes to ``leaves`` (the ``previous`` of the next checkpoint's :class:`Blocks`)."""
    kind = type(value)
    if kind is dict:
        return {key: assemble(item, block, leaves, (*path, key)) for key, item in value.items()}
    if kind is tuple or kind is list:
        return kind(assemble(item, block, leaves, (*path, i)) for i, item in enumerate(value))
    if kind is Chunked:
        parts = [block(name) for name in value.refs]
        data = b"".join(parts)
        leaves[path] = Leaf(value.refs, tuple(map(len, parts)), digest(b"".join(parts[:-1])))
        if value.kind == "ndarray":
            dtype, shape = value.meta
            return np.frombuffer(bytearray(data), dtype=np.dtype(dtype)).reshape(shape)
        if value.kind == "pickle":
            return pickle.loads(data)
        return bytearray(data) if value.kind == "bytearray" else data
    return value


_COUNT = struct.Struct("<I")
_ENTRY = struct.Struct(f"<{DIGEST_BYTES}sI")


def pack(blocks: list[tuple[bytes, bytes]]) -> bytes:
    """Blocks ``(name, bytes)`` as one record: their count, each name and length, then the bytes.

    >>> sorted(unpack(pack([(b"a" * 16, b"xyz"), (b"b" * 16, b"")])).items())
    [(b'aaaaaaaaaaaaaaaa', b'xyz'), (b'bbbbbbbbbbbbbbbb', b'')]
    """
    return b"".join([_COUNT.pack(len(blocks)), *(_ENTRY.pack(name, len(block)) for name, block in blocks),
                     *(block for _, block in blocks)])


def unpack(data: bytes) -> dict[bytes, bytes]:
    """The blocks of a :func:`pack` record, by name."""
    (count,), view = _COUNT.unpack_from(data), memoryview(data)
    offset = _COUNT.size + count * _ENTRY.size
    blocks = {}
    for name, length in _ENTRY.iter_unpack(view[_COUNT.size:offset]):
        blocks[name] = bytes(view[offset:offset + length])
        offset += length
    return blocks
