"""The tests of one closed window and the findings they produce, by alert kind: per-feature
drift (:func:`detectors.suite.evaluate_window`), data quality, the domain classifier, CBPE's
estimate, fairness gaps, drift inside segments and serving latency. Pure: no I/O.

A check that raises (a bug, or input it cannot handle) is recorded in ``errors`` and the
other checks still run, so one bad value can never stop a model's monitoring.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from detectors.base import DriftResult
from detectors.calibration import calibrate_family
from detectors.domain_classifier import DomainClassifier
from detectors.profile import ReferenceProfile
from detectors.outputs import OUTPUT_COLUMNS, PREDICTION, SCORE, as_class
from detectors.quality import DataQuality
from detectors.segment_drift import SegmentGroup, segment_family
from detectors.settings import ModelSettings
from detectors.suite import WindowSettings, evaluate_window

SEGMENT_BOOTSTRAP = 1000   # null windows drawn to calibrate the segment x feature family
KINDS = ("input_drift", "prediction_drift", "data_quality", "multivariate_drift",
         "estimated_performance", "fairness", "segment_drift")


def checked(errors: dict, counts: dict, name: str, check, default=()):
    """``check()``, or ``default`` with the exception recorded under ``name`` in ``errors``."""
    try:
        return check()
    except Exception as exc:  # recorded, reported in status; the window's other checks go on
        errors[name] = f"{type(exc).__name__}: {exc}"
        counts["check_errors"] = counts.get("check_errors", 0) + 1
        return default


@dataclass
class WindowFindings:
    """What the tests of one window found: ``findings`` kind -> key -> result (the keys the
    lifecycle tracks), ``undecided`` kind -> keys that could not be judged in this window."""

    report: object                   # detectors.suite.WindowReport
    findings: dict
    undecided: dict = field(default_factory=dict)
    latency: object = None           # detectors.latency.LatencyReport, or None
    errors: dict = field(default_factory=dict)


class WindowTests:
    """The checks of a closed window beyond the drift suite, with the state they keep."""

    def __init__(self, settings: ModelSettings, window_settings: WindowSettings):
        self.settings = settings
        self.quality = DataQuality(**settings.quality)
        self.domain = DomainClassifier(**{k: v for k, v in settings.multivariate.items() if k not in ("enabled", "every")})
        self.segment_window_settings = window_settings   # how segment x feature families are judged
        self.segment_calibration: dict | None = None
        self.segment_report: dict = {}

    def calibrate_segments(self, columns: dict, segments: list, profile: ReferenceProfile) -> None:
        """ERT calibration of the segment x feature family: null windows drawn per segment value
        from its own reference rows, sized by its share of the reference, corrected together."""
        groups = []
        for key, sub in profile.segments.items():
            attr, _, value = key.partition("=")
            rows = [i for i, segment in enumerate(segments) if segment and segment.get(attr) == value]
            window_rows = round(self.settings.window_size * len(rows) / profile.n)
            if window_rows < self.settings.segment_min_size:
                continue   # a window would rarely hold enough of them to be tested
            groups.append(({name: [values[i] for i in rows] for name, values in columns.items()
                            if name not in OUTPUT_COLUMNS}, window_rows))
        if not groups:
            return
        # 1,000 null windows, not 200: the 1/ERT quantile of 200 sits between their 2nd and 3rd
        # smallest values and came out about twice too high (segment windows are small: this is cheap)
        calibration = calibrate_family(groups, self.settings.calibrate_ert_windows, settings=self.segment_window_settings,
                                       n_bootstrap=SEGMENT_BOOTSTRAP,
                                       kinds={k: v for k, v in profile.types.items() if k not in OUTPUT_COLUMNS})
        self.segment_window_settings = calibration.settings(self.segment_window_settings)
        self.segment_calibration = calibration.to_dict()

    def run(self, reference: ReferenceProfile, raw: dict, columns: dict, window_settings: WindowSettings,
            window, performance, fairness, active_gaps: set, latency, counts: dict) -> WindowFindings:
        """Every test of the closed ``window`` (:class:`detectors.window.OpenWindow`); ``raw`` its
        columns, ``columns`` the same as :class:`detectors.profile.WindowColumn` where the reference
        knows them; ``performance`` the version's :class:`detectors.performance_watch.PerformanceWatch`
        (CBPE), ``fairness`` its :class:`detectors.fairness.SegmentStats` with ``active_gaps``
        announced, ``latency`` its latency tracker."""
        settings = self.settings
        errors: dict = {}
        report = evaluate_window(reference, columns, window_settings)
        findings: dict[str, dict] = {kind: {} for kind in KINDS}
        for result in report.drifted:
            kind = "prediction_drift" if result.feature in OUTPUT_COLUMNS else "input_drift"
            best = findings[kind].get(result.feature)
            if best is None or (result.p_value or 0.0) < (best.p_value or 0.0):
                findings[kind][result.feature] = result
        for result in checked(errors, counts, "data_quality", lambda: self.quality.check(reference, columns)):
            if result.drifted and result.feature not in OUTPUT_COLUMNS:
                findings["data_quality"][f"{result.feature}/{result.detector.split('.')[-1]}"] = result
        if window.out_of_range:
            findings["data_quality"][f"{SCORE}/output_range"] = self.guardrail_result(window.out_of_range, window.n)
        multivariate = settings.multivariate
        if multivariate.get("enabled", True) and window.index % max(1, multivariate.get("every", 1)) == 0:
            # rows as the reference sampled them (outputs included), so both sides have the same columns
            result = checked(errors, counts, "multivariate_drift", lambda: self.domain.test(reference, columns), None)
            if result is not None and result.drifted:
                findings["multivariate_drift"]["__rows__"] = result
        if performance.cbpe is not None and window.n:
            predictions = [as_class(p) for p in raw.get(PREDICTION, [])]
            result = checked(errors, counts, "estimated_performance",
                             lambda: performance.cbpe.test(raw.get(SCORE, []), predictions=predictions), None)
            if result is not None and "estimated_accuracy" in result.evidence:
                performance.estimate = {"accuracy": result.evidence["estimated_accuracy"], "window": window.index}
            if result is not None and result.drifted:
                findings["estimated_performance"]["__score__"] = result
        for result in checked(errors, counts, "fairness", lambda: fairness.test(
                settings.segment_min_size, settings.fairness_tolerance, settings.fairness_alpha,
                active=active_gaps, hold=settings.hysteresis)):
            findings["fairness"][result.feature] = result
        self.segment_report = {}
        if settings.segment_drift:
            findings["segment_drift"] = checked(errors, counts, "segment_drift",
                                                lambda: self.segment_drift(reference, columns, window.segments), {})
        undecided = {"fairness": fairness.undecided(settings.segment_min_size, active_gaps)}
        latency_report = checked(errors, counts, "latency", latency.close_window, None)
        if latency_report is not None and latency_report.quality() is not None:
            findings["data_quality"]["latency_ms/invalid"] = latency_report.quality()
        return WindowFindings(report, findings, undecided, latency_report, errors)

    def segment_drift(self, reference: ReferenceProfile, columns: dict, window_segments: list) -> dict:
        """Input drift inside each segment value: its window rows against its own reference rows.

        A segment value differs from the population by definition (a region has its own
        countries), so it is compared with the reference rows of the same value, kept when
        the reference was built. Values with at least ``segment_min_size`` window rows are
        tested (at most 20 per window, the largest); those without a reference of their own
        are reported untested in ``last_window["segment_drift"]``. Every segment x feature test
        of the window is one family, corrected together and ERT-calibrated like the main tests.
        """
        groups: dict = {}
        for index, segment in enumerate(window_segments):
            for key in (segment or {}).items():
                groups.setdefault(key, []).append(index)
        large = sorted(((key, rows) for key, rows in groups.items() if len(rows) >= self.settings.segment_min_size),
                       key=lambda item: (-len(item[1]), item[0]))
        references = reference.segments or {}
        sizes = reference.segment_sizes
        settings = self.segment_window_settings
        untested, tested, groups = {}, {}, []
        for rank, ((attr, value), rows) in enumerate(large):
            key = f"{attr}={value}"
            sub = references.get(key)
            if rank >= 20:
                untested[key] = "more than 20 segment values in the window"
                continue
            if sub is None:
                have = (sizes or {}).get(key, 0)
                untested[key] = ("the reference has no segments" if sizes is None else
                                 f"{have} reference rows < segment_reference_min_size "
                                 f"{self.settings.segment_reference_min_size}")
                continue
            tested[key] = len(rows)
            groups.append(SegmentGroup(key, np.asarray(rows, dtype=np.intp), sub))
        family, drifted = segment_family(groups, columns, settings, skip=frozenset(OUTPUT_COLUMNS))
        found = {}
        for i, result in drifted.items():
            test = family[i]
            attr, _, value = test.key.partition("=")
            name = f"{test.key}:{result.feature}"
            found[name] = dataclasses.replace(result, feature=name, evidence={
                **result.evidence, "segment": {attr: value}, "segment_rows": test.n_rows,
                "segment_reference_rows": test.n_reference, "family_size": len(family),
                "calibration": self.segment_calibration})
        self.segment_report = {"tested": tested, "untested": untested, "family_size": len(family)}
        return found

    def guardrail_result(self, out_of_range: int, n: int) -> DriftResult:
        n = max(n, 1)
        expected = self.settings.output_range or [0.0, 1.0]
        return DriftResult("guardrail.output_range", SCORE, out_of_range / n, None, 0.0, "statistic",
                           True, evidence={"out_of_range": out_of_range, "n": n,
                                           "expected_range": list(expected)})

    # -- checkpoint ----------------------------------------------------------------
    def to_state(self) -> dict:
        """The segment family's settings and calibration and the last segment report; the data-quality
        checks and the domain classifier are configuration only, rebuilt from the settings."""
        return {"segment_window_settings": self.segment_window_settings.to_dict(),
                "segment_calibration": self.segment_calibration, "segment_report": self.segment_report}

    @classmethod
    def from_state(cls, state: dict, settings: ModelSettings, window_settings: WindowSettings) -> "WindowTests":
        tests = cls(settings, window_settings)
        tests.segment_window_settings = WindowSettings.from_dict(state["segment_window_settings"])
        tests.segment_calibration = state["segment_calibration"]
        tests.segment_report = state["segment_report"]
        return tests
