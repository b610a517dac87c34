"""Columns of a checkpoint (:mod:`detectors.monitor_state`) in a compact plain form.

A column of segments repeats a few dicts thousands of times (``{"region": "eu"}`` per pending
prediction): it is stored as the distinct values and one small integer code per row. A column of
optional floats (scores, ``None`` for none) is stored as a float64 array with NaN for None.

>>> coded = encode([{"r": "eu"}, None, {"r": "us"}, {"r": "eu"}])
>>> coded["values"], coded["codes"].tolist()
([None, {'r': 'eu'}, {'r': 'us'}], [1, 0, 2, 1])
>>> decode(coded)
[{'r': 'eu'}, None, {'r': 'us'}, {'r': 'eu'}]
>>> optional_floats(floats_or_none([0.5, None])), floats_or_none([0.5, None]).dtype
([0.5, None], dtype('float64'))
"""
from __future__ import annotations

import numpy as np


def _key(value):
    return tuple(value.items()) if isinstance(value, dict) else (type(value), value)


def encode(values: list) -> dict:
    """Distinct values (None first) and each row's code; rows are dicts (segments), strings or None."""
    index: dict = {_key(None): 0}
    distinct: list = [None]
    codes = np.empty(len(values), dtype=np.int32)
    for row, value in enumerate(values):
        key = _key(value)
        code = index.get(key)
        if code is None:
            code = index[key] = len(distinct)
            distinct.append(value)
        codes[row] = code
    return {"values": distinct, "codes": codes}


def decode(state: dict) -> list:
    """The rows :func:`encode` recorded; a dict row gets a copy of its own, as it had."""
    values = state["values"]
    return [dict(v) if isinstance(v, dict) else v for v in map(values.__getitem__, state["codes"].tolist())]


def floats_or_none(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def optional_floats(array: np.ndarray) -> list:
    return [None if v != v else v for v in array.tolist()]
