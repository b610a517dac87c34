"""A converted categorical column kept as integer codes into its categories. Pure: no I/O.

The reference's joint sample (the rows the domain classifier draws from, kept for the version's
lifetime) holds its categorical features this way: 2 bytes a value instead of a pointer to a
string object per row (decoded JSON gives every value its own object).
"""
from __future__ import annotations

import numpy as np

__all__ = ["CategoryCodes"]

_INT16_CODES = 32767


class CategoryCodes:
    """``codes`` into ``categories`` (first appearance order), -1 for missing; indexes and
    converts back like the object array it replaces (:func:`detectors.profile.to_column`'s).

    >>> column = CategoryCodes.of(np.array(["b", None, "a", "b"], dtype=object))
    >>> column.codes.tolist(), column.categories, len(column)
    ([0, -1, 1, 0], ['b', 'a'], 4)
    >>> column[np.array([3, 1])].tolist(), column.tolist()
    (['b', None], ['b', None, 'a', 'b'])
    """

    __slots__ = ("codes", "categories")

    def __init__(self, codes: np.ndarray, categories: list):
        self.codes = codes
        self.categories = categories

    @classmethod
    def of(cls, values) -> "CategoryCodes":
        """Codes of converted categorical values (str, None for missing)."""
        labels = values.tolist() if isinstance(values, np.ndarray) else list(values)
        code_of = {None: -1}
        for label in labels:
            if label not in code_of:
                code_of[label] = len(code_of) - 1
        dtype = np.int16 if len(code_of) <= _INT16_CODES else np.int32
        codes = np.fromiter(map(code_of.__getitem__, labels), dtype=dtype, count=len(labels))
        return cls(codes, [label for label in code_of if label is not None])

    def __len__(self) -> int:
        return int(self.codes.size)

    def __getitem__(self, rows) -> "CategoryCodes":
        return CategoryCodes(self.codes[rows], self.categories)

    def to_array(self) -> np.ndarray:
        """The object array of categories (None for missing) these codes stand for."""
        table = np.empty(len(self.categories) + 1, dtype=object)
        table[:] = [*self.categories, None]
        return table[self.codes]

    def tolist(self) -> list:
        return self.to_array().tolist()

    def __eq__(self, other) -> bool:
        if isinstance(other, CategoryCodes):
            return self.tolist() == other.tolist()
        return NotImplemented

    __hash__ = None
