"""Serving latency of one model version: percentiles, drift from its baseline, SLO breaches.

``latency_ms`` is a property of the serving stack, not of the training data, so a
reference file (built from training or validation rows) cannot say what it should
be. The baseline is therefore the version's own first ``reference_size`` latencies,
the same span of traffic that builds a reference from first predictions. Each
window's latencies are tested against that baseline with the suite's numeric test
(KS, with PSI as the effect-size gate) and a threshold calibrated to
``ert_windows`` windows between false alarms (:func:`detectors.calibration.calibrate`
on the baseline), as a feature is, but as a family of its own: latency never
enters the input-drift correction or alerts.

An SLO (``{"p99": 250}``) is breached by a window whose percentile (numpy's
``np.percentile``, linear interpolation) is above its limit. Negative or
non-finite latencies are not latencies: they are counted, left out of every
statistic, and reported as a data-quality finding of the window.

>>> rng = np.random.default_rng(0)
>>> tracker = LatencyTracker(reference_size=2000, window_size=500, slo_ms={"p99": 40.0})
>>> tracker.observe(rng.gamma(4.0, 3.0, size=2000))           # the baseline
>>> tracker.observe(rng.gamma(4.0, 3.0, size=500))
>>> report = tracker.close_window()
>>> sorted(report.findings()), report.n
([], 500)
>>> tracker.observe(rng.gamma(4.0, 6.0, size=500))            # twice as slow
>>> sorted(tracker.close_window().findings())
['latency_ms', 'latency_ms:p99']
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from detectors.alerts import Alert, build_alert
from detectors.base import DriftResult, Estimator, json_safe
from detectors.calibration import calibrate
from detectors.profile import ReferenceProfile, WindowColumn
from detectors.suite import WindowSettings, evaluate_window

__all__ = ["LatencyTracker", "LatencyReport", "percentile_of", "latency_alert", "latency_difference", "LATENCY"]

LATENCY = "latency_ms"
PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


def percentile_of(name: str) -> float:
    """``"p99"`` -> 99.0, ``"p99.9"`` -> 99.9; anything else is a ValueError.

    >>> percentile_of("p99.9")
    99.9
    """
    if not isinstance(name, str) or not name.startswith("p"):
        raise ValueError(f"a percentile is named like 'p99', got {name!r}")
    try:
        q = float(name[1:])
    except ValueError:
        raise ValueError(f"a percentile is named like 'p99', got {name!r}") from None
    if not 0.0 < q < 100.0:
        raise ValueError(f"percentile {name!r} must be between p0 and p100")
    return q


def _percentiles(values: np.ndarray, names) -> dict:
    if not values.size:
        return {name: None for name in names}
    qs = [percentile_of(name) for name in names]
    return {name: float(v) for name, v in zip(names, np.percentile(values, qs))}


@dataclass(frozen=True)
class LatencyReport:
    """One closed window's latency: its percentiles, the rolling ones, and what it found."""

    n: int
    percentiles: dict
    rolling: dict
    invalid: int
    drift: DriftResult | None
    slo: tuple = ()
    calibration: dict | None = None
    reference_n: int = 0

    def findings(self) -> dict[str, DriftResult]:
        """Lifecycle keys -> results that fire: ``latency_ms`` (drift), ``latency_ms:p99`` (SLO)."""
        found = {r.feature: r for r in self.slo if r.drifted}
        if self.drift is not None and self.drift.drifted:
            found[LATENCY] = self.drift
        return found

    def quality(self) -> DriftResult | None:
        """The window's invalid latencies as a data-quality finding (None when there were none)."""
        if not self.invalid:
            return None
        total = self.n + self.invalid
        return DriftResult("latency.invalid", LATENCY, self.invalid / total, None, 0.0, "statistic", True,
                           evidence={"invalid": self.invalid, "n": total,
                                     "rule": "latency_ms must be a finite number >= 0"})

    def to_dict(self) -> dict:
        drift = None
        if self.drift is not None:
            drift = {k: getattr(self.drift, k) for k in ("detector", "statistic", "p_value", "threshold",
                                                         "effect_size", "drifted")}
        return json_safe({"n": self.n, "percentiles": self.percentiles, "rolling": self.rolling,
                          "invalid": self.invalid, "drift": drift, "reference_n": self.reference_n,
                          "slo": {r.feature.partition(":")[2]: {"value": r.statistic, "limit": r.threshold,
                                                                "breached": r.drifted} for r in self.slo}})


class LatencyTracker(Estimator):
    """Latency statistics of one model version (batch API: :meth:`observe` takes arrays).

    Parameters
    ----------
    reference_size
        The first this many valid latencies are the baseline.
    window_size
        Window size the ERT calibration draws null windows of (the monitor's window).
    rolling_size
        Latencies the rolling percentiles are computed over (a ring buffer).
    slo_ms
        Percentile name -> limit in ms, e.g. ``{"p99": 250}``.
    ert_windows
        Expected windows between false drift alarms (0: test at ``settings.alpha``).
    settings
        The suite's window settings (tests, ``alpha``, ``min_effect_size``); the
        missing-rate test is off (a window holds only the latencies it got).
    """

    def __init__(self, reference_size: int = 2000, window_size: int = 1000, rolling_size: int = 5000,
                 slo_ms: dict | None = None, ert_windows: float = 100.0,
                 settings: WindowSettings | None = None):
        self.reference_size = reference_size
        self.window_size = window_size
        self.rolling_size = rolling_size
        self.slo_ms = dict(slo_ms or {})
        self.ert_windows = ert_windows
        self.settings = settings
        for name in self.slo_ms:
            percentile_of(name)
        self._reset()

    def _reset(self) -> None:
        base = self.settings or WindowSettings()
        self._window_settings = dataclasses.replace(base, missing_rate=False, correction="none")
        self._baseline: list = []
        self.reference: ReferenceProfile | None = None
        self.calibration: dict | None = None
        self._window: list = []
        self._window_invalid = 0
        self._rolling = np.zeros(0)  # the ring buffer, allocated by the first latency (most models send none)
        self._rolling_n = 0          # values ever pushed into the ring buffer
        self.counts = {"observed": 0, "invalid": 0, "windows": 0, "slo_breaches": 0}
        self.last: LatencyReport | None = None
        self._pending: list = []     # single values (add), folded in as one batch when read

    def add(self, value: float) -> None:
        """One latency (the per-event path: a list append; folded in by the next read)."""
        self._pending.append(value)
        if len(self._pending) >= 256:
            self._fold()

    def _fold(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self.observe(pending)

    # -- feeding -------------------------------------------------------------------
    def observe(self, values) -> None:
        """Fold a batch of latencies in (an array or a sequence of numbers, NaN = invalid)."""
        self._fold()                   # values added one at a time come first
        values = np.asarray(values, dtype=np.float64).ravel()
        if not values.size:
            return
        valid = values >= 0.0          # False for NaN and for negative values
        good = values if valid.all() else values[valid]
        invalid = int(values.size - good.size)
        self.counts["observed"] += int(values.size)
        self.counts["invalid"] += invalid
        self._window_invalid += invalid
        if self.reference is None:
            take = self.reference_size - len(self._baseline)
            self._baseline.extend(good[:take].tolist())
            good = good[take:]
            if len(self._baseline) >= self.reference_size:
                self.set_reference(np.asarray(self._baseline))
        if good.size:
            self._window.extend(good.tolist())
            self._push(good)

    def _push(self, values: np.ndarray) -> None:
        if not self._rolling.size:
            self._rolling = np.zeros(max(1, self.rolling_size))
        size = self._rolling.size
        values = values[-size:]
        start = self._rolling_n % size
        end = start + values.size
        if end <= size:
            self._rolling[start:end] = values
        else:
            split = size - start
            self._rolling[start:] = values[:split]
            self._rolling[:end - size] = values[split:]
        self._rolling_n += values.size

    def set_reference(self, values: np.ndarray, reference_id: str = "latency:first") -> None:
        """Use ``values`` as the baseline and calibrate the window threshold on it."""
        values = np.asarray(values, dtype=np.float64)
        columns = {LATENCY: values}
        self.reference = ReferenceProfile.from_columns(columns, kinds={LATENCY: "numeric"},
                                                       reference_id=reference_id, joint_sample_size=0)
        self._baseline = []
        if self.ert_windows and self.ert_windows > 1:
            calibration = calibrate(columns, self.window_size, self.ert_windows, settings=self._window_settings,
                                    kinds={LATENCY: "numeric"})
            self._window_settings = dataclasses.replace(calibration.settings(self._window_settings),
                                                        correction="none")
            self.calibration = calibration.to_dict()

    # -- reading -------------------------------------------------------------------
    def rolling_values(self) -> np.ndarray:
        self._fold()
        return self._rolling[:min(self._rolling_n, self._rolling.size)]

    def window_values(self) -> np.ndarray:
        self._fold()
        return np.asarray(self._window, dtype=np.float64)

    def rolling_percentiles(self) -> dict:
        return _percentiles(self.rolling_values(), list(PERCENTILES))

    def close_window(self) -> LatencyReport:
        """Test the window's latencies, report them, and start the next window."""
        window = self.window_values()
        names = list(dict.fromkeys([*PERCENTILES, *self.slo_ms]))
        percentiles = _percentiles(window, names)
        drift = None
        if self.reference is not None and window.size:
            report = evaluate_window(self.reference, {LATENCY: WindowColumn(window, "numeric")},
                                     self._window_settings)
            drift = next((r for r in report.results if r.detector == "ks"), None)
        slo = []
        for name, limit in self.slo_ms.items():
            value = percentiles[name]
            if value is None:
                continue
            breached = value > float(limit)
            slo.append(DriftResult("latency.slo", f"{LATENCY}:{name}", value, None, float(limit), "statistic",
                                   breached, effect_size=value / float(limit) if limit else None,
                                   effect_name="ratio_to_slo",
                                   evidence={"percentile": name, "limit_ms": float(limit), "n": int(window.size)}))
        self.counts["windows"] += 1
        self.counts["slo_breaches"] += sum(r.drifted for r in slo)
        self.last = LatencyReport(n=int(window.size), percentiles=percentiles,
                                  rolling=_percentiles(self.rolling_values(), names), invalid=self._window_invalid,
                                  drift=drift, slo=tuple(slo), calibration=self.calibration,
                                  reference_n=self.reference.n if self.reference is not None else len(self._baseline))
        self._window = []
        self._window_invalid = 0
        return self.last

    def status(self) -> dict:
        self._fold()
        return json_safe({"counts": dict(self.counts), "rolling": self.rolling_percentiles(),
                          "open_window": len(self._window), "slo_ms": self.slo_ms,
                          "reference": {"source": "first_latencies",
                                        "n": self.reference.n if self.reference is not None else len(self._baseline),
                                        "target": self.reference_size, "calibration": self.calibration},
                          "last_window": self.last.to_dict() if self.last is not None else None})


    # -- checkpoint ----------------------------------------------------------------
    def to_state(self) -> dict:
        """Plain data: the constructor's arguments are the caller's; the reference (this tracker's
        own, not a model version's) as its dict, the ring buffer's filled part, the latest report as
        its fields."""
        last = self.last
        if last is not None:
            last = {**{name: getattr(last, name) for name in ("n", "percentiles", "rolling", "invalid",
                                                              "calibration", "reference_n")},
                    "drift": None if last.drift is None else _fields(last.drift),
                    "slo": [_fields(r) for r in last.slo]}
        return {"window_settings": self._window_settings.to_dict(), "baseline": np.asarray(self._baseline),
                "reference": None if self.reference is None else self.reference.to_dict(),
                "calibration": self.calibration, "window": np.asarray(self._window, dtype=np.float64),
                "window_invalid": self._window_invalid, "rolling": self._rolling[:self._rolling_n].copy(),
                "rolling_size": self._rolling.size, "rolling_n": self._rolling_n,
                "counts": dict(self.counts), "last": last, "pending": list(self._pending)}

    def load_state(self, state: dict) -> "LatencyTracker":
        """This tracker with the state :meth:`to_state` recorded (built with the same arguments)."""
        self._window_settings = WindowSettings.from_dict(state["window_settings"])
        self._baseline = state["baseline"].tolist()
        self.reference = None if state["reference"] is None else ReferenceProfile.from_dict(state["reference"])
        self.calibration = state["calibration"]
        self._window = state["window"].tolist()
        self._window_invalid = state["window_invalid"]
        # the ring buffer as allocated; only its filled part was recorded (zeros after it)
        self._rolling = np.zeros(state["rolling_size"])
        self._rolling[:state["rolling"].size] = state["rolling"]
        self._rolling_n = state["rolling_n"]
        self.counts = dict(state["counts"])
        last = state["last"]
        if last is not None:
            last = LatencyReport(**{**last, "drift": None if last["drift"] is None else DriftResult(**last["drift"]),
                                    "slo": tuple(DriftResult(**r) for r in last["slo"])})
        self.last = last
        self._pending = list(state["pending"])
        return self


def _fields(result: DriftResult) -> dict:
    return {spec.name: getattr(result, spec.name) for spec in dataclasses.fields(result)}


def latency_difference(champion: LatencyTracker, challenger: LatencyTracker) -> dict:
    """Challenger minus champion, rolling p50/p95/p99 (None where either has no latency)."""
    a, b = champion.rolling_percentiles(), challenger.rolling_percentiles()
    return {"champion": a, "challenger": b,
            "difference_ms": {q: None if a[q] is None or b[q] is None else b[q] - a[q] for q in a}}


def latency_alert(*, model: str, model_version: str, keys: list, report: LatencyReport, window: dict,
                  reference: dict, window_index: int, config_version: str = "") -> Alert:
    """The ``latency`` alert for the lifecycle keys announced in one window, a typed record.

    Critical when an SLO percentile is at least twice its limit; else warning.
    """
    results = [r for key, r in sorted(report.findings().items()) if key in keys]
    slo = [r for r in results if r.detector == "latency.slo"]
    top = slo[0] if slo else results[0]
    severity = "critical" if any(r.statistic >= 2 * r.threshold for r in slo) else "warning"
    evidence = {r.feature: {"detector": r.detector, "statistic": r.statistic, "p_value": r.p_value,
                            "threshold": r.threshold, "effect_size": r.effect_size, "effect_name": r.effect_name,
                            **r.evidence} for r in results}
    evidence["percentiles"] = report.percentiles
    evidence["rolling"] = report.rolling
    parts = []
    for r in slo:
        parts.append(f"{r.evidence['percentile']} {r.statistic:.1f} ms > SLO {r.threshold:g} ms")
    if LATENCY in keys:
        drift = report.findings()[LATENCY]
        parts.append(f"distribution drifted from the baseline (KS {drift.statistic:.3f}, p={drift.p_value:.2g})")
    return build_alert(
        model=model, model_version=model_version, kind="latency", severity=severity, detector=top.detector,
        feature=LATENCY, features=[LATENCY], statistic=top.statistic, p_value=top.p_value, threshold=top.threshold,
        window=window, reference={**reference, "latency": {"source": "first_latencies", "n": report.reference_n,
                                                           "calibration": report.calibration}},
        evidence=json_safe(evidence), id_parts=(window_index, ",".join(sorted(keys))),
        config_version=config_version, conditions=sorted(keys),
        message=f"latency: {'; '.join(parts)} (window {window_index}, n={report.n})")
