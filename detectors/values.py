"""One typing of feature values, whatever wrote them: live JSON, a CSV file, a JSONL file.

The same value reaches driftline spelled differently by different tools: a
boolean is ``true`` in JSON, ``True`` when pandas or Python's csv module write
it, ``TRUE`` from R or a spreadsheet, ``1``/``0`` from SQL exports; a number
in a CSV file is text; an empty CSV cell is a missing value. These rules make
each of them one value, so a reference built from a file and the live stream
it describes count the same things:

* **boolean** type: ``True``/``False`` in any of the spellings above, and the
  numbers and texts ``1``/``0``, are the categories ``"true"``/``"false"``;
* **numeric** type: a bool is the number 1 or 0 (what a tool that wrote 1/0 meant);
* **categorical** type: a bool, or a text spelling one, is ``"true"``/``"false"``;
  an integral number is its integer text (``3`` and ``3.0`` are ``"3"``);
* in a CSV cell (:func:`parse_text`): empty is missing, a boolean spelling is a
  bool, a number is a number, anything else stays text.

A column whose values are all booleans (any spelling, with 1/0 allowed among
them) is inferred boolean (:func:`infer_type`); one of only 1/0 numbers is
numeric unless declared ``boolean`` (``--types``, ``feature_types``).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["TYPES", "TRUE_TEXT", "FALSE_TEXT", "parse_text", "as_boolean", "infer_type", "bool_text"]

TYPES = ("numeric", "categorical", "boolean")
TRUE_TEXT = frozenset({"true", "True", "TRUE"})
FALSE_TEXT = frozenset({"false", "False", "FALSE"})
BOOL_TEXT = TRUE_TEXT | FALSE_TEXT
# what pandas (NaN as an empty cell) and Python's csv module (None as "", float NaN as "nan") write;
# not "NA" and the like: live JSON carries those as text (a country code, a category)
_MISSING_TEXT = frozenset({"", "nan", "NaN"})


def bool_text(value) -> str | None:
    """``"true"``/``"false"`` for a bool or a text spelling of one, else None.

    >>> bool_text(True), bool_text("False"), bool_text("TRUE"), bool_text("yes"), bool_text(1)
    ('true', 'false', 'true', None, None)
    """
    if value is True or value is False or isinstance(value, np.bool_):
        return "true" if value else "false"
    if type(value) is str:
        if value in TRUE_TEXT:
            return "true"
        if value in FALSE_TEXT:
            return "false"
    return None


def as_boolean(value):
    """A value of a boolean column as ``"true"``/``"false"``/None; other values keep their
    text (they show up as unseen categories, not silently as one of the two).

    >>> [as_boolean(v) for v in (True, "False", 1, 0.0, "1", "0", None, float("nan"), "maybe", 2)]
    ['true', 'false', 'true', 'false', 'true', 'false', None, None, 'maybe', '2']
    """
    text = bool_text(value)
    if text is not None:
        return text
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        if isinstance(value, (float, np.floating)) and math.isnan(value):
            return None
        if value == 1:
            return "true"
        if value == 0:
            return "false"
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if value == "1":
        return "true"
    if value == "0":
        return "false"
    return str(value)


def parse_text(text: str):
    """A CSV cell as the value JSON would have carried.

    >>> [parse_text(t) for t in ("", "True", "false", "3", "3.50", "1e3", "NaN", "US", " 7 ", "NA")]
    [None, True, False, 3, 3.5, 1000.0, None, 'US', 7, 'NA']
    """
    stripped = text.strip()
    if stripped in _MISSING_TEXT:
        return None
    if stripped in TRUE_TEXT:
        return True
    if stripped in FALSE_TEXT:
        return False
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        number = float(stripped)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _is_bool_like(value) -> bool:
    return bool_text(value) is not None


def _is_one_zero(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value == 1 or value == 0
    return value == "1" or value == "0"


def infer_type(values) -> str:
    """``"boolean"`` when every present value is a boolean (any spelling, 1/0 allowed among
    real booleans), else ``"numeric"`` or ``"categorical"`` as :func:`~detectors.profile.infer_kind`.

    >>> infer_type([True, False, None]), infer_type(["True", "false", 1]), infer_type([1, 0, 1]), infer_type(["a"])
    ('boolean', 'boolean', 'numeric', 'categorical')
    """
    from detectors.profile import _is_missing, infer_kind

    if isinstance(values, np.ndarray) and values.dtype.kind == "b":
        return "boolean"
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiuUS":
        return infer_kind(values)
    present = [v for v in values if not _is_missing(v)]
    if present:
        booleans = sum(map(_is_bool_like, present))
        if booleans and all(_is_bool_like(v) or _is_one_zero(v) for v in present):
            return "boolean"
    return infer_kind(values)
