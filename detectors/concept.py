"""Online concept-drift detectors on the model's error stream, behind one protocol.

:func:`make_concept_detector` builds one of river's detectors by name and wraps
it so every detector has ``update(x)``, ``drift_detected`` and ``name``:

========================  =================  =======================================
name                      river class        input
========================  =================  =======================================
``adwin``                 ``drift.ADWIN``    any real number (e.g. absolute error)
``page_hinkley``          ``drift.PageHinkley``  real; default ``mode="up"`` here
``kswin``                 ``drift.KSWIN``    real; default ``seed=42`` here
``ddm``                   ``drift.binary.DDM``   0/1, 1 = error
``eddm``                  ``drift.binary.EDDM``  0/1, 1 = error
``hddm_a``                ``drift.binary.HDDMA`` 0/1, 1 = error
``hddm_w``                ``drift.binary.HDDMW`` 0/1, 1 = error
``fhddm``                 ``drift.binary.FHDDM`` 0/1, 1 = error (fed 1 - x, see below)
========================  =================  =======================================

In river 0.26.1 DDM, EDDM, HDDM_A, HDDM_W and FHDDM live in ``river.drift.binary``;
their wrapper (:class:`BinaryErrorDetector`) rejects anything but 0/1 with a
ValueError. The convention is 1 = error, and the detector fires when the error
*rate rises*. FHDDM is the exception that needs care: despite its docstring it
fires when the mean of its input *falls* (``u_max - u > epsilon``), so the
wrapper feeds it ``1 - x`` (the correctness stream); the tests pin that it
fires when errors rise and stays silent when they fall.

Defaults that differ from river's, chosen for an error stream: Page-Hinkley
watches increases only (``mode="up"``), KSWIN is seeded (``seed=42``) so a
replay after a crash makes the same decisions.
"""

from __future__ import annotations

import math

import numpy as np
from river import drift
from river.drift import binary

from detectors.base import Estimator

__all__ = ["make_concept_detector", "ContinuousDetector", "BinaryErrorDetector", "CONCEPT_DETECTORS"]

# name -> (river class, binary input?, feed 1 - x?, default params)
CONCEPT_DETECTORS = {
    "adwin": (drift.ADWIN, False, False, {}),
    "page_hinkley": (drift.PageHinkley, False, False, {"mode": "up"}),
    "kswin": (drift.KSWIN, False, False, {"seed": 42}),
    "ddm": (binary.DDM, True, False, {}),
    "eddm": (binary.EDDM, True, False, {}),
    "hddm_a": (binary.HDDMA, True, False, {}),
    "hddm_w": (binary.HDDMW, True, False, {}),
    "fhddm": (binary.FHDDM, True, True, {}),
}


def _canonical(name: str) -> str:
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    for canonical in CONCEPT_DETECTORS:
        if canonical.replace("_", "") == key:
            return canonical
    raise ValueError(f"unknown concept detector {name!r}; expected one of {sorted(CONCEPT_DETECTORS)}")


class ContinuousDetector(Estimator):
    """A river detector on a real-valued stream (ADWIN, Page-Hinkley, KSWIN).

    Parameters
    ----------
    name
        Canonical detector name (see :data:`CONCEPT_DETECTORS`).
    params
        Keyword arguments for the river class (merged over the defaults above).

    Examples
    --------
    >>> detector = ContinuousDetector("adwin")
    >>> rng = np.random.default_rng(0)
    >>> stream = np.concatenate([rng.random(500) < 0.1, rng.random(500) < 0.5]).astype(int)
    >>> for i, error in enumerate(stream):
    ...     detector.update(error)
    ...     if detector.drift_detected:
    ...         print(f"drift at {i}")
    drift at 575
    """

    def __init__(self, name: str = "adwin", params: dict | None = None):
        self.name = _canonical(name)
        self.params = dict(params or {})
        self._reset()

    def _reset(self) -> None:
        cls, _, _, defaults = CONCEPT_DETECTORS[self.name]
        self._detector = cls(**{**defaults, **self.params})

    def _check(self, x) -> float:
        if isinstance(x, (bool, np.bool_)):
            return float(x)
        if not isinstance(x, (int, float, np.integer, np.floating)) or not math.isfinite(x):
            raise ValueError(f"{self.name} needs a finite real number, got {x!r}")
        return float(x)

    def update(self, x) -> None:
        self._detector.update(self._check(x))

    def update_until_drift(self, values) -> int | None:
        """:meth:`update` with each of ``values`` in order, stopping at the first at which the
        detector fires: returns that value's index (the values after it are not taken), or None
        when it never fired (all were taken). One call per batch of labels instead of two per label.

        >>> detector = ContinuousDetector("adwin")
        >>> rng = np.random.default_rng(0)
        >>> stream = np.concatenate([rng.random(500) < 0.1, rng.random(500) < 0.5]).astype(float)
        >>> detector.update_until_drift(stream.tolist())
        575
        """
        detector, check = self._detector, self._check
        update = detector.update
        if type(self)._check is ContinuousDetector._check and all(type(x) is float for x in values) \
                and math.isfinite(sum(values)):
            check = None   # plain finite floats: what _check would return is the value itself
        for index, x in enumerate(values):
            update(x if check is None else check(x))
            if detector.drift_detected:
                return index
        return None

    @property
    def drift_detected(self) -> bool:
        return bool(self._detector.drift_detected)

    @property
    def warning_detected(self) -> bool:
        return bool(getattr(self._detector, "warning_detected", False))

    @property
    def river_detector(self):
        """The wrapped river object (read it, don't feed it)."""
        return self._detector


class BinaryErrorDetector(ContinuousDetector):
    """A river binary detector on an error stream: 1 = error, 0 = correct; fires when the error rate rises.

    Anything but 0/1 (or True/False) raises ValueError: a regression's absolute
    error must go to a continuous detector instead.

    Examples
    --------
    >>> detector = BinaryErrorDetector("ddm")
    >>> rng = np.random.default_rng(0)
    >>> stream = np.concatenate([rng.random(1000) < 0.1, rng.random(500) < 0.4]).astype(int)
    >>> for i, error in enumerate(stream):
    ...     detector.update(error)
    ...     if detector.drift_detected:
    ...         print(f"drift at {i}")
    drift at 1041
    >>> detector.update(0.5)
    Traceback (most recent call last):
    ...
    ValueError: ddm needs 0/1 input (1 = error), got 0.5
    """

    def _check(self, x) -> float:
        if isinstance(x, (bool, np.bool_, int, float, np.integer, np.floating)) and x in (0, 1):
            x = float(x)
            return 1.0 - x if CONCEPT_DETECTORS[self.name][2] else x
        raise ValueError(f"{self.name} needs 0/1 input (1 = error), got {x!r}")


def make_concept_detector(name: str, **params) -> ContinuousDetector:
    """Build a wrapped detector by name (case and ``_``/``-`` insensitive: ``"HDDM_A"``, ``"PageHinkley"``).

    Examples
    --------
    >>> make_concept_detector("PageHinkley", threshold=20)
    ContinuousDetector(name='page_hinkley', params={'threshold': 20})
    >>> make_concept_detector("hddm-a").name
    'hddm_a'
    """
    canonical = _canonical(name)
    cls = BinaryErrorDetector if CONCEPT_DETECTORS[canonical][1] else ContinuousDetector
    return cls(canonical, params)
