"""A model's outputs as the monitor sees them: the column names they take in a window, the
task they imply, and classes compared as classes. Pure: no I/O."""
from __future__ import annotations

PREDICTION = "__prediction__"
SCORE = "__score__"
OUTPUT_COLUMNS = (PREDICTION, SCORE)


def infer_task(prediction, score) -> str:
    if score is not None or isinstance(prediction, (str, bool)):
        return "classification"
    if float(prediction) in (0.0, 1.0):
        return "classification"
    return "regression"


def as_class(value):
    """Labels and predictions compared as classes: 1/1.0/True are one class.

    >>> [as_class(v) for v in (1, 1.0, True, 0.0, 2.0, "a")]
    [True, True, True, False, 2, 'a']
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value in (0, 1) and not isinstance(value, str):
        return bool(value)
    return value
