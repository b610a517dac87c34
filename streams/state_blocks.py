"""Checkpoints as content-defined blocks: a checkpoint writes what changed since the last one, not the whole state.

A model's state is mostly sequences that grow at the end or slide (the open window's columns, the
reference being filled, the rolling metrics, the pending joins), between small fields that change
in place (counts, clocks). :func:`split` takes the state apart: every large leaf (a numpy array,
``bytes``, a long list) is cut into blocks at points chosen by the content (a gear hash over the
last 64 bytes, as rsync and restic cut files), and the rest (the *skeleton*, leaves replaced by
:class:`Chunked`) is pickled and cut the same way. A block's name is its BLAKE2b digest.

Rows appended to a column change the last block of that column; rows dropped from its front
change the first; a count that moves changes the one skeleton block it sits in. Every other block
has the name it had, is already in the table, and is not written again: a checkpoint costs about
the bytes that changed, plus one block per place they changed.

The layer has no I/O: :class:`streams.state.StateStore` writes the blocks and the head.
"""
from __future__ import annotations

import hashlib
import pickle
from typing import Callable, NamedTuple

import numpy as np

AVERAGE_BITS = 9           # a cut point every 2**9 = 512 bytes on average...
MIN_BLOCK = 128            # ...but no block shorter than this (but the last)...
MAX_BLOCK = 8192           # ...nor longer than this (low-entropy bytes have few cut points)
LEAF_BYTES = 512           # arrays and bytes from this size are blocks of their own, not skeleton
LEAF_ITEMS = 64            # lists from this length too (pickled alone)
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
    >>> before, after = Blocks(), Blocks()
    >>> _ = before.cut(data), after.cut(data[:20_000] + b"a change" + data[20_000:])
    >>> len(after.names), len(set(after.names) - set(before.names))   # blocks of ~700 bytes: one is new
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


class Blocks:
    """The blocks one checkpoint is made of: ``new`` (name -> bytes) and every name, in use order."""

    def __init__(self) -> None:
        self.new: dict[bytes, bytes] = {}
        self.names: list[bytes] = []

    def cut(self, data: bytes) -> tuple:
        names, start, view = [], 0, memoryview(data)
        for end in cut_points(data):
            block = bytes(view[start:end])
            name = digest(block)
            self.new.setdefault(name, block)
            names.append(name)
            start = end
        self.names.extend(names)
        return tuple(names)


def split(value, blocks: Blocks):
    """``value`` with its large leaves replaced by :class:`Chunked` (their blocks added to ``blocks``)."""
    kind = type(value)
    if kind is dict:
        return {key: split(item, blocks) for key, item in value.items()}
    if kind is tuple:
        return tuple(split(item, blocks) for item in value)
    if kind is list:
        if len(value) < LEAF_ITEMS:
            return [split(item, blocks) for item in value]
        return Chunked("pickle", (), blocks.cut(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)))
    if kind is np.ndarray and value.dtype != object and value.nbytes >= LEAF_BYTES:
        return Chunked("ndarray", (value.dtype.str, value.shape), blocks.cut(np.ascontiguousarray(value).tobytes()))
    if (kind is bytes or kind is bytearray) and len(value) >= LEAF_BYTES:
        return Chunked(kind.__name__, (), blocks.cut(bytes(value)))
    return value


def assemble(value, block: Callable[[bytes], bytes], names: set):
    """The value :func:`split` took apart, its blocks read with ``block(name)``; the names read
    are added to ``names``."""
    kind = type(value)
    if kind is dict:
        return {key: assemble(item, block, names) for key, item in value.items()}
    if kind is tuple:
        return tuple(assemble(item, block, names) for item in value)
    if kind is list:
        return [assemble(item, block, names) for item in value]
    if kind is Chunked:
        names.update(value.refs)
        data = b"".join(block(name) for name in value.refs)
        if value.kind == "ndarray":
            dtype, shape = value.meta
            return np.frombuffer(bytearray(data), dtype=np.dtype(dtype)).reshape(shape)
        if value.kind == "pickle":
            return pickle.loads(data)
        return bytearray(data) if value.kind == "bytearray" else data
    return value
