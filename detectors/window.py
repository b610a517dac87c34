"""The open window of one model version: its rows as columns, where it starts and ends, and
when it is due to close (by size, by event time, or by wall-clock ticks). Pure: no I/O.

Per-event work is an append to the column buffer; the window's tests run once at its close
(:mod:`detectors.window_tests`). Once the version has its reference, the window's rows are a
:class:`detectors.window_buffer.WindowBuffer` (typed arrays); :class:`ColumnBuffer` (lists of
raw values) holds the rows before the reference exists, and is what checkpoints written before
the typed buffer hold (:meth:`OpenWindow.adopt` moves them into one).
"""
from __future__ import annotations

from operator import itemgetter

import numpy as np

from detectors.window_buffer import WindowBuffer


class ColumnBuffer:
    """Rows kept as appended and moved into columns (one list per name) in chunks, so
    appending is one list append and a window becomes arrays in one step. Rows are kept,
    not copied, until their chunk is moved: don't change one after appending it.

    >>> buf = ColumnBuffer()
    >>> buf.append({"a": 1, "b": "x"}); buf.append({"a": 2, "c": True})
    >>> buf.columns()
    {'a': [1, 2], 'b': ['x', None], 'c': [None, True]}
    >>> buf.append({"a": 3, "b": "y", "c": False}); buf.columns()["c"]
    [None, True, False]
    """

    CHUNK = 256  # rows held as dicts at most (a dict per row costs ~20x its column entries)

    def __init__(self, names=()):
        self._columns: dict[str, list] = {name: [] for name in names}
        self._rows: list[dict] = []     # appended since the columns were last built
        self.n = 0

    def append(self, row: dict) -> None:
        self._rows.append(row)
        self.n += 1
        if len(self._rows) >= self.CHUNK:
            self._fold()

    def columns(self) -> dict[str, list]:
        if self._rows:
            self._fold()
        return self._columns

    def _fold(self) -> None:
        """Move the pending rows into the columns, one pass per column (in C when every row
        has every name); a name first seen now gets None for the rows before it."""
        rows, columns = self._rows, self._columns
        before = self.n - len(rows)
        names = columns.keys()
        complete = True
        for row in rows:
            if row.keys() != names:
                complete = False
                for name in row:
                    if name not in columns:
                        columns[name] = [None] * before
        for name, column in columns.items():
            if complete:
                column.extend(map(itemgetter(name), rows))
            else:
                column.extend([row.get(name) for row in rows])
        self._rows = []

    def extend(self, columns: dict, n: int) -> None:
        """Append ``n`` rows given as columns (name -> list of ``n`` values, or a float64 array with
        NaN for missing): one list extend per name, no dict per row. A name the buffer has not
        seen gets None for the rows before."""
        if self._rows:
            self._fold()
        before = self.n
        for name, values in columns.items():
            if isinstance(values, np.ndarray):
                values = [None if v != v else v for v in values.tolist()] if values.dtype.kind == "f" else values.tolist()
            column = self._columns.get(name)
            if column is None:
                column = self._columns[name] = [None] * before
            column.extend(values)
        for name, column in self._columns.items():
            if name not in columns:
                column.extend([None] * n)
        self.n += n

    def clear(self) -> None:
        for column in self._columns.values():
            column.clear()
        self._rows = []
        self.n = 0

    def __getstate__(self) -> dict:
        """Checkpoints hold columns, as they always did."""
        self.columns()
        return {"_columns": self._columns, "n": self.n}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._rows = []


class OpenWindow:
    """Rows of the window being filled, their segments, event-time span and audit offsets.

    ``index`` counts the windows closed before this one; ``out_of_range`` the rows whose score
    (or regression output) was outside its range; ``first_tick`` the wall-clock tick that first
    saw this window open (a window open across ``window_seconds`` of ticks closes).
    """

    def __init__(self, names=()):
        self.rows = ColumnBuffer(names)
        self.segments: list = []
        self.index = 0
        self.start = self.end = None
        self.offsets = [None, None]     # [offset, index in the message] of the first and last event
        self.first_tick = self.first_tick_window = None
        self.out_of_range = 0

    @property
    def n(self) -> int:
        return self.rows.n

    def adopt(self, reference, limit: int) -> None:
        """Rows held as lists (:class:`ColumnBuffer`) moved into a :class:`WindowBuffer` typed by
        ``reference``; ``limit`` is the window size (the capacity its arrays grow to)."""
        if isinstance(self.rows, ColumnBuffer):
            self.rows = WindowBuffer.from_columns(reference, limit, self.rows.columns(), self.rows.n)

    def append(self, row: dict, segment, ts: float, offset) -> None:
        """One row (the row-by-row path)."""
        if self.rows.n == 0:
            self.start = self.end = ts
            self.offsets[0] = offset
        self.rows.append(row)
        self.segments.append(segment)
        if ts > self.end:
            self.end = ts
        elif ts < self.start:
            self.start = ts
        self.offsets[1] = offset

    def extend(self, columns: dict, segments: list, ts: np.ndarray, first_offset, last_offset) -> None:
        """Rows given as columns (the columnar path): ``ts`` their event times."""
        if self.rows.n == 0:
            self.start = self.end = float(ts[0])
            self.offsets[0] = first_offset
        self.rows.extend(columns, len(ts))
        self.segments.extend(segments)
        self.start = min(self.start, float(ts.min()))
        self.end = max(self.end, float(ts.max()))
        self.offsets[1] = last_offset

    def cut(self, ts: np.ndarray, i: int, window_size: int, min_window_size: int,
            window_seconds: float) -> int | None:
        """The first row from ``i`` on at which this window closes (by size or by event time)."""
        held = self.rows.n
        by_size = i + window_size - held - 1
        end = min(len(ts), by_size + 1)
        span = ts[i:end]
        start = np.minimum.accumulate(span)
        if held:
            start = np.minimum(start, self.start)
        sizes = held + 1 + np.arange(len(span))
        late = np.flatnonzero((sizes >= min_window_size) & (span - start >= window_seconds))
        if len(late):
            return i + int(late[0])
        return by_size if by_size < len(ts) else None

    def due_by_time(self, now: float, min_window_size: int, window_seconds: float) -> bool:
        return (self.rows.n >= min_window_size and self.start is not None
                and now - self.start >= window_seconds)

    def tick_changes(self, now: float, min_window_size: int, window_seconds: float) -> bool:
        """Whether :meth:`due_by_tick` at ``now`` would change this window: its first tick (which
        starts the clock of a window open across ticks) or the tick that closes it. Reads only."""
        if not self.rows.n:
            return False
        if self.first_tick is None or self.first_tick_window != self.index:
            return True
        return now - self.first_tick >= window_seconds and self.rows.n >= min_window_size

    def due_by_tick(self, now: float, min_window_size: int, window_seconds: float) -> bool:
        """A wall-clock tick: True when ticks have seen this window open for ``window_seconds``."""
        if not self.rows.n:
            self.first_tick = None
            return False
        if self.first_tick is None or self.first_tick_window != self.index:
            self.first_tick, self.first_tick_window = now, self.index
            return False
        return now - self.first_tick >= window_seconds and self.rows.n >= min_window_size

    def bounds(self, partition) -> dict:
        return {"index": self.index, "start": self.start, "end": self.end,
                "n": self.rows.n, "partition": partition,
                # [offset, index in the message] of the first and last event: `driftline audit --recompute`
                "offsets": {"first": self.offsets[0], "last": self.offsets[1]}}

    def next(self) -> None:
        """Start the next window."""
        self.index += 1
        self.rows.clear()
        self.segments = []
        self.start = self.end = None
        self.offsets = [None, None]
        self.first_tick = self.first_tick_window = None
        self.out_of_range = 0

    # -- checkpoint (detectors.monitor_state): public fields only -----------------------------
    def to_state(self) -> dict:
        """Plain data: the rows as the typed buffer's arrays (``typed``) or, before the reference,
        as columns of raw values (``columns``: not copied); their segments coded
        (:mod:`detectors.state_values`), the window's bounds. The reference is not in it."""
        from detectors.state_values import encode
        rows = ({"typed": self.rows.typed_state()} if isinstance(self.rows, WindowBuffer)
                else {"columns": self.rows.columns(), "n": self.rows.n})
        return {**rows, "segments": encode(self.segments),
                "index": self.index, "start": self.start, "end": self.end, "offsets": list(self.offsets),
                "first_tick": self.first_tick, "first_tick_window": self.first_tick_window,
                "out_of_range": self.out_of_range}

    @classmethod
    def from_state(cls, state: dict, reference=None, limit: int = 0) -> "OpenWindow":
        """The window :meth:`to_state` recorded; ``reference`` and ``limit`` (the window size) type
        its rows once the version has a reference."""
        from detectors.state_values import decode
        window = cls()
        if "typed" in state:
            window.rows = WindowBuffer.from_typed_state(reference, limit, state["typed"])
        else:
            window.rows.extend(state["columns"], state["n"])
            if reference is not None:
                window.adopt(reference, limit)
        window.segments = decode(state["segments"])
        window.index, window.start, window.end = state["index"], state["start"], state["end"]
        window.offsets = list(state["offsets"])
        window.first_tick, window.first_tick_window = state["first_tick"], state["first_tick_window"]
        window.out_of_range = state["out_of_range"]
        return window
