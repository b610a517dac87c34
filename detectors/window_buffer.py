"""The open window's rows as typed columns, once the reference says each feature's type. Pure: no I/O.

A :class:`WindowBuffer` keeps every reference feature as an array: numeric features as float64
(NaN for missing), categorical and boolean ones as integer codes into the column's *levels*,
whose first entries are the reference's categories (its vocabulary). A window value the
reference never saw gets the next code; codes are reset with the window. Levels are the raw
values as they arrived (``True``, ``"True"`` and ``1`` are three levels of a categorical
feature), so the window's columns convert exactly as :func:`detectors.profile.to_column`
converts the lists they replace, and a raw value the conversion hides is still there for the
data-quality checks: a numeric feature keeps the few values a float cannot hold (text,
infinities) beside its array (``odd``), by row. Names the reference does not know (new
features, reported by data quality) stay lists of raw values.

A value costs 8 bytes (numeric) or 2 (a code), not a pointer to a Python object; arrays grow
by doubling up to the window size, so a half-full window holds about half a window. Rows
appended one by one are held as dicts up to :attr:`WindowBuffer.CHUNK` and moved into the
arrays in bulk (one conversion per column per chunk, as the list buffer did).

>>> from detectors.profile import ReferenceProfile
>>> ref = ReferenceProfile.from_columns({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}, joint_sample_size=0)
>>> buf = WindowBuffer(ref, limit=1000)
>>> buf.append({"x": 1, "c": "b"}); buf.append({"x": "n/a", "c": True, "new": 7})
>>> buf.columns()
{'x': [1.0, 'n/a'], 'c': ['b', True], 'new': [None, 7]}
>>> columns = buf.window_columns()
>>> columns["x"].values.tolist(), columns["c"].values.tolist(), columns["c"].raw
([1.0, nan], ['b', 'true'], ['b', True])
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import chain
from operator import itemgetter

import numpy as np

from detectors.profile import _PLAIN_NUMBERS, WindowColumn, _category, _number
from detectors.values import as_boolean

__all__ = ["WindowBuffer", "BufferedColumn", "RawColumns"]

_INT16_CODES = 32767    # more levels than this: codes become int32
_FIRST_CAPACITY = 64


def _capacity(have: int, need: int, limit: int) -> int:
    """Doubling up to ``limit`` (the window size), more only when a window holds more."""
    return max(need, min(max(2 * have, _FIRST_CAPACITY), limit))


class BufferedColumn(WindowColumn):
    """A :class:`~detectors.profile.WindowColumn` built from a buffer's arrays: ``values`` are
    given already converted, ``raw`` (what the data-quality checks read) is rebuilt on first use.
    A coded column keeps its codes: ``coded`` is ``(codes, table)``, ``values`` being
    ``table[codes]`` (code -1, missing, is the table's last entry, None); None for a numeric one."""

    __slots__ = ("_raw", "_raw_of", "coded")

    def __init__(self, values: np.ndarray, kind: str, raw_of, coded: tuple | None = None):
        self.type = kind
        self.kind = "categorical" if kind == "boolean" else kind
        self.values = values
        self.coded = coded
        self._raw, self._raw_of = None, raw_of
        self._present = self._sorted_present = self._counts = self._category_counts = self._summary = None
        self._safe_summary = None
        self._shared = {}

    @property
    def raw(self):
        if self._raw_of is not None:
            self._raw, self._raw_of = self._raw_of(), None
        return self._raw


def _raw_numbers(values: np.ndarray, odd: dict) -> list:
    """Raw values of a numeric column: NaN as None, the values the array could not hold put back."""
    out = [None if v != v else v for v in values.tolist()]
    for row, value in odd.items():
        out[row] = value
    return out


def _raw_levels(codes: np.ndarray, levels) -> list:
    """Raw values of a coded column (code -1: None)."""
    table = [*levels, None]
    return list(map(table.__getitem__, codes.tolist()))


class _Numeric:
    """float64 values (NaN: missing or not a finite number) and, by row, the raw values that
    are neither missing nor numbers (``odd``: text, infinities; bools are 1/0 and not odd)."""

    __slots__ = ("values", "odd")

    def __init__(self):
        self.values = np.empty(0)
        self.odd: dict[int, object] = {}

    def reserve(self, capacity: int, n: int) -> None:
        grown = np.full(capacity, np.nan)
        grown[:n] = self.values[:n]
        self.values = grown

    def put(self, start: int, values) -> None:
        stop = start + len(values)
        if isinstance(values, np.ndarray) and values.dtype.kind == "f":
            target = self.values[start:stop]
            target[:] = values
            bad = np.isinf(target)
            if bad.any():
                for i in np.flatnonzero(bad).tolist():
                    self.odd[start + i] = float(target[i])
                target[bad] = np.nan
            return
        seq = values.tolist() if isinstance(values, np.ndarray) else values
        if _PLAIN_NUMBERS.issuperset(map(type, seq)):
            try:
                converted = np.array(seq, dtype=np.float64)   # None -> NaN, as to_column converts them
            except OverflowError:                              # an int beyond a float
                converted = None
            if converted is not None:
                self.put(start, converted)
                return
        for i, value in enumerate(seq):
            x = _number(value)
            self.values[start + i] = x
            if x != x and value is not None and not (isinstance(value, (float, np.floating)) and math.isnan(value)):
                self.odd[start + i] = value

    def raw(self, n: int) -> list:
        return _raw_numbers(self.values[:n], self.odd)

    def column(self, n: int, kind: str) -> BufferedColumn:
        values = self.values[:n]
        if self.odd:       # this window's arrays, not the buffer's: still right after clear()
            odd = self.odd
            return BufferedColumn(values, kind, lambda: _raw_numbers(values, odd))
        return BufferedColumn(values, kind, lambda: values)   # no odd value: what type_mismatch_count needs

    def clear(self) -> None:
        self.values = np.empty(0)     # not reused: the closed window's columns may still be read
        self.odd = {}

    def state(self, n: int) -> tuple:
        return self.values[:n].copy(), dict(self.odd)

    def restore(self, state: tuple, n: int, capacity: int) -> None:
        values, self.odd = state
        self.values = np.full(capacity, np.nan)
        self.values[:n] = values


class _Levels(dict):
    """Text -> code (None: -1, missing), so that one dict look-up per value codes a column of
    text; a value that misses gets the next code. Values other than text are coded by
    ``(type, value)`` in ``typed`` (1, 1.0 and True are equal dict keys but different raw values:
    they never enter this dict, which holds text only); NaN is missing."""

    __slots__ = ("levels", "typed")

    def __missing__(self, value):
        if type(value) is str:
            code = self[value] = len(self.levels)
            self.levels.append(value)
            return code
        if isinstance(value, (float, np.floating)) and math.isnan(value):
            return -1
        key = (type(value), value)          # TypeError when unhashable: the caller gives it a level of its own
        code = self.typed.get(key)
        if code is None:
            code = self.typed[key] = len(self.levels)
            self.levels.append(value)
        return code


class _Coded:
    """Integer codes (-1: missing) into ``levels``, the vocabulary first (see the module docstring)."""

    __slots__ = ("vocabulary", "codes", "code_of", "_converted")

    def __init__(self, vocabulary: list):
        self.vocabulary = vocabulary
        self.codes = np.empty(0, dtype=np.int16)
        self._reset_levels()

    def _reset_levels(self) -> None:
        code_of = self.code_of = _Levels({category: code for code, category in enumerate(self.vocabulary)})
        code_of[None] = -1
        code_of.levels = list(self.vocabulary)
        code_of.typed = {}
        self._converted = None

    @property
    def levels(self) -> list:
        return self.code_of.levels

    def reserve(self, capacity: int, n: int) -> None:
        grown = np.full(capacity, -1, dtype=self.codes.dtype)
        grown[:n] = self.codes[:n]
        self.codes = grown

    def put(self, start: int, values) -> None:
        if isinstance(values, np.ndarray):
            values = [None if v != v else v for v in values.tolist()] if values.dtype.kind == "f" else values.tolist()
        code_of = self.code_of
        try:
            codes = np.fromiter(map(code_of.__getitem__, values), dtype=np.intp, count=len(values))
        except TypeError:            # an unhashable value
            codes = np.fromiter(map(self._code, values), dtype=np.intp, count=len(values))
        if len(code_of.levels) > _INT16_CODES and self.codes.dtype != np.int32:
            self.codes = self.codes.astype(np.int32)
        self.codes[start:start + len(values)] = codes
        self._converted = None

    def _code(self, value) -> int:
        try:
            return self.code_of[value]
        except TypeError:            # unhashable: a level of its own
            self.code_of.levels.append(value)
            return len(self.code_of.levels) - 1

    def raw(self, n: int) -> list:
        return _raw_levels(self.codes[:n], self.code_of.levels)

    def column(self, n: int, kind: str) -> BufferedColumn:
        convert = as_boolean if kind == "boolean" else _category
        converted = self._converted
        if converted is None or converted[0] != kind or len(converted[1]) != len(self.levels) + 1:
            table = np.empty(len(self.levels) + 1, dtype=object)
            table[:] = [*map(convert, self.levels), None]
            converted = self._converted = (kind, table)
        codes, levels = self.codes[:n], tuple(self.code_of.levels)   # this window's, as for _Numeric
        return BufferedColumn(converted[1][codes], kind, lambda: _raw_levels(codes, levels), (codes, converted[1]))

    def clear(self) -> None:
        self.codes = np.empty(0, dtype=np.int16)
        self._reset_levels()

    def state(self, n: int) -> tuple:
        return self.codes[:n].copy(), self.code_of.levels[len(self.vocabulary):]

    def restore(self, state: tuple, n: int, capacity: int) -> None:
        codes, extra = state
        self._reset_levels()
        for value in extra:
            self._code(value)
        self.codes = np.full(capacity, -1, dtype=codes.dtype)
        self.codes[:n] = codes


class WindowBuffer:
    """The open window's rows as typed columns (see the module docstring): ``reference`` gives
    the names, types and vocabularies, ``limit`` (the window size) the capacity arrays grow to.

    The same interface as :class:`detectors.window.ColumnBuffer`: ``append(row)``,
    ``extend(columns, n)``, ``columns()`` (raw values as lists, numbers as floats), ``clear()``,
    ``n``; and :meth:`window_columns`, the window as the tests take it.
    """

    CHUNK = 256  # rows held as dicts at most (a dict per row costs ~20x its column entries)

    def __init__(self, reference, limit: int):
        self.reference = reference
        self.limit = limit
        self.n = 0
        self._types = reference.types
        self._data: dict[str, _Numeric | _Coded] = {
            name: _Numeric() if fp.kind == "numeric" else _Coded(list(fp.category_counts or ()))
            for name, fp in reference.features.items()}
        self._numeric_names = tuple(name for name, column in self._data.items() if isinstance(column, _Numeric))
        self._extra: dict[str, list] = {}    # names the reference lacks: raw values, None before they came
        self._rows: list[dict] = []
        self._capacity = 0

    @classmethod
    def from_columns(cls, reference, limit: int, columns: dict, n: int) -> "WindowBuffer":
        """A buffer holding ``n`` rows given as columns of raw values (a :class:`ColumnBuffer`'s)."""
        buffer = cls(reference, limit)
        if n:
            buffer.extend(columns, n)
        return buffer

    # -- filling ---------------------------------------------------------------------
    def append(self, row: dict) -> None:
        self._rows.append(row)
        self.n += 1
        if len(self._rows) >= self.CHUNK:
            self._fold()

    def extend(self, columns: dict, n: int) -> None:
        """Append ``n`` rows given as columns (name -> list or float64 array of ``n`` values, None
        or NaN for missing); a name absent from ``columns`` is missing in these rows."""
        if self._rows:
            self._fold()
        self._put(columns, self.n, n)
        self.n += n

    def _reserve(self, held: int, need: int) -> None:
        """Room for ``need`` rows, ``held`` of them in the arrays already."""
        if need > self._capacity:
            capacity = _capacity(self._capacity, need, self.limit)
            for column in self._data.values():
                column.reserve(capacity, held)
            self._capacity = capacity

    def _put(self, columns: dict, start: int, n: int) -> None:
        self._reserve(start, start + n)
        data, extra = self._data, self._extra
        for name, values in columns.items():
            column = data.get(name)
            if column is not None:
                column.put(start, values)
                continue
            held = extra.get(name)
            if held is None:
                held = extra[name] = [None] * start
            if isinstance(values, np.ndarray):
                values = [None if v != v else v for v in values.tolist()] if values.dtype.kind == "f" else values.tolist()
            held.extend(values)
        for name, held in extra.items():
            if name not in columns:
                held.extend([None] * n)

    def _fold(self) -> None:
        """Move the pending rows into the columns. Rows naming exactly the reference's features
        (the usual case) take every numeric feature in one 2-D conversion and each categorical
        one in one pass; other rows one pass per name."""
        rows, self._rows = self._rows, []
        start, k = self.n - len(rows), len(rows)
        data = self._data
        if set(map(len, rows)) == {len(data)}:
            try:
                self._fold_complete(rows, start)
                return
            except KeyError:      # as many names as the reference, not the same ones
                pass
        names = dict.fromkeys(data)
        for row in rows:
            if row.keys() != names.keys():
                names.update(dict.fromkeys(row))
        self._put({name: [row.get(name) for row in rows] for name in names}, start, k)

    def _fold_complete(self, rows: list, start: int) -> None:
        """:meth:`_fold` of rows that each name every reference feature and no other."""
        numeric = self._numeric_names
        columns = {name: list(map(itemgetter(name), rows)) for name in self._data if name not in numeric}
        if numeric:
            block = list(map(itemgetter(*numeric), rows)) if len(numeric) > 1 else [
                (value,) for value in map(itemgetter(numeric[0]), rows)]
            if _PLAIN_NUMBERS.issuperset(map(type, chain.from_iterable(block))):
                try:
                    matrix = np.array(block, dtype=np.float64)   # None -> NaN, as to_column converts them
                except OverflowError:
                    matrix = None
                if matrix is not None:
                    for j, name in enumerate(numeric):
                        columns[name] = matrix[:, j]
                    self._put(columns, start, len(rows))
                    return
            for name in numeric:
                columns[name] = list(map(itemgetter(name), rows))
        self._put(columns, start, len(rows))

    # -- reading ---------------------------------------------------------------------
    def columns(self) -> dict[str, list]:
        """Every column as raw values with None for missing (numbers as floats): reference
        names first, then the others in the order they came."""
        if self._rows:
            self._fold()
        n = self.n
        return {**{name: column.raw(n) for name, column in self._data.items()},
                **{name: list(held) for name, held in self._extra.items()}}

    def raw(self, name: str) -> list:
        """One column's raw values (see :meth:`columns`)."""
        if self._rows:
            self._fold()
        column = self._data.get(name)
        return column.raw(self.n) if column is not None else list(self._extra[name])

    def window_columns(self) -> dict:
        """The window as its tests take it: a :class:`BufferedColumn` per reference feature,
        converted as the reference types it, and the raw list of every other name."""
        if self._rows:
            self._fold()
        n, types = self.n, self._types
        return {**{name: column.column(n, types[name]) for name, column in self._data.items()}, **self._extra}

    def clear(self) -> None:
        for column in self._data.values():
            column.clear()
        self._extra = {}
        self._rows = []
        self.n = 0
        self._capacity = 0

    # -- checkpoints -----------------------------------------------------------------
    def typed_state(self) -> dict:
        """The arrays up to ``n`` (and the levels the window added), not their spare capacity, nor
        the reference (a checkpoint stores it apart: :meth:`detectors.window.OpenWindow.to_state`)."""
        if self._rows:
            self._fold()
        return {"n": self.n, "data": {name: column.state(self.n) for name, column in self._data.items()},
                "extra": self._extra}

    @classmethod
    def from_typed_state(cls, reference, limit: int, state: dict) -> "WindowBuffer":
        buffer = cls(reference, limit)
        n = buffer.n = buffer._capacity = state["n"]
        for name, saved in state["data"].items():
            buffer._data[name].restore(saved, n, n)
        buffer._extra = state["extra"]
        return buffer

    def __getstate__(self) -> dict:
        return {"reference": self.reference, "limit": self.limit, **self.typed_state()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(self.from_typed_state(state["reference"], state["limit"], state).__dict__)


class RawColumns(Mapping):
    """A buffer's columns of raw values, each rebuilt when asked for (CBPE reads two of them)."""

    def __init__(self, buffer):
        self._buffer = buffer

    def __getitem__(self, name: str) -> list:
        try:
            return self._buffer.raw(name)
        except KeyError:
            raise KeyError(name) from None

    def __iter__(self):
        return iter(self._buffer.columns())

    def __len__(self) -> int:
        return len(self._buffer.columns())
