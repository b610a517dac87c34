"""Business KPIs of one model version: rolling means, a baseline, and a test of a move against it.

A KPI is a number a label event (``{"revenue": 12.5, "converted": 1}``) or a
prediction (``{"cost": 0.2}``) carries. Per KPI, overall and per segment value
(``region=eu``), the tracker keeps the first ``window`` values as the baseline
and the last ``window`` values as the rolling sample. A finding needs both:

* the rolling mean moved against the KPI's direction (``"higher"`` or
  ``"lower"`` is better) by more than ``tolerance`` relative to the baseline
  mean (``|baseline mean|``; a gap in the KPI's units when that is 0), and
* Welch's one-sided t-test of the rolling values against the baseline values
  rejects "no move" at ``alpha``: exactly
  ``scipy.stats.ttest_ind(rolling, baseline, equal_var=False, alternative="less")``
  for a higher-is-better KPI (``"greater"`` for lower-is-better).

The rolling sample starts after the baseline (it never overlaps it) and is
tested once it holds ``min_n`` values; the check runs at each window close and every
``window // 4`` KPI values in between, so ``alpha`` is low for those repeated looks (as the
performance check's).

>>> rng = np.random.default_rng(1)
>>> kpis = KpiTracker({"revenue": "higher"}, window=300, tolerance=0.05, alpha=0.001)
>>> kpis.observe("revenue", rng.normal(10.0, 3.0, size=600))
>>> kpis.check()
{}
>>> kpis.observe("revenue", rng.normal(8.0, 3.0, size=300))   # a 20% drop
>>> finding = kpis.check()["revenue"]
>>> round(finding.evidence["gap"], 2), finding.p_value < 1e-6
(0.2, True)
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy import stats

from detectors.alerts import Alert, build_alert
from detectors.base import DriftResult, Estimator, json_safe

__all__ = ["KpiTracker", "KpiStats", "mean_ci", "compare_kpi", "compare_kpis", "recommend_on_kpi", "kpi_alert", "DIRECTIONS"]

DIRECTIONS = ("higher", "lower")
OVERALL = ""


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """Mean and its two-sided t interval (``scipy.stats.t.interval`` with the standard error).

    >>> [round(v, 3) for v in mean_ci(np.array([1.0, 2.0, 3.0, 4.0]))]
    [2.5, 0.446, 4.554]
    """
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return None, None, None
    mean = float(values.mean())
    if values.size < 2:
        return mean, None, None
    se = float(values.std(ddof=1)) / math.sqrt(values.size)
    if se == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(level, values.size - 1, loc=mean, scale=se)
    return mean, float(low), float(high)


class KpiStats:
    """Baseline and rolling values of one KPI in one scope (overall, or one segment value)."""

    def __init__(self, window: int):
        self.window = window
        self.baseline: list = []
        self.rolling: deque = deque(maxlen=window)
        self.n = 0

    def observe(self, values: np.ndarray) -> None:
        self.n += int(values.size)
        take = self.window - len(self.baseline)
        if take > 0:
            self.baseline.extend(values[:take].tolist())
            values = values[take:]
        self.rolling.extend(values.tolist())

    def summary(self) -> dict:
        mean, low, high = mean_ci(np.asarray(self.rolling))
        base_mean, base_low, base_high = mean_ci(np.asarray(self.baseline))
        return {"n": self.n, "mean": mean, "ci95": [low, high], "n_rolling": len(self.rolling),
                "baseline": {"mean": base_mean, "ci95": [base_low, base_high], "n": len(self.baseline),
                             "complete": len(self.baseline) >= self.window}}


def _scope_key(name: str, scope: str) -> str:
    return name if scope == OVERALL else f"{name}@{scope}"


class KpiTracker(Estimator):
    """Every configured KPI of one model version (batch API: :meth:`observe` takes arrays).

    Parameters
    ----------
    directions
        KPI name -> ``"higher"`` or ``"lower"`` (which way is better). Names not
        listed are unknown: counted, never tracked (a producer inventing names
        cannot grow the state).
    window
        Values in the baseline and in the rolling sample (``performance_window``).
    tolerance, alpha
        A finding needs a relative move against the direction above ``tolerance``
        and Welch's one-sided p-value below ``alpha``.
    min_n
        Rolling values a test needs (default: ``min(window, 100)``).
    max_segments
        Segment values tracked per KPI; more are counted in ``segments_dropped``.
    """

    def __init__(self, directions: dict, window: int = 500, tolerance: float = 0.05, alpha: float = 0.001,
                 min_n: int | None = None, max_segments: int = 50):
        self.directions = dict(directions)
        self.window = window
        self.tolerance = tolerance
        self.alpha = alpha
        self.min_n = min_n
        self.max_segments = max_segments
        for name, direction in self.directions.items():
            if direction not in DIRECTIONS:
                raise ValueError(f"KPI {name!r}: direction must be 'higher' or 'lower', got {direction!r}")
        self._reset()

    def _reset(self) -> None:
        self._stats: dict[str, dict[str, KpiStats]] = {name: {} for name in self.directions}
        self.counts = {"observed": 0, "invalid": 0, "unknown": 0, "segments_dropped": 0}
        self.unknown_names: deque = deque(maxlen=10)
        self._checked_at = 0         # counts["observed"] at the last check between windows
        self._pending: dict = {}     # name -> (values, segments) added one event at a time, not folded yet
        self._pending_n = 0

    def due(self) -> bool:
        """True once per ``window // 4`` (at least 25) values observed: KPIs are checked between
        window closes too, at a pace that keeps the number of looks (and false alarms) down."""
        seen = self.counts["observed"] + self._pending_n
        if seen - self._checked_at < max(25, self.window // 4):
            return False
        self._checked_at = seen
        return True

    def _fold(self) -> None:
        """Move the values :meth:`observe_event` collected into the statistics, one batch per KPI."""
        if not self._pending:
            return
        pending, self._pending, self._pending_n = self._pending, {}, 0
        for name, (values, segments) in pending.items():
            self.observe(name, values, segments if any(segments) else None)

    @property
    def _needed(self) -> int:
        return self.min_n if self.min_n is not None else min(self.window, 100)

    # -- feeding -------------------------------------------------------------------
    def observe(self, name: str, values, segments=None) -> None:
        """Fold values of one KPI in; ``segments`` (one dict or None per value) adds them per segment value.

        Non-finite values are counted as invalid and left out; an unknown name is counted and ignored.
        """
        self._fold()                   # values added one event at a time come first
        values = np.asarray(values, dtype=np.float64).ravel()
        if name not in self._stats:
            self.counts["unknown"] += int(values.size)
            if name not in self.unknown_names:
                self.unknown_names.append(name)
            return
        finite = np.isfinite(values)
        if not finite.all():
            self.counts["invalid"] += int((~finite).sum())
        self.counts["observed"] += int(finite.sum())
        scopes = self._stats[name]
        self._scope(scopes, OVERALL).observe(values[finite])
        if segments is None:
            return
        groups: dict[str, list] = {}
        for index, segment in enumerate(segments):
            if segment and finite[index]:
                for attr, value in segment.items():
                    groups.setdefault(f"{attr}={value}", []).append(index)
        for scope, rows in groups.items():
            stats_ = self._scope(scopes, scope)
            if stats_ is not None:
                stats_.observe(values[rows])

    def _scope(self, scopes: dict, scope: str) -> KpiStats | None:
        found = scopes.get(scope)
        if found is None:
            if scope != OVERALL and len(scopes) > self.max_segments:
                self.counts["segments_dropped"] += 1
                return None
            found = scopes[scope] = KpiStats(self.window)
        return found

    def observe_event(self, kpis: dict, segment: dict | None = None) -> None:
        """One event's KPIs (name -> number): appended, folded in as a batch by the next read."""
        for name, value in kpis.items():
            if name not in self._stats:
                self.observe(name, (value,))     # counted as unknown
                continue
            pending = self._pending.get(name)
            if pending is None:
                pending = self._pending[name] = ([], [])
            pending[0].append(value)
            pending[1].append(segment)
            self._pending_n += 1

    def reject(self, n: int = 1) -> None:
        """Count KPI values the wire contract already refused (not a number)."""
        self.counts["invalid"] += n

    # -- reading -------------------------------------------------------------------
    def values(self, name: str, scope: str = OVERALL) -> np.ndarray:
        """The rolling values of a KPI (the baseline's until the rolling sample starts)."""
        self._fold()
        found = self._stats.get(name, {}).get(scope)
        if found is None:
            return np.empty(0)
        return np.asarray(found.rolling if found.rolling else found.baseline, dtype=np.float64)

    def test(self, name: str, scope: str = OVERALL, screen: bool = False) -> DriftResult | None:
        """The move-against-baseline test of one KPI in one scope (None until both samples are ready).

        ``screen``: None as well when the gap is within the tolerance (the test cannot fire, so
        the t-test, most of the cost of a check, is not run).
        """
        self._fold()
        found = self._stats.get(name, {}).get(scope)
        if found is None or len(found.baseline) < self.window or len(found.rolling) < self._needed:
            return None
        baseline, rolling = np.asarray(found.baseline), np.asarray(found.rolling)
        direction = self.directions[name]
        base_mean, mean = float(baseline.mean()), float(rolling.mean())
        against = (base_mean - mean) if direction == "higher" else (mean - base_mean)
        scale = abs(base_mean)
        gap = against / scale if scale > 0 else against
        if screen and not gap > self.tolerance:
            return None
        alternative = "less" if direction == "higher" else "greater"
        p = float(stats.ttest_ind(rolling, baseline, equal_var=False, alternative=alternative).pvalue)
        if not math.isfinite(p):      # both samples constant: no spread to test against
            p = 1.0
        drifted = gap > self.tolerance and p < self.alpha
        _, low, high = mean_ci(rolling)
        _, base_low, base_high = mean_ci(baseline)
        return DriftResult("kpi.welch_t", _scope_key(name, scope), mean, p, self.alpha, "p_value", drifted,
                           effect_size=gap, effect_name="relative_move_against_direction" if scale > 0 else "move",
                           evidence=json_safe({
                               "kpi": name, "scope": scope or "overall", "direction": direction,
                               "baseline_mean": base_mean, "baseline_ci95": [base_low, base_high],
                               "rolling_mean": mean, "rolling_ci95": [low, high], "gap": gap,
                               "tolerance": self.tolerance, "n_baseline": int(baseline.size),
                               "n_rolling": int(rolling.size), "test": f"welch_t.{alternative}"}))

    def check(self) -> dict[str, DriftResult]:
        """KPI name (the lifecycle key) -> its finding, when the KPI moved overall or in a segment value.

        One condition per KPI, so a drop that spreads over segment values is one alert: the
        finding is the overall test when it fires (else the most significant segment value's),
        and ``evidence["scopes"]`` lists every scope that fires (``revenue``, ``revenue@region=eu``).
        """
        self._fold()
        found = {}
        for name, scopes in self._stats.items():
            firing = [r for r in (self.test(name, scope, screen=True) for scope in scopes)
                      if r is not None and r.drifted]
            if not firing:
                continue
            top = firing[0] if firing[0].feature == name else min(firing, key=lambda r: r.p_value)
            found[name] = DriftResult(top.detector, name, top.statistic, top.p_value, top.threshold,
                                      top.threshold_on, True, top.effect_size, top.effect_name,
                                      evidence={**top.evidence, "scopes": {
                                          r.feature: {"rolling_mean": r.statistic, "p_value": r.p_value,
                                                      "gap": r.effect_size,
                                                      "baseline_mean": r.evidence["baseline_mean"]}
                                          for r in firing}})
        return found

    def summary(self) -> dict:
        """Per KPI: the overall rolling mean with its 95% interval and baseline, and per segment value."""
        self._fold()
        out = {}
        for name, scopes in self._stats.items():
            overall = scopes.get(OVERALL)
            entry = overall.summary() if overall is not None else {"n": 0}
            entry["direction"] = self.directions[name]
            entry["segments"] = {scope: s.summary() for scope, s in scopes.items() if scope != OVERALL}
            out[name] = entry
        return json_safe(out)

    def status(self) -> dict:
        self._fold()
        return json_safe({"counts": dict(self.counts), "unknown_names": list(self.unknown_names),
                          "kpis": self.summary()})


    # -- checkpoint ----------------------------------------------------------------
    def to_state(self) -> dict:
        """Plain data: per KPI and scope its baseline and rolling values as arrays and its count."""
        return {"stats": {name: {scope: {"baseline": np.asarray(s.baseline, dtype=np.float64),
                                         "rolling": np.asarray(s.rolling, dtype=np.float64), "n": s.n}
                                 for scope, s in scopes.items()} for name, scopes in self._stats.items()},
                "counts": dict(self.counts), "unknown_names": list(self.unknown_names),
                "checked_at": self._checked_at,
                "pending": {name: [list(values), list(segments)] for name, (values, segments) in self._pending.items()},
                "pending_n": self._pending_n}

    def load_state(self, state: dict) -> "KpiTracker":
        """This tracker with the state :meth:`to_state` recorded (built with the same arguments)."""
        for name, scopes in state["stats"].items():
            for scope, recorded in scopes.items():
                found = self._stats.setdefault(name, {})[scope] = KpiStats(self.window)
                found.baseline = recorded["baseline"].tolist()
                found.rolling.extend(recorded["rolling"].tolist())
                found.n = recorded["n"]
        self.counts = dict(state["counts"])
        self.unknown_names.extend(state["unknown_names"])
        self._checked_at = state["checked_at"]
        self._pending = {name: (values, segments) for name, (values, segments) in state["pending"].items()}
        self._pending_n = state["pending_n"]
        return self


@dataclass(frozen=True)
class KpiComparison:
    """One KPI of two versions: challenger minus champion, and Welch's two-sided p-value."""

    kpi: str
    champion: float | None
    challenger: float | None
    difference: float | None
    p_value: float | None
    n_champion: int
    n_challenger: int

    def to_dict(self) -> dict:
        return json_safe(dict(self.__dict__))

    def summary(self) -> str:
        """``revenue 5.42 vs 5.82 (p=0.25)``: challenger first, as the comparison message has it."""
        if self.difference is None:
            return f"{self.kpi}: too few values"
        p = "" if self.p_value is None else f" (p={self.p_value:.2g})"
        return f"{self.kpi} {self.challenger:.4g} vs {self.champion:.4g}{p}"


def compare_kpi(name: str, champion: np.ndarray, challenger: np.ndarray) -> KpiComparison:
    """Challenger minus champion on a KPI's rolling values; p from ``ttest_ind(equal_var=False)``.

    >>> c = compare_kpi("revenue", np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    >>> c.difference, round(c.p_value, 4)
    (1.0, 0.2879)
    """
    a, b = np.asarray(champion, float), np.asarray(challenger, float)
    if not a.size or not b.size:
        return KpiComparison(name, float(a.mean()) if a.size else None, float(b.mean()) if b.size else None,
                             None, None, int(a.size), int(b.size))
    p = None
    if a.size > 1 and b.size > 1:
        p = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
        p = p if math.isfinite(p) else 1.0
    return KpiComparison(name, float(a.mean()), float(b.mean()), float(b.mean() - a.mean()), p,
                         int(a.size), int(b.size))


def compare_kpis(champion: KpiTracker, challenger: KpiTracker) -> dict[str, KpiComparison]:
    """Every KPI of the challenger against the champion's, on their rolling values."""
    return {name: compare_kpi(name, champion.values(name), challenger.values(name))
            for name in challenger.directions}


def recommend_on_kpi(comparison: KpiComparison, direction: str, min_n: int, alpha: float) -> str | None:
    """``promote`` / ``rollback`` / ``keep`` on a KPI (None until both sides have ``min_n`` values).

    >>> recommend_on_kpi(KpiComparison("r", 10.0, 12.0, 2.0, 0.001, 300, 300), "higher", 200, 0.05)
    'promote'
    """
    if comparison.n_champion < min_n or comparison.n_challenger < min_n or comparison.p_value is None:
        return None
    if comparison.p_value >= alpha:
        return "keep"
    better = comparison.difference > 0 if direction == "higher" else comparison.difference < 0
    return "promote" if better else "rollback"


def kpi_alert(*, model: str, model_version: str, keys: list, findings: dict, window: dict, reference: dict,
              window_index: int, config_version: str = "") -> Alert:
    """The ``kpi`` alert for the lifecycle keys announced in one window (critical beyond 2x tolerance),
    a typed record."""
    results = sorted((findings[key] for key in keys), key=lambda r: r.p_value)
    top = results[0]
    severity = "critical" if any(r.effect_size > 2 * r.evidence["tolerance"] for r in results) else "warning"
    parts = []
    for r in results:
        scope = "" if r.evidence["scope"] == "overall" else f" in {r.evidence['scope']}"
        also = len(r.evidence["scopes"]) - 1
        parts.append(f"{r.feature}{scope} {r.evidence['rolling_mean']:.4g} vs baseline "
                     f"{r.evidence['baseline_mean']:.4g} ({r.evidence['direction']} is better; p={r.p_value:.2g})"
                     + (f", and in {also} more scope(s)" if also else ""))
    return build_alert(
        model=model, model_version=model_version, kind="kpi", severity=severity, detector=top.detector,
        feature=top.feature, features=[r.feature for r in results], statistic=top.statistic, p_value=top.p_value,
        threshold=top.threshold, window=window, reference=reference,
        evidence={r.feature: {"statistic": r.statistic, "p_value": r.p_value, "effect_size": r.effect_size,
                              **r.evidence} for r in results},
        id_parts=(window_index, ",".join(sorted(keys))), config_version=config_version, conditions=sorted(keys),
        message=f"kpi: {'; '.join(parts)} (window {window_index})")
