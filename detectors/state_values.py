"""Columns of a checkpoint (:mod:`detectors.monitor_state`) in a compact plain form.

A column of segments repeats a few dicts thousands of times (``{"region": "eu"}`` per pending
prediction): it is stored as the distinct values and one small integer code per row (an int32 array). A column of
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


def encode(values: list) -> dict:
    """Distinct values (None first) and each row's code; rows are dicts of strings (segments),
    strings (version names) or None."""
    index: dict = {None: 0}
    distinct: list = [None]
    codes = []
    for value in values:
        key = tuple(value.items()) if value.__class__ is dict else value
        code = index.get(key)
        if code is None:
            code = index[key] = len(distinct)
            distinct.append(value)
        codes.append(code)
    return {"values": distinct, "codes": np.array(codes, dtype=np.int32)}


def decode(state: dict) -> list:
    """The rows :func:`encode` recorded. Rows of one value share it: segments are read, never
    changed, and one dict per distinct segment is what a restored monitor then holds."""
    return list(map(state["values"].__getitem__, state["codes"].tolist()))


def floats_or_none(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def optional_floats(array: np.ndarray) -> list:
    return [None if v != v else v for v in array.tolist()]
