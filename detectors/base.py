"""The result shape every drift test returns, and the two detector protocols.

Every window test (KS, chi-squared, PSI, ...) returns a :class:`DriftResult`, so
alerts are built from plain data without per-detector glue (alibi-detect style).
Online detectors (river's ADWIN, DDM, ... wrapped in :mod:`detectors.concept`)
follow river's protocol: ``update(x)`` and a ``drift_detected`` property.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import orjson

if TYPE_CHECKING:  # pragma: no cover
    from detectors.profile import FeatureProfile

__all__ = ["DriftResult", "WindowTest", "OnlineDetector", "Estimator", "json_safe", "json_safe_tree", "empty_result"]


_PLAIN = frozenset({str, int, bool, type(None)})  # JSON-safe as they are


def json_safe(obj: Any) -> Any:
    """Return ``obj`` with numpy types turned into Python ones and NaN/inf into None.

    >>> json_safe({"a": np.float64("nan"), "b": [np.int64(2), np.bool_(True)], "c": (1.5,)})
    {'a': None, 'b': [2, True], 'c': [1.5]}
    """
    # Exact-type checks first: evidence is mostly plain floats, strings, dicts and lists.
    kind = type(obj)
    if kind is float:
        return obj if math.isfinite(obj) else None
    if kind in _PLAIN:
        return obj
    if kind is dict:
        return {k if type(k) is str else str(k): json_safe(v) for k, v in obj.items()}
    if kind is list or kind is tuple:
        return [json_safe(v) for v in obj]
    if kind is np.ndarray and obj.ndim == 1 and obj.dtype.kind in "biuf":
        # tolist() gives the Python bool/int/float of each element: JSON-safe unless NaN or inf
        if obj.dtype.kind != "f" or np.isfinite(obj).all():
            return obj.tolist()
        return json_safe(obj.tolist())
    if isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in obj]
    return str(obj)


_TREE_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def json_safe_tree(obj: Any) -> Any:
    """:func:`json_safe` of a big tree of mostly plain values (a window summary), in C.

    One orjson round trip: plain str/int/float/bool/None, dicts with str keys, lists and tuples
    are taken as they are (NaN and inf become None, as json_safe makes them); anything else,
    numpy scalars and arrays included (``np.float64`` is a float subclass), goes through
    :func:`json_safe` itself (orjson's ``default``). A tree orjson refuses (a non-str key, an int
    beyond 64 bits) is converted by :func:`json_safe`. Not for trees holding ``Enum`` members,
    which orjson writes as their value where json_safe writes ``str()``.

    >>> json_safe_tree({"a": np.float64("nan"), "b": [np.int64(2), np.bool_(True)], "c": (1.5, float("inf"))})
    {'a': None, 'b': [2, True], 'c': [1.5, None]}
    >>> json_safe_tree({1: "x"})   # orjson refuses int keys: json_safe converts it
    {'1': 'x'}
    """
    try:
        return orjson.loads(orjson.dumps(obj, default=json_safe, option=_TREE_OPTIONS))
    except TypeError:
        return json_safe(obj)


@dataclass(frozen=True)
class DriftResult:
    """Outcome of one drift test on one feature for one window.

    Parameters
    ----------
    detector
        Test name: ``"ks"``, ``"chi_squared"``, ``"psi"``, ``"wasserstein"``,
        ``"jensen_shannon"``, ``"missing_rate"``, ``"prediction_ks"``, ...
    feature
        Feature name, or None for multivariate tests.
    statistic
        The test statistic.
    p_value
        The p-value, or None for distance-only tests.
    threshold
        The threshold the decision used: on ``p_value`` (drift if
        ``p_value <= threshold``) when ``threshold_on == "p_value"``, else on
        ``statistic`` (drift if ``statistic > threshold``).
    threshold_on
        ``"p_value"`` or ``"statistic"``.
    drifted
        The decision.
    effect_size, effect_name
        A distance reported next to the significance (e.g. PSI), so a tiny
        but significant shift on a big window can be told apart from a real one.
    evidence
        JSON-safe details: reference vs current summaries, counts, distances.

    Examples
    --------
    >>> r = DriftResult("ks", "age", 0.31, 1e-12, 0.01, "p_value", True,
    ...                 effect_size=0.4, effect_name="psi", evidence={"n": np.int64(3)})
    >>> r.to_dict()["evidence"]
    {'n': 3}
    >>> DriftResult.from_dict(r.to_dict()) == DriftResult.from_dict(r.to_dict())
    True
    """

    detector: str
    feature: str | None
    statistic: float
    p_value: float | None
    threshold: float
    threshold_on: str
    drifted: bool
    effect_size: float | None = None
    effect_name: str | None = None
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-safe dict: no numpy types, NaN and infinities become None."""
        return json_safe({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, d: dict) -> "DriftResult":
        """Inverse of :meth:`to_dict` (up to NaN -> None)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@runtime_checkable
class WindowTest(Protocol):
    """A two-sample test of one window of values against a reference feature profile."""

    def test(self, feature_profile: "FeatureProfile", values) -> DriftResult:  # pragma: no cover
        ...


@runtime_checkable
class OnlineDetector(Protocol):
    """river's drift-detector protocol: feed one value at a time, then read the flag."""

    def update(self, x) -> Any:  # pragma: no cover
        ...

    @property
    def drift_detected(self) -> bool:  # pragma: no cover
        ...


class Estimator:
    """river-style plumbing: constructor args are public attributes of the same name.

    ``repr`` shows them, :meth:`clone` rebuilds a fresh object from them, and
    ``_reset()`` (if any) rebuilds the private state, so objects pickle cleanly.
    """

    def _params(self) -> dict:
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {
            name: getattr(self, name)
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def clone(self):
        """A fresh copy with the same parameters and no state."""
        return type(self)(**self._params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


def empty_result(detector: str, feature: str | None, threshold: float, threshold_on: str, reason: str,
                 evidence: dict | None = None) -> DriftResult:
    """The no-decision result for a window (or reference) without usable values."""
    evidence = dict(evidence or {})
    evidence["reason"] = reason
    return DriftResult(detector, feature, 0.0, 1.0 if threshold_on == "p_value" else None, threshold,
                       threshold_on, False, evidence=json_safe(evidence))
