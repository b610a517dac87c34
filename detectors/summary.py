"""Plain-data summary of one column, for evidence in results and alerts."""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["summarize", "summarize_present", "TOP_K"]

TOP_K = 5


def _is_missing_categorical(values: np.ndarray) -> np.ndarray:
    return np.fromiter((v is None for v in values), dtype=bool, count=len(values))


def summarize(values: np.ndarray, kind: str) -> dict:
    """Summarise a converted column (see :func:`detectors.profile.to_column`).

    Missing values (NaN for numeric, None for categorical) are counted in
    ``missing_rate``, never silently dropped; the other statistics are over the
    non-missing values and are None when there are none. ``std`` is the sample
    standard deviation (ddof=1; 0.0 for a single value). ``top`` holds up to 5
    ``[category, fraction of non-missing]`` pairs, most frequent first.

    Examples
    --------
    >>> summarize(np.array([1.0, 2.0, np.nan, 3.0]), "numeric")
    {'n': 4, 'missing_rate': 0.25, 'mean': 2.0, 'std': 1.0, 'min': 1.0, 'max': 3.0}
    >>> summarize(np.array(["a", "b", "a", None], dtype=object), "categorical")
    {'n': 4, 'missing_rate': 0.25, 'n_categories': 2, 'top': [['a', 0.6666666666666666], ['b', 0.3333333333333333]]}
    >>> summarize(np.array([np.nan]), "numeric")["mean"] is None
    True
    """
    n = int(len(values))
    if kind == "numeric":
        values = np.asarray(values, dtype=np.float64)
        return summarize_present(n, values[~np.isnan(values)], kind)
    if kind == "categorical":
        return summarize_present(n, Counter(v for v in values if v is not None), kind)
    raise ValueError(f"unknown kind {kind!r}; expected 'numeric' or 'categorical'")


def summarize_present(n: int, present, kind: str) -> dict:
    """:func:`summarize` of a column of ``n`` values from what it keeps of them.

    ``present`` is the array of non-missing values (numeric) or a
    :class:`collections.Counter` of the non-missing categories in order of first
    appearance (categorical), so a column already counted is not counted again.

    >>> summarize_present(3, Counter(["b", "a", "b"]), "categorical")
    {'n': 3, 'missing_rate': 0.0, 'n_categories': 2, 'top': [['b', 0.6666666666666666], ['a', 0.3333333333333333]]}
    """
    if kind == "numeric":
        out = {"n": n, "missing_rate": float(n - present.size) / n if n else 0.0}
        if present.size and present.dtype == np.float64 and present.ndim == 1:
            # present.mean(), present.std(ddof=1), .min(), .max(): the same ufunc steps numpy's
            # _mean and _var take, without their generic argument handling (a window has 20 columns)
            size = present.size
            mean = np.add.reduce(present) / size
            if size > 1:
                deviations = np.subtract(present, mean)
                np.square(deviations, out=deviations)
                std = float(np.sqrt(np.add.reduce(deviations) / (size - 1)))
            else:
                std = 0.0
            out.update(mean=float(mean), std=std, min=float(np.minimum.reduce(present)),
                       max=float(np.maximum.reduce(present)))
        elif present.size:
            out.update(
                mean=float(present.mean()),
                std=float(present.std(ddof=1)) if present.size > 1 else 0.0,
                min=float(present.min()),
                max=float(present.max()),
            )
        else:
            out.update(mean=None, std=None, min=None, max=None)
        return out
    if kind == "categorical":
        n_present = sum(present.values())
        return {
            "n": n,
            "missing_rate": float(n - n_present) / n if n else 0.0,
            "n_categories": len(present),
            "top": [[str(c), k / n_present] for c, k in present.most_common(TOP_K)],
        }
    raise ValueError(f"unknown kind {kind!r}; expected 'numeric' or 'categorical'")
